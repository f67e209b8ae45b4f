"""``CustomerPortal.send_invite``: a fresh dynamic link, emailed to the
customer in their language."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from portal_fixtures import SMTPServer, free_port, make_portal_app, open_link, portal_store
from sqlalchemy import func, select

from flask_customer_portal import CustomerNotFound, PortalSession, signals
from flask_customer_portal.contrib.sqla import LinkModel
from flask_customer_portal.formatting import format_datetime_zoned
from flask_customer_portal.mail import MailDeliveryError
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import MemoryMailer


def _dispose(app: Flask) -> None:
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def smtp_app(tmp_path: Path, smtp_server: SMTPServer) -> Iterator[Flask]:
    """The portal with demo data, sending over SMTP to ``smtp_server``."""
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}",
        CUSTOMER_PORTAL_SUPPORT_EMAIL="help@shop.test",
        **smtp_server.config(),
    )
    yield app
    _dispose(app)


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def _link_rows(app: Flask) -> int:
    with app.app_context():
        return int(app.extensions["sqlalchemy"].session.scalar(select(func.count()).select_from(LinkModel)))


def test_invite_goes_out_over_smtp_in_the_customers_language(
    smtp_app: Flask, smtp_server: SMTPServer
) -> None:
    with smtp_app.app_context():
        invite = smtp_app.extensions["customer_portal"].send_invite("cus_demo_budi")

    assert isinstance(invite, PortalSession)
    assert invite.customer_id == "cus_demo_budi"
    assert invite.link.startswith("http://shop.test/portal/session/")
    (message,) = smtp_server.messages
    assert message["To"] == "budi@example.com"
    assert message["From"] == "billing@shop.test"
    assert message["Subject"] == "Acme Software mengundang Anda ke portal pelanggan Anda"
    text, html = _parts(message)
    expires = format_datetime_zoned(invite.expires_at, "id", "Asia/Jakarta")
    for body in (text, html):
        assert "Halo Budi Santoso," in body
        assert invite.link in body
        assert f"Tautan ini hanya dapat digunakan satu kali dan kedaluwarsa pada {expires}." in body
        assert "Jangan teruskan email ini" in body
        assert "http://shop.test/portal/login/biz_demo" in body  # the static link, for later
        assert "help@shop.test" in body
        assert "invites you" not in body
    assert "Buka portal saya" in html
    assert f'href="{invite.link}"' in html
    assert '<html lang="id" dir="ltr">' in html

    # The emailed link signs Budi in, once.
    client = smtp_app.test_client()
    assert open_link(client, invite.link).status_code == 303
    assert "Budi Santoso" in client.get("/portal/").text
    page = smtp_app.test_client().get(invite.link.removeprefix("http://shop.test"))
    assert page.status_code == 410


def test_invite_in_english_for_an_english_customer(app: Flask, mailer: MemoryMailer) -> None:
    with app.app_context():
        invite = app.extensions["customer_portal"].send_invite("cus_demo_ava")
    (message,) = mailer.outbox
    assert message.to == "ava@example.com"
    assert message.subject == "Acme Software invites you to your customer portal"
    assert message.text.startswith("Hello Ava Thompson,")
    assert "Acme Software invites you to your customer portal. There you can see" in message.text
    assert f"\n{invite.link}\n" in message.text
    assert "The link works once and expires on" in message.text
    assert "Questions?" not in message.text  # no CUSTOMER_PORTAL_SUPPORT_EMAIL here
    assert ">Open my portal</a>" in message.html


def test_customer_without_a_language_gets_the_default_not_the_senders(
    app: Flask, mailer: MemoryMailer
) -> None:
    # A merchant's browser asks for Indonesian; Chen has no saved language.
    with app.test_request_context("/admin", headers={"Accept-Language": "id"}):
        app.extensions["customer_portal"].send_invite("cus_demo_chen")
    (message,) = mailer.outbox
    assert message.to == "chen@example.com"
    assert message.subject == "Acme Software invites you to your customer portal"
    assert message.text.startswith("Hello Chen Wei,")


def test_names_are_escaped_in_the_html_email(app: Flask, mailer: MemoryMailer) -> None:
    with app.app_context():
        portal_store(app).update_profile("cus_demo_ava", name="Ava <script>alert(1)</script>", phone=None)
        app.extensions["customer_portal"].send_invite("cus_demo_ava")
    (message,) = mailer.outbox
    assert "<script>" not in message.html
    assert "Ava &lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert "Hello Ava <script>alert(1)</script>," in message.text  # plain text is not HTML


def test_unknown_customer_raises_and_sends_nothing(app: Flask, mailer: MemoryMailer) -> None:
    links_before = _link_rows(app)
    with app.app_context(), pytest.raises(CustomerNotFound, match="cus_nobody"):
        app.extensions["customer_portal"].send_invite("cus_nobody")
    assert mailer.outbox == []
    assert _link_rows(app) == links_before
    with app.app_context():
        assert portal_store(app).list_events("cus_nobody") == ()


def test_return_url_outside_the_allowed_hosts_raises_before_anything_is_made(
    app: Flask, mailer: MemoryMailer
) -> None:
    links_before = _link_rows(app)
    with app.app_context(), pytest.raises(ValueError, match="return_url"):
        app.extensions["customer_portal"].send_invite("cus_demo_ava", return_url="https://evil.example/")
    assert mailer.outbox == []
    assert _link_rows(app) == links_before


def test_invite_is_signalled_and_audited(app: Flask, mailer: MemoryMailer) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def on_created(sender: Flask, **extra: Any) -> None:
        assert sender is app
        seen.append(("session_created", extra))

    def on_invite(sender: Flask, **extra: Any) -> None:
        assert sender is app
        assert len(mailer.outbox) == 1  # sent after the mail transport took it
        seen.append(("invite_sent", extra))

    with (
        signals.session_created.connected_to(on_created, app),
        signals.invite_sent.connected_to(on_invite, app),
        app.app_context(),
    ):
        invite = app.extensions["customer_portal"].send_invite("cus_demo_budi")
        events = portal_store(app).list_events("cus_demo_budi")

    assert [name for name, _ in seen] == ["session_created", "invite_sent"]
    extra = seen[1][1]
    assert set(extra) == {"customer", "session"}
    assert extra["customer"].id == "cus_demo_budi"
    assert extra["session"] == invite
    assert [(e.action, e.actor) for e in events[-2:]] == [
        ("session_link.created", "merchant"),
        ("invite.sent", "merchant"),
    ]


def test_failed_delivery_raises_mail_delivery_error(tmp_path: Path) -> None:
    # A real SMTP client against a port nobody listens on.
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=free_port(),
        MAIL_TIMEOUT=2.0,
    )
    sent: list[object] = []

    def on_invite(sender: Flask, **extra: Any) -> None:
        sent.append(extra)

    try:
        with signals.invite_sent.connected_to(on_invite, app), app.app_context():
            with pytest.raises(MailDeliveryError, match="cus_demo_ava"):
                app.extensions["customer_portal"].send_invite("cus_demo_ava")
            actions = [e.action for e in portal_store(app).list_events("cus_demo_ava")]
    finally:
        _dispose(app)
    assert sent == []
    assert "invite.sent" not in actions
