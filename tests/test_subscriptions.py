"""Subscriptions: the list, one subscription, cancelling (with its confirm
step), keeping one that was set to end, and the overview's cards."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from flask_babel import force_locale
from portal_fixtures import SMTPServer, make_portal_app, sign_in, stored_subscription

from flask_customer_portal import signals
from flask_customer_portal.formatting import format_date, format_date_interval
from flask_customer_portal.mail import MailDeliveryError, Message
from flask_customer_portal.money import Money
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import AuditEvent, Subscription, SubscriptionStatus
from flask_customer_portal.templating import template_context
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA_SUB = "sub_demo_ava_sync"
AVA_PAST_SUB = "sub_demo_ava_desktop"
BUDI_SUB = "sub_demo_budi_sync"
AVA_TZ = "America/Los_Angeles"
BUDI_TZ = "Asia/Jakarta"


# -- helpers -----------------------------------------------------------------------


def _events(app: Flask, customer_id: str, action_prefix: str = "subscription.") -> list[AuditEvent]:
    with app.app_context():
        events = get_state(app).storage.list_events(customer_id)  # type: ignore[attr-defined]
    return [e for e in events if e.action.startswith(action_prefix)]


def _en_date(moment: datetime, tz: str = AVA_TZ) -> str:
    return format_date(moment, "en", tz)


def _section(html: str, heading_id: str) -> str:
    """The HTML of the ``<section>`` labelled by ``heading_id``."""
    start = html.index(f'aria-labelledby="{heading_id}"')
    end = html.find("</section>", start)
    return html[start:end]


def _token(client: FlaskClient, path: str = "/portal/subscriptions") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return csrf_token_from(page.text)


def _ask_to_cancel(client: FlaskClient, subscription_id: str) -> Any:
    """Press "Cancel subscription" on the subscription's page."""
    token = _token(client, f"/portal/subscriptions/{subscription_id}")
    return client.post(f"/portal/subscriptions/{subscription_id}/cancel", data={"csrf_token": token})


def _confirm_cancel(client: FlaskClient, subscription_id: str) -> Any:
    """Both steps: the page's button, then "Yes, cancel" on the confirm page."""
    confirm_page = _ask_to_cancel(client, subscription_id)
    assert confirm_page.status_code == 200, confirm_page.status_code
    return client.post(
        f"/portal/subscriptions/{subscription_id}/cancel",
        data={"csrf_token": csrf_token_from(confirm_page.text), "confirm": "yes"},
    )


def _keep(client: FlaskClient, subscription_id: str) -> Any:
    token = _token(client, f"/portal/subscriptions/{subscription_id}")
    return client.post(f"/portal/subscriptions/{subscription_id}/resume", data={"csrf_token": token})


@pytest.fixture
def immediate_app(tmp_path: Path, mailer: MemoryMailer) -> Iterator[Flask]:
    """A shop that ends subscriptions as soon as they are cancelled."""
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'immediate.db'}", mailer=mailer, CUSTOMER_PORTAL_CANCEL_AT_PERIOD_END=False
    )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def budi_client(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, "cus_demo_budi")
    return client


# -- the list ----------------------------------------------------------------------


