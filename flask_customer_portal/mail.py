"""Mail: a thin transport protocol and the messages the portal sends.

Building a message (templates, translation) and sending it (SMTP, log, a
host's own service) are separate, so a merchant swaps the transport without
touching content, and themes the content without touching transport.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Attachment",
    "LogMailer",
    "MailDeliveryError",
    "Mailer",
    "MemoryMailer",
    "Message",
    "SMTPMailer",
    "mailer_from_config",
]

logger = logging.getLogger("flask_customer_portal.mail")


class MailDeliveryError(Exception):
    """The transport could not hand the message over.

    ``permanent`` says the server refused this message for good (an SMTP
    5xx answer to its recipient or its content): sending it again would
    be refused again, so the outbox gives up on it at once. Anything else
    (the server down, a timeout, a 4xx answer) is tried again later."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message (an invoice's PDF)."""

    filename: str
    content_type: str
    """``maintype/subtype``, e.g. ``application/pdf``."""
    data: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One email, ready to send: a plain-text and an HTML part, and any
    attachments."""

    to: str
    subject: str
    text: str
    html: str
    sender: str | None = None
    message_id: str | None = None
    """The ``Message-ID`` header: the outbox gives each row one, so that a
    message sent again after a crash is the same message to the mailbox;
    ``None`` makes a new one."""
    attachments: tuple[Attachment, ...] = ()

    def to_email_message(self, default_sender: str) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = self.subject
        message["From"] = self.sender or default_sender
        message["To"] = self.to
        message["Message-ID"] = self.message_id or make_msgid(
            domain=_domain_of(self.sender or default_sender)
        )
        message.set_content(self.text)
        message.add_alternative(self.html, subtype="html")
        for attachment in self.attachments:
            maintype, _slash, subtype = attachment.content_type.partition("/")
            message.add_attachment(attachment.data, maintype, subtype, filename=attachment.filename)
        return message


def _refused_for_good(exc: BaseException) -> bool:
    """Whether the server refused the message itself with a 5xx answer: every
    recipient refused, or the content. A 5xx to the sender address or to
    the login is the merchant's settings, which can be fixed, so the
    message is kept for another try."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _reply in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPDataError):
        return 500 <= exc.smtp_code < 600
    return False


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip(">").strip() or "localhost"


@runtime_checkable
class Mailer(Protocol):
    def send(self, message: Message) -> None:
        """Deliver ``message`` or raise :class:`MailDeliveryError`."""


class SMTPMailer:
    """Sends over SMTP with the Flask ecosystem's ``MAIL_*`` settings."""

    def __init__(
        self,
        *,
        host: str,
        port: int = 25,
        use_tls: bool = False,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        default_sender: str = "no-reply@localhost",
        timeout: float = 10.0,
    ) -> None:
        if use_tls and use_ssl:
            raise ValueError("MAIL_USE_TLS (STARTTLS) and MAIL_USE_SSL cannot both be set")
        self.host = host
        self.port = port
        self.use_tls = use_tls
        self.use_ssl = use_ssl
        self.username = username
        self._password = password
        self.default_sender = default_sender
        self.timeout = timeout

    def __repr__(self) -> str:
        return (
            f"SMTPMailer(host={self.host!r}, port={self.port!r}, "
            f"use_tls={self.use_tls}, use_ssl={self.use_ssl})"
        )

    def send(self, message: Message) -> None:
        email = message.to_email_message(self.default_sender)
        try:
            smtp: smtplib.SMTP
            if self.use_ssl:
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.use_tls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self._password or "")
                smtp.send_message(email)
        except (OSError, smtplib.SMTPException) as exc:
            # The exception text can quote the server's reply, never the body.
            raise MailDeliveryError(
                f"SMTP delivery to {self.host}:{self.port} failed: {exc!r}", permanent=_refused_for_good(exc)
            ) from None


class LogMailer:
    """Writes messages to the log instead of sending them.

    For development and ``make demo`` only: the portal refuses it in live
    mode, because the messages carry sign-in links.
    """

    #: The rule above and below each printed message, so that it stands
    #: apart from the request log around it.
    RULE = "=" * 72

    def __init__(self, *, default_sender: str = "no-reply@localhost") -> None:
        self.default_sender = default_sender

    def format(self, message: Message) -> str:
        """``message`` as printed: its plain-text part between two rules,
        with a blank line before and after, every line of the body (a
        sign-in link among them) as it is, so it can be copied whole."""
        return "\n".join(
            (
                "",
                self.RULE,
                "EMAIL NOT SENT: no mail server in use, so it is printed here (test mode only)",
                f"From: {message.sender or self.default_sender}",
                f"To: {message.to}",
                f"Subject: {message.subject}",
                "",
                message.text.strip("\n"),
                *(f"[attached: {a.filename}, {len(a.data)} bytes]" for a in message.attachments),
                self.RULE,
                "",
            )
        )

    def send(self, message: Message) -> None:
        logger.warning("%s", self.format(message))


def mailer_from_config(config: Mapping[str, Any]) -> Mailer:
    """SMTP when ``MAIL_SERVER`` is set (and ``MAIL_SUPPRESS_SEND`` is not
    true), else the log transport."""
    sender = config.get("MAIL_DEFAULT_SENDER") or "no-reply@localhost"
    if isinstance(sender, (tuple, list)):
        sender = formataddr((sender[0], sender[1]))
    if config.get("MAIL_SERVER") and not config.get("MAIL_SUPPRESS_SEND"):
        return SMTPMailer(
            host=config["MAIL_SERVER"],
            port=int(config.get("MAIL_PORT") or (465 if config.get("MAIL_USE_SSL") else 25)),
            use_tls=bool(config.get("MAIL_USE_TLS")),
            use_ssl=bool(config.get("MAIL_USE_SSL")),
            username=config.get("MAIL_USERNAME"),
            password=config.get("MAIL_PASSWORD"),
            default_sender=sender,
            timeout=float(config.get("MAIL_TIMEOUT", 10.0)),
        )
    return LogMailer(default_sender=sender)


class MemoryMailer:
    """A mail transport that keeps messages in :attr:`outbox`."""

    def __init__(self) -> None:
        self.outbox: list[Message] = []
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        with self._lock:
            self.outbox.append(message)

    def clear(self) -> None:
        with self._lock:
            self.outbox.clear()
