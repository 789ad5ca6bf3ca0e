"""Built-in message templates per channel, key and language, until ContentService manages them.

Templates are `string.Template` texts: `$name` placeholders filled from the message's variables,
nothing evaluated, so a template (or a value) can never run code. Values are converted to text
and, for the HTML part of an email, escaped. A language without its own text falls back to its
primary subtag (`pt-BR` → `pt`) and then to English.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from string import Template
from typing import Any, Final

FALLBACK_LANGUAGE: Final = "en"


class TemplateMissing(LookupError):
    """No template (in any language) for this key on this channel, or a variable is missing."""


@dataclass(frozen=True, slots=True)
class EmailText:
    subject: str
    text: str


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class InAppText:
    title: str
    body: str


EMAIL: Final[Mapping[tuple[str, str], EmailText]] = {
    ("verify_email", "en"): EmailText(
        subject="Confirm your email address",
        text=(
            "Hello,\n\nPlease confirm your email address for your Amesa account by opening this "
            "link:\n\n$link\n\nThe link expires in 24 hours. If you did not create an account, "
            "ignore this message."
        ),
    ),
    ("password_reset", "en"): EmailText(
        subject="Reset your Amesa password",
        text=(
            "Hello,\n\nSomeone asked to reset the password of your Amesa account. To choose a "
            "new password, open this link:\n\n$link\n\nThe link expires in 1 hour. If it was "
            "not you, ignore this message: your password stays as it is."
        ),
    ),
    ("email_change_requested", "en"): EmailText(
        subject="Your Amesa email address is being changed",
        text=(
            "Hello,\n\nA change of your account's email address to $new_email was requested. "
            "It takes effect once the new address is confirmed. If it was not you, change your "
            "password and contact support."
        ),
    ),
    ("security_alert", "en"): EmailText(
        subject="Security alert on your Amesa account",
        text="Hello,\n\n$alert_text\n\nIf it was not you, change your password now.",
    ),
    ("identity_document_reviewed", "en"): EmailText(
        subject="Your identity document was reviewed",
        text="Hello,\n\nYour identity document was $state_text. $reason_text",
    ),
    ("promotion", "en"): EmailText(subject="$headline", text="$message"),
    ("draw_won", "en"): EmailText(
        subject="You won the draw for $house_title",
        text=(
            "Congratulations!\n\nYour ticket #$ticket_number won the draw for $house_title. "
            "We will contact you about the next steps.\n\nAnyone can check the draw: its "
            "transcript is published at $draw."
        ),
    ),
    ("purchase_receipt", "en"): EmailText(
        subject="Your Amesa tickets",
        text=(
            "Thank you!\n\nYour payment of $total was received and your $quantity ticket(s) "
            "are issued: numbers $first_number to $last_number. Each ticket is in the public "
            "entry log of the draw; you can ask for the proof of inclusion in the app."
        ),
    ),
    ("refund_issued", "en"): EmailText(
        subject="Your Amesa refund",
        text="Hello,\n\nA refund of $amount was issued for your order. $reason_text",
    ),
    ("draw_result", "en"): EmailText(
        subject="The draw for $house_title took place",
        text=(
            "Hello,\n\nThe draw for $house_title took place: the winning ticket is "
            "#$winning_number. Your tickets did not win this time.\n\nAnyone can check the "
            "draw: its transcript is published at $draw."
        ),
    ),
    ("verify_email", "fr"): EmailText(
        subject="Confirmez votre adresse e-mail",
        text=(
            "Bonjour,\n\nVeuillez confirmer l'adresse e-mail de votre compte Amesa en ouvrant ce "
            "lien :\n\n$link\n\nLe lien expire dans 24 heures. Si vous n'avez pas créé de "
            "compte, ignorez ce message."
        ),
    ),
    ("password_reset", "fr"): EmailText(
        subject="Réinitialisez votre mot de passe Amesa",
        text=(
            "Bonjour,\n\nQuelqu'un a demandé à réinitialiser le mot de passe de votre compte "
            "Amesa. Pour en choisir un nouveau, ouvrez ce lien :\n\n$link\n\nLe lien expire "
            "dans 1 heure. Si ce n'était pas vous, ignorez ce message : votre mot de passe ne "
            "change pas."
        ),
    ),
    ("verify_email", "he"): EmailText(
        subject="אישור כתובת הדוא״ל שלך",
        text=(
            "שלום,\n\nכדי לאשר את כתובת הדוא״ל של חשבון Amesa שלך, יש לפתוח את הקישור:\n\n"
            "$link\n\nהקישור בתוקף 24 שעות. אם לא פתחת חשבון, אפשר להתעלם מההודעה."
        ),
    ),
    ("password_reset", "he"): EmailText(
        subject="איפוס הסיסמה שלך ב-Amesa",
        text=(
            "שלום,\n\nהתקבלה בקשה לאפס את הסיסמה של חשבון Amesa שלך. לבחירת סיסמה חדשה יש "
            "לפתוח את הקישור:\n\n$link\n\nהקישור בתוקף שעה אחת. אם לא ביקשת זאת, אפשר "
            "להתעלם מההודעה: הסיסמה שלך לא תשתנה."
        ),
    ),
}

SMS: Final[Mapping[tuple[str, str], str]] = {
    ("phone_code", "en"): (
        "Your Amesa verification code is $code. It expires in 10 minutes. Never share it."
    ),
    ("security_alert", "en"): "Amesa security alert: $alert_text",
    ("identity_document_reviewed", "en"): "Amesa: your identity document was $state_text.",
    ("promotion", "en"): "Amesa: $headline",
    ("phone_code", "fr"): (
        "Votre code de vérification Amesa est $code. Il expire dans 10 minutes. Ne le "
        "partagez jamais."
    ),
    (
        "phone_code",
        "he",
    ): "קוד האימות שלך ב-Amesa הוא $code. בתוקף 10 דקות. אין למסור אותו לאף אחד.",
}

IN_APP: Final[Mapping[tuple[str, str], InAppText]] = {
    ("security_alert", "en"): InAppText(title="Security alert", body="$alert_text"),
    ("identity_document_reviewed", "en"): InAppText(
        title="Identity document reviewed",
        body="Your identity document was $state_text. $reason_text",
    ),
    ("promotion", "en"): InAppText(title="$headline", body="$message"),
    ("draw_won", "en"): InAppText(
        title="You won!", body="Your ticket #$ticket_number won the draw for $house_title."
    ),
    ("purchase_receipt", "en"): InAppText(
        title="Tickets issued",
        body="Your tickets $first_number to $last_number are issued ($total).",
    ),
    ("refund_issued", "en"): InAppText(
        title="Refund issued", body="A refund of $amount was issued. $reason_text"
    ),
    ("draw_result", "en"): InAppText(
        title="Draw result",
        body="The draw for $house_title took place: the winning ticket is #$winning_number.",
    ),
}

# Texts for codes carried in payloads (English; translated templates use their own wording).
ALERT_TEXTS: Final[Mapping[str, str]] = {
    "refresh_token_reused": (
        "A sign-in token of one of your sessions was used twice, which can mean it was stolen. "
        "We signed that session out everywhere."
    ),
    "password_changed": "The password of your account was changed.",
    "totp_disabled": "Two-step verification was turned off on your account.",
    "oauth_identity_linked": "A sign-in provider was linked to your account.",
}
STATE_TEXTS: Final[Mapping[str, str]] = {"APPROVED": "approved", "REJECTED": "rejected"}


def _candidates(language: str) -> list[str]:
    tags = [language, language.split("-", 1)[0], FALLBACK_LANGUAGE]
    return list(dict.fromkeys(tag for tag in tags if tag))


def _pick(table: Mapping[tuple[str, str], Any], key: str, language: str) -> Any:
    for tag in _candidates(language):
        found = table.get((key, tag))
        if found is not None:
            return found
    raise TemplateMissing(f"no template {key!r}")


def _fill(template: str, values: Mapping[str, str]) -> str:
    try:
        return Template(template).substitute(values)
    except (KeyError, ValueError) as error:
        raise TemplateMissing(f"template variable {error} is missing or malformed") from error


def variables(payload: Mapping[str, Any], *, link: str | None = None) -> dict[str, str]:
    """The payload as text, plus the derived values templates use."""
    values = {key: "" if value is None else str(value) for key, value in payload.items()}
    alert = values.get("alert", "")
    values["alert_text"] = ALERT_TEXTS.get(alert, "There was security-relevant activity.")
    values["state_text"] = STATE_TEXTS.get(values.get("state", ""), "reviewed")
    reason = values.get("reason", "")
    values["reason_text"] = f"Reason: {reason}" if reason else ""
    if link is not None:
        values["link"] = link
    return values


def has_email(key: str) -> bool:
    return (key, FALLBACK_LANGUAGE) in EMAIL


def has_sms(key: str) -> bool:
    return (key, FALLBACK_LANGUAGE) in SMS


def render_email(key: str, language: str, values: Mapping[str, str]) -> RenderedEmail:
    template: EmailText = _pick(EMAIL, key, language)
    escaped = {name: html.escape(value) for name, value in values.items()}
    body_html = _fill(template.text, escaped).replace("\n", "<br>\n")
    return RenderedEmail(
        subject=_fill(template.subject, values).replace("\n", " ")[:200],
        text=_fill(template.text, values),
        html=f"<!doctype html><html><body><p>{body_html}</p></body></html>",
    )


def render_sms(key: str, language: str, values: Mapping[str, str]) -> str:
    template: str = _pick(SMS, key, language)
    return _fill(template, values)[:1600]


def render_in_app(key: str, language: str, values: Mapping[str, str]) -> InAppText:
    template: InAppText = _pick(IN_APP, key, language)
    return InAppText(
        title=_fill(template.title, values)[:200], body=_fill(template.body, values)[:2000]
    )
