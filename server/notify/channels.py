"""Delivery channels: email (SMTP or the log) and SMS (an HTTP provider or the log).

A sender raises `PermanentDeliveryError` when retrying cannot help (a refused address, a 4xx
from the SMS provider) and any other exception for a transient failure, which the dispatcher
retries with backoff.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import httpx

from server.core.settings import NotifyConfig
from server.notify.templates import RenderedEmail

log = logging.getLogger("amesa.notify")


class PermanentDeliveryError(Exception):
    """The message can never be delivered as it is: dead-letter it instead of retrying."""


class EmailSender(Protocol):
    async def send(self, *, to: str, email: RenderedEmail) -> None: ...


class SmsProvider(Protocol):
    async def send(self, *, to: str, text: str) -> None: ...


class LogEmailSender:
    """Development: writes the email to the log instead of sending it. It may hold a one-time
    link, so it must never be used in production (`AMESA_SMTP_HOST` is then required)."""

    async def send(self, *, to: str, email: RenderedEmail) -> None:
        log.info(
            "email (not sent, no SMTP host) to=%s subject=%r\n%s", to, email.subject, email.text
        )


class SmtpEmailSender:
    def __init__(self, config: NotifyConfig) -> None:
        if config.smtp_host is None:
            raise ValueError("SmtpEmailSender needs AMESA_SMTP_HOST")
        self._host = config.smtp_host
        self._config = config

    async def send(self, *, to: str, email: RenderedEmail) -> None:
        message = EmailMessage()
        message["From"] = self._config.smtp_from
        message["To"] = to
        message["Subject"] = email.subject
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._config.smtp_port,
                username=self._config.smtp_username,
                password=self._config.smtp_password,
                start_tls=self._config.smtp_starttls,
                timeout=self._config.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            raise PermanentDeliveryError(f"recipient refused: {error}") from error
        except aiosmtplib.SMTPResponseException as error:
            if 500 <= error.code < 600:
                raise PermanentDeliveryError(f"SMTP {error.code}: {error.message}") from error
            raise


class LogSmsProvider:
    """Development: writes the SMS (verification codes included) to the log; never in production."""

    async def send(self, *, to: str, text: str) -> None:
        log.info("sms (not sent, log provider) to=%s\n%s", to, text)


class TwilioSmsProvider:
    """Twilio's Messages API: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, form-encoded
    `To`, `From`, `Body`, HTTP basic auth with the account SID and auth token."""

    def __init__(self, config: NotifyConfig, *, client: httpx.AsyncClient | None = None) -> None:
        self._url = (
            f"{config.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/"
            f"{config.twilio_account_sid}/Messages.json"
        )
        self._auth = httpx.BasicAuth(config.twilio_account_sid, config.twilio_auth_token)
        self._from = config.twilio_from
        # None: a client per message, so nothing is left open at shutdown.
        self._client = client

    async def send(self, *, to: str, text: str) -> None:
        form = {"To": to, "From": self._from, "Body": text}
        if self._client is not None:
            response = await self._client.post(self._url, data=form, auth=self._auth)
        else:
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.post(self._url, data=form, auth=self._auth)
        if response.status_code == 429 or response.status_code >= 500:
            raise RuntimeError(f"SMS provider answered HTTP {response.status_code}")
        if response.status_code >= 400:
            # 4xx (bad number, auth): the body says why; no code or text of ours is in it.
            raise PermanentDeliveryError(
                f"SMS provider refused the message: HTTP {response.status_code} "
                f"{response.text[:300]}"
            )


def email_sender(config: NotifyConfig) -> EmailSender:
    return SmtpEmailSender(config) if config.smtp_host else LogEmailSender()


def sms_provider(config: NotifyConfig) -> SmsProvider:
    if config.sms_provider == "twilio":
        return TwilioSmsProvider(config)
    if config.sms_provider == "log":
        return LogSmsProvider()
    raise ValueError(f"AMESA_SMS_PROVIDER must be 'log' or 'twilio', not {config.sms_provider!r}")
