"""Mail through a real SMTP server (aiosmtpd), and what happens when it fails."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from portal_fixtures import SMTPServer, free_port, make_portal_app, open_link

from flask_customer_portal.mail import MailDeliveryError, Message, SMTPMailer, mailer_from_config
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import csrf_token_from


def test_login_link_by_real_smtp_end_to_end(tmp_path: Path, smtp_server: SMTPServer) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'm.db'}", **smtp_server.config())
    assert isinstance(get_state(app).mailer, SMTPMailer)
    client = app.test_client()
    page = client.get("/portal/login/biz_demo", headers={"Accept-Language": "en"})
    client.post(
        "/portal/login/biz_demo", data={"email": "budi@example.com", "csrf_token": csrf_token_from(page.text)}
    )
    get_state(app).wait_for_background_tasks()
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["To"] == "budi@example.com"
    assert message["From"] == "billing@shop.test"
    assert message.is_multipart()
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    link = re.search(r"http://shop\.test/portal/login/biz_demo/\S+", text)
    assert link
    assert link.group(0) in html
    fresh = app.test_client()
    assert open_link(fresh, link.group(0)).status_code == 303
    assert "Budi Santoso" in fresh.get("/portal/").text
    get_state(app).shutdown()


def test_smtp_down_is_logged_without_the_token_and_the_page_is_unchanged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'd.db'}", MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), MAIL_TIMEOUT=2
    )
    client = app.test_client()
    page = client.get("/portal/login/biz_demo")
    with caplog.at_level(logging.INFO):
        response = client.post(
            "/portal/login/biz_demo",
            data={"email": "ava@example.com", "csrf_token": csrf_token_from(page.text)},
        )
        get_state(app).wait_for_background_tasks()
    assert response.status_code == 200
    assert "on its way" in response.text
    # Logged as a warning: the email stays in the outbox and is tried again.
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("next attempt after" in r.getMessage() for r in warnings)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/portal/login/biz_demo/" not in logged
    assert "cus_demo_ava" in logged
    # The next request works.
    assert client.get("/portal/login/biz_demo").status_code == 200
    get_state(app).shutdown()


def test_smtp_mailer_raises_delivery_error() -> None:
    mailer = SMTPMailer(host="127.0.0.1", port=free_port(), timeout=1)
    with pytest.raises(MailDeliveryError):
        mailer.send(Message(to="a@example.com", subject="s", text="t", html="<p>t</p>"))
    assert "password" not in repr(SMTPMailer(host="h", password="hunter2"))
    assert "hunter2" not in repr(SMTPMailer(host="h", password="hunter2"))


def test_mailer_from_config() -> None:
    assert type(mailer_from_config({})).__name__ == "LogMailer"
    assert (
        type(mailer_from_config({"MAIL_SERVER": "smtp.test", "MAIL_SUPPRESS_SEND": True})).__name__
        == "LogMailer"
    )
    smtp = mailer_from_config(
        {"MAIL_SERVER": "smtp.test", "MAIL_USE_SSL": True, "MAIL_DEFAULT_SENDER": ("Shop", "b@shop.test")}
    )
    assert isinstance(smtp, SMTPMailer)
    assert smtp.port == 465
    assert smtp.default_sender == "Shop <b@shop.test>"
    with pytest.raises(ValueError, match="cannot both"):
        SMTPMailer(host="h", use_tls=True, use_ssl=True)


def test_cli_email_flag_sends_the_link(tmp_path: Path, smtp_server: SMTPServer) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'c.db'}", **smtp_server.config())
    result = app.test_cli_runner().invoke(args=["portal", "create-session", "cus_demo_budi", "--email"])
    assert result.exit_code == 0, result.output
    assert len(smtp_server.messages) == 1
    body = smtp_server.messages[0].get_body(("plain",)).get_content()
    assert result.stdout.strip().splitlines()[0] in body
    get_state(app).shutdown()
