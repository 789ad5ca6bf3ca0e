"""Templates fill values in and never evaluate them."""

from __future__ import annotations

import pytest

from server.notify import templates


def test_values_are_inserted_verbatim_never_evaluated() -> None:
    values = templates.variables(
        {"to": "a@example.org", "new_email": "${code} {0.__class__} <script>x</script>"}
    )

    email = templates.render_email("email_change_requested", "en", values)

    assert "${code} {0.__class__} <script>x</script>" in email.text
    assert "&lt;script&gt;x&lt;/script&gt;" in email.html
    assert "<script>" not in email.html


def test_language_falls_back_to_its_primary_subtag_then_english() -> None:
    assert templates.render_sms("phone_code", "fr-CA", {"code": "123456"}).startswith(
        "Votre code de vérification Amesa est 123456."
    )
    assert templates.render_sms("phone_code", "pt-BR", {"code": "123456"}).startswith(
        "Your Amesa verification code is 123456."
    )


@pytest.mark.parametrize(("language", "word"), [("en", "link"), ("fr", "lien"), ("he", "הקישור")])
def test_transactional_emails_exist_per_language(language: str, word: str) -> None:
    for key in ("verify_email", "password_reset"):
        email = templates.render_email(key, language, {"link": "https://amesa.test/x"})
        assert word in email.text
        assert "https://amesa.test/x" in email.text


def test_missing_variable_is_template_missing() -> None:
    with pytest.raises(templates.TemplateMissing):
        templates.render_sms("phone_code", "en", {})


def test_unknown_template_is_template_missing() -> None:
    with pytest.raises(templates.TemplateMissing):
        templates.render_email("no_such_template", "en", {})