def test_ava_sees_current_and_past_subscriptions(app: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get("/portal/subscriptions")
    assert page.status_code == 200
    assert '<a href="/portal/subscriptions" aria-current="page">Subscriptions</a>' in page.text

    sync = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    current = _section(page.text, "current-title")
    assert "Acme Sync" in current
    assert "Pro (monthly)" in current
    assert "$19.00 / month" in current
    assert "badge-active" in current
    assert f"Renews on {_en_date(sync.current_period_end)}" in current
    assert "Visa •••• 4242" in current
    assert f'href="/portal/subscriptions/{AVA_SUB}"' in current
    assert "Acme Desktop" not in current

    desktop = stored_subscription(app, "cus_demo_ava", AVA_PAST_SUB)
    assert desktop.ended_at is not None
    past = _section(page.text, "past-title")
    assert "Acme Desktop" in past
    assert "$99.00 / year" in past
    assert "badge-cancelled" in past
    assert f"Ended on {_en_date(desktop.ended_at)}" in past
    assert "Acme Sync" not in past


def test_budi_sees_his_subscription_on_hold_with_the_reason_and_the_way_to_pay(
    app: Flask, budi_client: FlaskClient
) -> None:
    page = budi_client.get("/portal/subscriptions")
    assert page.status_code == 200
    assert '<html lang="id" dir="ltr">' in page.text
    current = _section(page.text, "current-title")
    assert "Langganan saat ini" in current
    assert "Ditangguhkan" in current  # on hold
    assert "Rp150.000 / bulan" in current
    assert "Bank menolak pembayaran ini." in current  # the decline reason
    assert f'href="/portal/subscriptions/{BUDI_SUB}/payment-method"' in current
    assert "Perbarui metode pembayaran" in current
    assert 'aria-labelledby="past-title"' not in page.text  # nothing past


def test_chen_has_no_subscriptions_yet(app: Flask) -> None:
    client = app.test_client()
    sign_in(app, client, "cus_demo_chen")
    page = client.get("/portal/subscriptions")
    assert page.status_code == 200
    assert "No subscriptions yet" in page.text
    assert "subscription-card" not in page.text
    assert 'aria-labelledby="current-title"' not in page.text


def test_signed_out_visitors_go_to_the_login_page(client: FlaskClient) -> None:
    for path in ("/portal/subscriptions", f"/portal/subscriptions/{AVA_SUB}"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == "/portal/login/biz_demo"


@pytest.mark.parametrize(
    ("price", "interval", "count", "locale", "expected"),
    [
        (Money(1900, "USD"), "month", 1, "en", "$19.00 / month"),
        (Money(1900, "USD"), "month", 3, "en", "$19.00 every 3 months"),
        (Money(9900, "USD"), "year", 1, "en", "$99.00 / year"),
        (Money(9900, "USD"), "year", 2, "en", "$99.00 every 2 years"),
        (Money(500, "USD"), "week", 1, "en", "$5.00 / week"),
        (Money(500, "USD"), "week", 2, "en", "$5.00 every 2 weeks"),
        (Money(100, "USD"), "day", 1, "en", "$1.00 / day"),
        (Money(100, "USD"), "day", 7, "en", "$1.00 every 7 days"),
        (Money(15_000_000, "IDR"), "month", 1, "id", "Rp150.000 / bulan"),
        (Money(15_000_000, "IDR"), "month", 3, "id", "Rp150.000 setiap 3 bulan"),
        (Money(15_000_000, "IDR"), "year", 1, "id", "Rp150.000 / tahun"),
    ],
)
def test_price_per_interval(
    app: Flask, price: Money, interval: str, count: int, locale: str, expected: str
) -> None:
    sync = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    subscription = replace(sync, price=price, interval=interval, interval_count=count)
    template = (
        '{% from "customer_portal/_subscriptions.html" import price_per_interval with context %}'
        "{{ price_per_interval(subscription) }}"
    )
    with app.test_request_context("/"), force_locale(locale):
        rendered = render_template_string(
            template, subscription=subscription, **template_context(get_state(app), None)
        )
    assert rendered.replace("\xa0", " ") == expected


# -- one subscription --------------------------------------------------------------


def test_subscription_page_shows_the_details_and_a_cancel_button(app: Flask, ava_client: FlaskClient) -> None:
    sync = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    page = ava_client.get(f"/portal/subscriptions/{AVA_SUB}")
    assert page.status_code == 200
    assert "<h1>Acme Sync</h1>" in page.text
    assert f"Renews on {_en_date(sync.current_period_end)}" in page.text
    assert "$19.00 / month" in page.text
    # The period is a span of days in the customer's language, not "<date> to <date>".
    with app.app_context():
        customer = get_state(app).storage.get_customer("cus_demo_ava")
    assert customer is not None
    span = format_date_interval(sync.current_period_start, sync.current_period_end, "en", customer.timezone)
    assert "\u2013" in span and " to " not in span and "-" not in span, span
    assert span in page.text
    assert "Visa •••• 4242" in page.text
    assert f'action="/portal/subscriptions/{AVA_SUB}/cancel/reason"' in page.text
    assert "Cancel subscription" in page.text
    assert "/resume" not in page.text


def test_on_hold_subscription_page_says_why_and_links_to_the_payment_method(
    app: Flask, budi_client: FlaskClient
) -> None:
    page = budi_client.get(f"/portal/subscriptions/{BUDI_SUB}")
    assert page.status_code == 200
    hold = _section(page.text, "hold-title")
    assert "Pembayaran gagal" in hold
    assert "Bank menolak pembayaran ini." in hold
    assert f'href="/portal/subscriptions/{BUDI_SUB}/payment-method"' in hold
    # On hold, it can still be cancelled.
    assert f'action="/portal/subscriptions/{BUDI_SUB}/cancel/reason"' in page.text


def test_past_subscription_page_has_no_actions(app: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get(f"/portal/subscriptions/{AVA_PAST_SUB}")
    assert page.status_code == 200
    assert "Ended on" in page.text
    assert "badge-cancelled" in page.text
    assert "/cancel" not in page.text
    assert "/resume" not in page.text


# -- cancelling ----------------------------------------------------------------------


def test_the_first_post_only_asks_for_confirmation(
    app: Flask, ava_client: FlaskClient, mailer: MemoryMailer
) -> None:
    before = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    sent: list[dict[str, Any]] = []

    def record(sender: Flask, **extra: Any) -> None:
        sent.append(extra)

    with signals.subscription_cancelled.connected_to(record, app):
        page = _ask_to_cancel(ava_client, AVA_SUB)
    get_state(app).wait_for_background_tasks()

    assert page.status_code == 200
    assert '<h1 id="confirm-title">Cancel Acme Sync?</h1>' in page.text
    # The default: at the end of the paid period, with access until then.
    assert f"Your subscription will end on {_en_date(before.current_period_end)}" in page.text
    assert "You keep access until then" in page.text
    assert 'name="confirm" value="yes"' in page.text
    assert "Yes, cancel" in page.text
    assert f'href="/portal/subscriptions/{AVA_SUB}">Keep my subscription</a>' in page.text
    assert stored_subscription(app, "cus_demo_ava", AVA_SUB) == before
    assert sent == []
    assert _events(app, "cus_demo_ava") == []
    assert mailer.outbox == []

    # Anything but confirm=yes is not a confirmation either.
    token = csrf_token_from(page.text)
    again = ava_client.post(
        f"/portal/subscriptions/{AVA_SUB}/cancel", data={"csrf_token": token, "confirm": "no"}
    )
    assert again.status_code == 200
    assert stored_subscription(app, "cus_demo_ava", AVA_SUB) == before


def test_cancel_at_period_end(app: Flask, ava_client: FlaskClient, mailer: MemoryMailer) -> None:
    assert get_state(app).config.cancel_at_period_end is True  # the default
    before = stored_subscription(app, "cus_demo_ava", AVA_SUB)

    response = _confirm_cancel(ava_client, AVA_SUB)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/portal/subscriptions/{AVA_SUB}"

    after = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    assert after.status is SubscriptionStatus.ACTIVE
    assert after.cancel_at_period_end is True
    assert after.cancelled_at is not None
    assert after.ended_at is None
    assert after.current_period_end == before.current_period_end

    end = _en_date(before.current_period_end)
    page = ava_client.get(response.headers["Location"])
    assert page.status_code == 200
    assert f"Your Acme Sync subscription will end on {end}. You keep access until then." in page.text
    assert f"Ends on {end}" in page.text
    # Set to end is not "Active": the badge says when it cancels.
    assert f'<span class="badge badge-ending">Cancels on {end}</span>' in page.text
    assert "badge-active" not in page.text
    assert f'action="/portal/subscriptions/{AVA_SUB}/resume"' in page.text
    assert "Keep subscription" in page.text
    assert f'action="/portal/subscriptions/{AVA_SUB}/cancel/reason"' not in page.text
    # The notice shows once.
    assert "You keep access until then." not in ava_client.get(f"/portal/subscriptions/{AVA_SUB}").text

    get_state(app).wait_for_background_tasks()
    [message] = mailer.outbox
    assert message.to == "ava@example.com"
    assert message.subject == "Your Acme Sync subscription is cancelled"
    assert f"It stays active until {end} and will not renew after that." in message.text
    assert f"http://shop.test/portal/subscriptions/{AVA_SUB}" in message.text
    assert f'href="http://shop.test/portal/subscriptions/{AVA_SUB}"' in message.html


def test_cancel_now_when_the_merchant_says_so(immediate_app: Flask, mailer: MemoryMailer) -> None:
    app = immediate_app
    client = app.test_client()
    sign_in(app, client, "cus_demo_ava")

    confirm_page = _ask_to_cancel(client, AVA_SUB)
    assert "Your subscription will end immediately" in confirm_page.text
    assert "This cannot be undone." in confirm_page.text

    moment = datetime.now(timezone.utc).replace(microsecond=0)
    with time_machine.travel(moment, tick=False):
        response = client.post(
            f"/portal/subscriptions/{AVA_SUB}/cancel",
            data={"csrf_token": csrf_token_from(confirm_page.text), "confirm": "yes"},
        )
    assert response.status_code == 303

    after = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    assert after.status is SubscriptionStatus.CANCELLED
    assert after.cancel_at_period_end is False
    assert after.ended_at == moment
    assert after.cancelled_at == moment

    page = client.get(f"/portal/subscriptions/{AVA_SUB}")
    assert "Your Acme Sync subscription is cancelled." in page.text
    assert f"Ended on {_en_date(moment)}" in page.text
    assert "/cancel" not in page.text
    assert "/resume" not in page.text
    listing = client.get("/portal/subscriptions").text
    assert 'aria-labelledby="current-title"' in listing
    assert "Acme Sync" in _section(listing, "past-title")
    assert "Acme Sync" not in _section(listing, "current-title")

    get_state(app).wait_for_background_tasks()
    [message] = mailer.outbox
    assert "It has ended, and you will not be charged for it again." in message.text


def test_an_on_hold_subscription_ends_now_even_at_period_end_shops(
    app: Flask, budi_client: FlaskClient
) -> None:
    assert get_state(app).config.cancel_at_period_end is True
    confirm_page = _ask_to_cancel(budi_client, BUDI_SUB)
    assert confirm_page.status_code == 200
    assert "Langganan Anda akan langsung berakhir" in confirm_page.text

    response = budi_client.post(
        f"/portal/subscriptions/{BUDI_SUB}/cancel",
        data={"csrf_token": csrf_token_from(confirm_page.text), "confirm": "yes"},
    )
    assert response.status_code == 303
    after = stored_subscription(app, "cus_demo_budi", BUDI_SUB)
    assert after.status is SubscriptionStatus.CANCELLED
    [event] = _events(app, "cus_demo_budi")
    assert event.details == {"at_period_end": "false"}


def test_cancelling_sends_a_signal_and_writes_the_audit_log(app: Flask, ava_client: FlaskClient) -> None:
    sent: list[dict[str, Any]] = []

    def record(sender: Flask, **extra: Any) -> None:
        assert sender is app
        sent.append(extra)

    with signals.subscription_cancelled.connected_to(record, app):
        assert _confirm_cancel(ava_client, AVA_SUB).status_code == 303

    [extra] = sent
    assert extra["customer"].id == "cus_demo_ava"
    assert extra["subscription"].id == AVA_SUB
    assert extra["subscription"].cancel_at_period_end is True
    assert extra["at_period_end"] is True

    [event] = _events(app, "cus_demo_ava")
    assert event.action == "subscription.cancelled"
    assert event.subject_id == AVA_SUB
    assert event.actor == "customer"
    assert event.details == {"at_period_end": "true"}


@pytest.mark.parametrize(
    ("customer_id", "subscription_id", "subject", "text"),
    [
        (
            "cus_demo_ava",
            AVA_SUB,
            "Your Acme Sync subscription is cancelled",
            "You cancelled your Acme Sync subscription (Pro (monthly)).",
        ),
        (
            "cus_demo_budi",
            BUDI_SUB,
            "Langganan Acme Sync Anda telah dibatalkan",
            "Anda telah membatalkan langganan Acme Sync (Pro (bulanan)).",
        ),
    ],
)
def test_the_email_goes_out_over_smtp_in_the_customers_language(
    tmp_path: Path, smtp_server: SMTPServer, customer_id: str, subscription_id: str, subject: str, text: str
) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'smtp.db'}", **smtp_server.config())
    try:
        client = app.test_client()
        sign_in(app, client, customer_id)
        assert _confirm_cancel(client, subscription_id).status_code == 303
        get_state(app).wait_for_background_tasks()
    finally:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()

    [message] = smtp_server.messages
    customer_email = customer_id.removeprefix("cus_demo_") + "@example.com"
    assert message["To"] == customer_email
    assert message["From"] == "billing@shop.test"
    assert message["Subject"] == subject
    plain = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert text in plain
    assert f"http://shop.test/portal/subscriptions/{subscription_id}" in plain
    assert f'href="http://shop.test/portal/subscriptions/{subscription_id}"' in html


class _BrokenMailer:
    def send(self, message: Message) -> None:
        raise MailDeliveryError("SMTP delivery to mail.test:25 failed: ConnectionRefusedError()")


def test_a_mail_failure_is_logged_and_the_cancellation_stands(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'broken.db'}", mailer=_BrokenMailer())
    try:
        client = app.test_client()
        sign_in(app, client, "cus_demo_ava")
        # A refused connection is retried later: a warning, with the customer.
        with caplog.at_level(logging.WARNING, logger="flask_customer_portal"):
            response = _confirm_cancel(client, AVA_SUB)
            get_state(app).wait_for_background_tasks()
        assert response.status_code == 303
        assert stored_subscription(app, "cus_demo_ava", AVA_SUB).cancel_at_period_end is True
        assert "will end on" in client.get(response.headers["Location"]).text
    finally:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
    [record] = [r for r in caplog.records if "subscription_cancelled" in r.getMessage()]
    assert "cus_demo_ava" in record.getMessage()


def test_cancelling_twice_explains_instead_of_failing(app: Flask, ava_client: FlaskClient) -> None:
    confirm_page = _ask_to_cancel(ava_client, AVA_SUB)
    data = {"csrf_token": csrf_token_from(confirm_page.text), "confirm": "yes"}
    assert ava_client.post(f"/portal/subscriptions/{AVA_SUB}/cancel", data=data).status_code == 303
    after_first = stored_subscription(app, "cus_demo_ava", AVA_SUB)

    # The same confirmation again (a double click, a second tab).
    again = ava_client.post(f"/portal/subscriptions/{AVA_SUB}/cancel", data=data)
    assert again.status_code == 409
    end = _en_date(after_first.current_period_end)
    assert f"This subscription is already set to end on {end}." in again.text
    assert 'role="alert"' in again.text
    assert stored_subscription(app, "cus_demo_ava", AVA_SUB) == after_first
    assert len(_events(app, "cus_demo_ava")) == 1

    # A subscription that is over.
    past = ava_client.post(f"/portal/subscriptions/{AVA_PAST_SUB}/cancel", data=data)
    assert past.status_code == 409
    assert "This subscription already ended on" in past.text


def test_a_cancellation_that_loses_a_race_explains_instead_of_failing(
    app: Flask, ava_client: FlaskClient, mailer: MemoryMailer, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = get_state(app).storage
    real_cancel = storage.cancel_subscription

    def other_tab_first(*args: Any, **kwargs: Any) -> Subscription | None:
        real_cancel(*args, **kwargs)  # another tab's request got there first
        return real_cancel(*args, **kwargs)

    monkeypatch.setattr(storage, "cancel_subscription", other_tab_first)
    response = _confirm_cancel(ava_client, AVA_SUB)
    assert response.status_code == 409
    assert "This subscription is already set to end on" in response.text
    get_state(app).wait_for_background_tasks()
    assert mailer.outbox == []
    # The other tab's cancellation is in the log, once; the refused one is not.
    assert [e.action for e in _events(app, "cus_demo_ava")] == ["subscription.cancelled"]


# -- keeping a subscription that was set to end --------------------------------------


def test_keep_a_subscription_before_its_end(
    app: Flask, ava_client: FlaskClient, mailer: MemoryMailer
) -> None:
    before = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    assert _confirm_cancel(ava_client, AVA_SUB).status_code == 303
    get_state(app).wait_for_background_tasks()
    mailer.clear()
    sent: list[dict[str, Any]] = []

    def record(sender: Flask, **extra: Any) -> None:
        sent.append(extra)

    with signals.cancellation_undone.connected_to(record, app):
        response = _keep(ava_client, AVA_SUB)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/portal/subscriptions/{AVA_SUB}"

    after = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    assert after == before  # as if it had never been cancelled

    renews = _en_date(before.current_period_end)
    page = ava_client.get(response.headers["Location"])
    assert f"Your Acme Sync subscription will continue. It renews on {renews}." in page.text
    assert f"Renews on {renews}" in page.text
    assert "/resume" not in page.text
    assert f'action="/portal/subscriptions/{AVA_SUB}/cancel/reason"' in page.text

    [extra] = sent
    assert extra["customer"].id == "cus_demo_ava"
    assert extra["subscription"] == after
    events = _events(app, "cus_demo_ava")
    assert [e.action for e in events] == ["subscription.cancelled", "subscription.cancellation_undone"]
    assert events[1].subject_id == AVA_SUB

    get_state(app).wait_for_background_tasks()
    [message] = mailer.outbox
    assert message.subject == "Your Acme Sync subscription will continue"
    assert f"It renews on {renews} at $19.00 / month." in message.text
    assert f"It renews on {renews} at $19.00 / month." in message.html


def test_after_the_end_date_it_shows_as_ended_and_cannot_be_kept(app: Flask, ava_client: FlaskClient) -> None:
    assert _confirm_cancel(ava_client, AVA_SUB).status_code == 303
    set_to_end = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    end = _en_date(set_to_end.current_period_end)

    # The period-end job has not run yet: storage still says active.
    with time_machine.travel(set_to_end.current_period_end + timedelta(hours=1), tick=False):
        client = app.test_client()
        sign_in(app, client, "cus_demo_ava")  # the old session timed out long ago
        page = client.get(f"/portal/subscriptions/{AVA_SUB}")
        assert page.status_code == 200
        assert f"Ended on {end}" in page.text
        assert "badge-cancelled" in page.text
        assert "/resume" not in page.text
        assert "/cancel" not in page.text
        listing = client.get("/portal/subscriptions").text
        assert "Acme Sync" in _section(listing, "past-title")
        assert 'aria-labelledby="current-title"' in listing
        assert "Acme Sync" not in _section(listing, "current-title")
        dashboard = client.get("/portal/").text
        assert "Next renewal" not in dashboard
        assert "ends on" not in dashboard

        refused = client.post(
            f"/portal/subscriptions/{AVA_SUB}/resume", data={"csrf_token": csrf_token_from(page.text)}
        )
        assert refused.status_code == 409
        assert f"It is too late to keep this subscription: it ended on {end}." in refused.text
        cancel = client.post(
            f"/portal/subscriptions/{AVA_SUB}/cancel",
            data={"csrf_token": csrf_token_from(page.text), "confirm": "yes"},
        )
        assert cancel.status_code == 409
    assert stored_subscription(app, "cus_demo_ava", AVA_SUB) == set_to_end
    assert [e.action for e in _events(app, "cus_demo_ava")] == ["subscription.cancelled"]


def test_keeping_a_subscription_that_is_not_set_to_end(app: Flask, ava_client: FlaskClient) -> None:
    before = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    response = _keep(ava_client, AVA_SUB)
    assert response.status_code == 409
    assert "This subscription is not set to end, so there is nothing to undo." in response.text
    assert stored_subscription(app, "cus_demo_ava", AVA_SUB) == before
    assert _events(app, "cus_demo_ava") == []


# -- the rules every change follows ---------------------------------------------------


@pytest.mark.parametrize("csrf", [None, "", "not-a-token"])
@pytest.mark.parametrize("action", ["cancel", "resume"])
def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(
    app: Flask, ava_client: FlaskClient, mailer: MemoryMailer, csrf: str | None, action: str
) -> None:
    if action == "resume":
        assert _confirm_cancel(ava_client, AVA_SUB).status_code == 303
        get_state(app).wait_for_background_tasks()
        mailer.clear()
    before = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    events_before = _events(app, "cus_demo_ava")
    data = {"confirm": "yes"} if csrf is None else {"confirm": "yes", "csrf_token": csrf}

    response = ava_client.post(f"/portal/subscriptions/{AVA_SUB}/{action}", data=data)
    assert response.status_code == 400
    assert stored_subscription(app, "cus_demo_ava", AVA_SUB) == before
    assert _events(app, "cus_demo_ava") == events_before
    get_state(app).wait_for_background_tasks()
    assert mailer.outbox == []


@pytest.mark.parametrize("action", ["cancel", "resume"])
def test_get_never_changes_anything(app: Flask, ava_client: FlaskClient, action: str) -> None:
    before = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    response = ava_client.get(f"/portal/subscriptions/{AVA_SUB}/{action}")
    assert response.status_code == 405
    assert stored_subscription(app, "cus_demo_ava", AVA_SUB) == before


def test_another_customers_subscription_is_a_404_and_stays_untouched(
    app: Flask, ava_client: FlaskClient, mailer: MemoryMailer
) -> None:
    budi_on_hold = stored_subscription(app, "cus_demo_budi", BUDI_SUB)
    # A second subscription of Budi's that is set to end, so that "keep"
    # would have something to do if it reached his record.
    with app.app_context():
        storage = get_state(app).storage
        storage.add_subscription(  # type: ignore[attr-defined]
            replace(
                budi_on_hold,
                id="sub_budi_ending",
                status=SubscriptionStatus.ACTIVE,
                current_period_end=datetime.now(timezone.utc) + timedelta(days=10),
                cancel_at_period_end=True,
                cancelled_at=datetime.now(timezone.utc) - timedelta(days=1),
                hold_reason=None,
            )
        )
    budi_ending = stored_subscription(app, "cus_demo_budi", "sub_budi_ending")
    token = _token(ava_client)

    for subscription_id in (BUDI_SUB, "sub_budi_ending"):
        assert ava_client.get(f"/portal/subscriptions/{subscription_id}").status_code == 404
        for data in ({"csrf_token": token}, {"csrf_token": token, "confirm": "yes"}):
            response = ava_client.post(f"/portal/subscriptions/{subscription_id}/cancel", data=data)
            assert response.status_code == 404
            assert "Page not found" in response.text
        response = ava_client.post(
            f"/portal/subscriptions/{subscription_id}/resume", data={"csrf_token": token}
        )
        assert response.status_code == 404

    assert stored_subscription(app, "cus_demo_budi", BUDI_SUB) == budi_on_hold
    assert stored_subscription(app, "cus_demo_budi", "sub_budi_ending") == budi_ending
    assert _events(app, "cus_demo_budi") == []
    assert _events(app, "cus_demo_ava") == []
    get_state(app).wait_for_background_tasks()
    assert mailer.outbox == []


@pytest.mark.parametrize(
    "subscription_id",
    [
        "..%2Fx",
        "..%2F..%2Fadmin",
        "x" * 10_000,
        "sub_%C3%BC%E2%9C%93%F0%9F%98%80",  # unicode
        "sub%00demo",  # a NUL byte
        "sub_demo_ava_sync%0A",
        "%27%20OR%201%3D1%20--",
        "sub_demo_ava_sync%20",
    ],
    ids=["dotdot", "dotdot2", "10k", "unicode", "nul", "newline", "sql", "space"],
)
def test_odd_ids_are_a_404_never_a_500(app: Flask, ava_client: FlaskClient, subscription_id: str) -> None:
    before = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    token = _token(ava_client)
    assert ava_client.get(f"/portal/subscriptions/{subscription_id}").status_code == 404
    for action in ("cancel", "resume"):
        response = ava_client.post(
            f"/portal/subscriptions/{subscription_id}/{action}", data={"csrf_token": token, "confirm": "yes"}
        )
        assert response.status_code == 404, (action, response.status_code)
    assert stored_subscription(app, "cus_demo_ava", AVA_SUB) == before


# -- the overview --------------------------------------------------------------------


def test_overview_cards_for_ava(app: Flask, ava_client: FlaskClient) -> None:
    sync = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    page = ava_client.get("/portal/")
    assert page.status_code == 200
    assert "attention" not in page.text
    card = _section(page.text, "card-subscriptions")
    assert "1 active" in card
    assert f"Next renewal: Acme Sync on {_en_date(sync.current_period_end)}" in card
    assert "$19.00 / month" in card
    assert "Visa •••• 4242" in card
    assert 'href="/portal/subscriptions"' in card
    invoices = _section(page.text, "card-invoices")
    assert "15 invoices in total" in invoices
    assert "2 keys" in _section(page.text, "card-keys")


def test_overview_shows_a_subscription_set_to_end(app: Flask, ava_client: FlaskClient) -> None:
    assert _confirm_cancel(ava_client, AVA_SUB).status_code == 303
    sync = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    card = _section(ava_client.get("/portal/").text, "card-subscriptions")
    assert "1 active" in card
    assert f"Acme Sync cancels on {_en_date(sync.current_period_end)}" in card
    assert "Next renewal" not in card


def test_overview_puts_a_failed_payment_first(app: Flask, budi_client: FlaskClient) -> None:
    page = budi_client.get("/portal/").text
    attention = page.index('class="panel attention"')
    assert attention < page.index('class="cards"')
    panel = _section(page, "attention-1")
    assert "Pembayaran diperlukan untuk Acme Sync" in panel
    assert "Pembayaran terakhir Anda gagal" in panel
    assert "Bank menolak pembayaran ini." in panel
    assert f'href="/portal/subscriptions/{BUDI_SUB}/payment-method"' in panel
    assert "1 ditangguhkan" in _section(page, "card-subscriptions")


def test_overview_for_chen_is_empty_but_friendly(app: Flask) -> None:
    client = app.test_client()
    sign_in(app, client, "cus_demo_chen")
    page = client.get("/portal/").text
    assert "No subscriptions yet" in page
    assert "No invoices yet" in page
    assert "No licence keys" in page
    assert "attention" not in page


def test_overview_and_list_take_a_fixed_number_of_queries(
    app: Flask, count_queries: Callable[..., Any]
) -> None:
    """Ava has 15 invoices, two subscriptions and two keys; Chen has none:
    the pages cost the same handful of queries for both."""
    clients = {}
    for customer_id in ("cus_demo_ava", "cus_demo_budi", "cus_demo_chen"):
        clients[customer_id] = app.test_client()
        sign_in(app, clients[customer_id], customer_id)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    for path, most in (("/portal/", 4), ("/portal/subscriptions", 3)):
        counts = {}
        for customer_id, client in clients.items():
            with count_queries(engine) as queries:
                assert client.get(path).status_code == 200
            counts[customer_id] = queries.count
        assert len(set(counts.values())) == 1, (path, counts)
        assert counts["cus_demo_ava"] <= most, (path, counts, queries.statements)


def test_overview_query_count_does_not_grow_with_history(
    app: Flask, ava_client: FlaskClient, count_queries: Callable[..., Any]
) -> None:
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    with count_queries(engine) as before:
        ava_client.get("/portal/")
    sync = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    with app.app_context():
        storage = get_state(app).storage
        for n in range(20):
            storage.add_subscription(  # type: ignore[attr-defined]
                replace(sync, id=f"sub_more_{n}", created_at=sync.created_at)
            )
    with count_queries(engine) as after:
        page = ava_client.get("/portal/")
    assert "21 active" in page.text
    assert after.count == before.count, after.statements


def test_names_are_escaped_once(app: Flask, ava_client: FlaskClient) -> None:
    """Product names go through gettext placeholders: escaped once, never twice, never raw."""
    sync = stored_subscription(app, "cus_demo_ava", AVA_SUB)
    with app.app_context():
        get_state(app).storage.add_subscription(  # type: ignore[attr-defined]
            replace(sync, id="sub_amp", product_name="Tom & Jerry <Pro>")
        )
    confirm_page = _ask_to_cancel(ava_client, "sub_amp").text
    listing = ava_client.get("/portal/subscriptions").text
    for page in (confirm_page, listing):
        assert "Tom &amp; Jerry &lt;Pro&gt;" in page
        assert "&amp;amp;" not in page
        assert "<Pro>" not in page
    assert "Cancel Tom &amp; Jerry &lt;Pro&gt;?" in confirm_page
