"""What the customer did stays visible: a paused subscription on the
overview, the way back to the merchant on every page, times with their
time zone and invoice periods in the customer's language."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import make_portal_app, open_link, sign_in

from flask_customer_portal.billing.periods import add_interval
from flask_customer_portal.clock import utcnow
from flask_customer_portal.config import DEFAULTS, load_config
from flask_customer_portal.errors import ConfigurationError
from flask_customer_portal.formatting import format_date
from flask_customer_portal.money import Money
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Invoice, Plan
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from
from flask_customer_portal.views.plans import yearly_savings

AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"
AVA_SUB = "sub_demo_ava_sync"
SHOP_ACCOUNT = "http://shop.test/account"


def _app(tmp_path: Path, name: str, **config: Any) -> Iterator[Flask]:
    app = make_portal_app(
        f"sqlite:///{tmp_path / name}", mailer=MemoryMailer(), payments=TestPaymentProvider(), **config
    )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def pause_app(tmp_path: Path) -> Iterator[Flask]:
    yield from _app(tmp_path, "pause.db", CUSTOMER_PORTAL_ALLOW_PAUSE=True)


@pytest.fixture
def back_app(tmp_path: Path) -> Iterator[Flask]:
    yield from _app(tmp_path, "back.db", CUSTOMER_PORTAL_RETURN_URL=SHOP_ACCOUNT)


def _signed_in(app: Flask, customer_id: str = AVA) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, customer_id)
    return client


def _invoice_with_a_period(app: Flask, customer_id: str) -> Invoice:
    """One of the customer's invoices whose line names its period in ISO dates."""
    with app.app_context():
        storage = get_state(app).storage
        listed = storage.list_invoices(customer_id, page=1, per_page=50).items
        invoices = [storage.get_invoice(customer_id, invoice.id) for invoice in listed]
    for invoice in invoices:
        assert invoice is not None
        if any(
            re.search(r"\d{4}-\d{2}-\d{2} to \d{4}-\d{2}-\d{2}", line.description) for line in invoice.lines
        ):
            return invoice
    raise AssertionError(f"no invoice of {customer_id} has a period on a line")


# -- a paused subscription ----------------------------------------------------


def test_a_paused_subscription_shows_on_the_overview_with_its_resume_date(pause_app: Flask) -> None:
    ava = _signed_in(pause_app)
    page = ava.get(f"/portal/subscriptions/{AVA_SUB}").text
    resumes = format_date(add_interval(utcnow(), "month", 2), "en", "America/Los_Angeles")
    # The day it starts again is shown before the customer pauses.
    assert f'<option value="2">2 months, until {resumes}</option>' in page
    paused = ava.post(
        f"/portal/subscriptions/{AVA_SUB}/pause", data={"csrf_token": csrf_token_from(page), "months": "2"}
    )
    assert paused.status_code == 303
    overview = ava.get("/portal/").text
    assert f"Acme Sync is paused until {resumes}" in overview
    assert f"Paused until {resumes}" in ava.get("/portal/subscriptions").text


# -- the way back to the merchant -------------------------------------------------


def test_without_the_setting_no_page_shows_a_way_back(pause_app: Flask) -> None:
    ava = _signed_in(pause_app)
    for path in ("/portal/", "/portal/invoices", "/portal/license-keys"):
        assert 'class="portal-return"' not in ava.get(path).text


def test_the_configured_way_back_is_on_every_page(back_app: Flask) -> None:
    back = f'<p class="portal-return"><a href="{SHOP_ACCOUNT}">Back to Acme Software</a></p>'
    # Signed out too: a customer who lands on the sign-in page can still go back.
    assert back in back_app.test_client().get("/portal/login/biz_demo").text
    ava = _signed_in(back_app)
    for path in ("/portal/", "/portal/invoices", "/portal/license-keys", f"/portal/subscriptions/{AVA_SUB}"):
        page = ava.get(path).text
        assert page.count('class="portal-return"') == 1, path
        assert back in page, path


def test_a_links_return_url_wins_over_the_configured_one(back_app: Flask) -> None:
    client = back_app.test_client()
    with back_app.app_context():
        link = back_app.extensions["customer_portal"].create_session(
            AVA, return_url="http://shop.test/orders?from=portal"
        )
    open_link(client, link.link)
    page = client.get("/portal/license-keys").text
    assert '<a href="http://shop.test/orders?from=portal">Back to Acme Software</a>' in page
    assert f'href="{SHOP_ACCOUNT}"' not in page


@pytest.mark.parametrize(
    ("value", "live", "message"),
    [
        ("https://evil.example/account", False, "is not in CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS"),
        ("/account", False, "must be an absolute URL"),
        ("javascript:alert(1)", False, "must be an absolute URL"),
        ("https://user:pw@shop.example.com/", False, "is not in CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS"),
        ("http://shop.example.com/account", True, "live mode needs an https:// URL"),
    ],
)
def test_the_configured_way_back_is_held_to_the_return_url_rules(
    value: str, live: bool, message: str
) -> None:
    config = {
        **DEFAULTS,
        "SECRET_KEY": "k" * 40,
        "CUSTOMER_PORTAL_BUSINESS_ID": "biz",
        "CUSTOMER_PORTAL_BASE_URL": "https://shop.example.com",
        "CUSTOMER_PORTAL_RETURN_URL": value,
    }
    if live:
        config.update(CUSTOMER_PORTAL_MODE="live", CUSTOMER_PORTAL_SINGLE_PROCESS=True)
    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_RETURN_URL") as error:
        load_config(config)
    assert message in str(error.value)
    allowed = {
        **config,
        "CUSTOMER_PORTAL_MODE": "test",
        "CUSTOMER_PORTAL_RETURN_URL": "https://shop.example.com/a",
    }
    assert load_config(allowed).return_url == "https://shop.example.com/a"
    other_host = {
        **allowed,
        "CUSTOMER_PORTAL_RETURN_URL": "https://www.example.com/",
        "CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS": ["www.example.com"],
    }
    assert load_config(other_host).return_url == "https://www.example.com/"


# -- dates and times ------------------------------------------------------------------


def test_invoice_lines_show_their_period_in_the_customers_language(pause_app: Flask) -> None:
    ava = _signed_in(pause_app)
    invoice = _invoice_with_a_period(pause_app, AVA)
    page = ava.get(f"/portal/invoices/{invoice.id}").text
    lines = page[page.index('class="responsive invoice-lines"') :]
    lines = lines[: lines.index("</table>")]
    assert not re.search(r"\d{4}-\d{2}-\d{2}", lines), lines
    assert re.search(r"[A-Z][a-z]{2} \d{1,2}, \d{4}\u2009\u2013\u2009[A-Z][a-z]{2} \d{1,2}, \d{4}", lines), (
        lines
    )

    budi = _signed_in(pause_app, BUDI)
    budi_invoice = _invoice_with_a_period(pause_app, BUDI)
    page = budi.get(f"/portal/invoices/{budi_invoice.id}").text
    lines = page[page.index('class="responsive invoice-lines"') :]
    lines = lines[: lines.index("</table>")]
    assert not re.search(r"\d{4}-\d{2}-\d{2}", lines), lines
    assert " to " not in lines
    # Indonesian months and the locale's own closed-up en dash ("1 Des 2026", dash, "1 Jan 2027").
    assert re.search(r"\d{1,2} [A-Z][a-z]{2,3} \d{4}\u2013\d{1,2} [A-Z][a-z]{2,3} \d{4}", lines), lines


def test_times_carry_their_time_zone(pause_app: Flask) -> None:
    ava = _signed_in(pause_app)
    activity = ava.get("/portal/activity").text
    # Ava's time zone is America/Los_Angeles: each time says PST or PDT.
    cells = re.findall(r"<time datetime=\"[^\"]+\">([^<]+)</time>", activity)
    assert cells
    # Sentences, not the audit log's codes or the browser's user-agent string.
    assert "session.signed_in" not in activity and "session_link.created" not in activity
    assert "Werkzeug" not in activity
    assert "Signed in with a link from the merchant." in activity
    assert all(re.search(r"\d\s[AP]M P[SD]T$", cell) for cell in cells), cells
    budi = _signed_in(pause_app, BUDI)
    cells = re.findall(r"<time datetime=\"[^\"]+\">([^<]+)</time>", budi.get("/portal/activity").text)
    assert cells
    assert all(re.search(r"\d{2}\.\d{2} WIB$", cell) for cell in cells), cells


# -- a page asked for while signed out ----------------------------------------------


def test_a_page_opened_while_signed_out_opens_after_signing_in(pause_app: Flask) -> None:
    client = pause_app.test_client()
    asked = client.get("/portal/invoices?page=1")
    assert asked.status_code == 302
    assert asked.headers["Location"] == "/portal/login/biz_demo"
    with pause_app.app_context():
        link = pause_app.extensions["customer_portal"].create_session(AVA).link
    opened = open_link(client, link)
    assert opened.status_code == 303
    assert opened.headers["Location"] == "/portal/invoices?page=1"
    # Once: the next sign-in lands on the overview again.
    with pause_app.app_context():
        link = pause_app.extensions["customer_portal"].create_session(AVA).link
    assert open_link(client, link).headers["Location"] == "/portal/"


def test_only_a_portal_page_is_remembered(pause_app: Flask) -> None:
    for stored in ("//evil.example/portal/", "https://evil.example/portal/", "/elsewhere", 42):
        client = pause_app.test_client()
        with client.session_transaction() as session:
            session["_customer_portal_next"] = stored
        with pause_app.app_context():
            link = pause_app.extensions["customer_portal"].create_session(AVA).link
        assert open_link(client, link).headers["Location"] == "/portal/", stored


def test_a_deep_links_own_page_wins_over_the_page_asked_for(pause_app: Flask) -> None:
    client = pause_app.test_client()
    client.get("/portal/license-keys")
    with pause_app.app_context():
        link = (
            pause_app.extensions["customer_portal"]
            .create_session(AVA, flow="payment_method_update", subscription_id=AVA_SUB)
            .link
        )
    assert open_link(client, link).headers["Location"] == f"/portal/subscriptions/{AVA_SUB}/payment-method"


# -- choosing a plan ------------------------------------------------------------------


def test_the_plan_page_marks_the_current_plan_and_offers_only_the_others(pause_app: Flask) -> None:
    page = _signed_in(pause_app).get(f"/portal/subscriptions/{AVA_SUB}/plan").text
    choices = re.findall(r'<li class="payment-choice plan-choice[^"]*">(.*?)</li>', page, re.S)
    assert len(choices) == 5
    current = [c for c in choices if "Current plan" in c]
    assert len(current) == 1 and "Pro (monthly)" in current[0]
    # Shown for comparison, not as a change: no radio button.
    assert 'type="radio"' not in current[0]
    assert all('type="radio"' in c for c in choices if c not in current)
    # Seats belong to the per-seat plan only.
    assert [("data-per-seat" in c) for c in choices] == ["Team" in c for c in choices]
    assert 'class="field plan-seats' in page
    # The yearly plan says what it saves over twelve monthly payments of its twin.
    [yearly] = [c for c in choices if "Pro (yearly)" in c]
    assert "Save $38.00 a year compared with paying monthly" in yearly
    assert sum("Save " in c for c in choices) == 1


def test_yearly_savings_need_a_monthly_twin() -> None:
    def plan(plan_id: str, name: str, amount: int, interval: str, **kw: Any) -> Plan:
        return Plan(plan_id, "Acme", name, Money(amount, "USD"), interval, **kw)

    plans = (
        plan("m", "Pro (monthly)", 1900, "month"),
        plan("y", "Pro (yearly)", 19000, "year"),
        plan("y2", "Max (yearly)", 19000, "year"),  # no monthly Max
        plan("y3", "Basic yearly", 20000, "year"),
        plan("m3", "Basic monthly", 1500, "month"),  # 12 x 15 = 180 < 200: no saving
        plan("ys", "Pro (yearly)", 9000, "year", per_seat=True, max_quantity=9),  # per seat: another twin
    )
    assert yearly_savings(plans) == {"y": Money(3800, "USD")}


# -- the link page ----------------------------------------------------------------------


def test_a_first_time_invitee_is_welcomed_and_told_whose_account_it_opens(pause_app: Flask) -> None:
    # Chen has never signed in.
    with pause_app.app_context():
        link = pause_app.extensions["customer_portal"].send_invite("cus_demo_chen").link
    client = pause_app.test_client()
    page = client.get(link.removeprefix("http://shop.test")).text
    assert '<h1 id="open-title">Welcome</h1>' in page
    assert "Acme Software invited you to your customer portal" in page
    assert "This link opens the account of:" in page
    assert "chen@example.com" in page
    # Once signed in, a later link says "Welcome back".
    assert open_link(client, link).status_code == 303
    with pause_app.app_context():
        again = pause_app.extensions["customer_portal"].create_session("cus_demo_chen").link
    page = pause_app.test_client().get(again.removeprefix("http://shop.test")).text
    assert '<h1 id="open-title">Welcome back</h1>' in page


def test_a_returning_customers_link_names_them(pause_app: Flask) -> None:
    client = pause_app.test_client()
    sign_in(pause_app, client)
    with pause_app.app_context():
        link = pause_app.extensions["customer_portal"].create_session(AVA).link
    page = pause_app.test_client().get(link.removeprefix("http://shop.test")).text
    assert '<h1 id="open-title">Welcome back</h1>' in page
    assert re.search(r'<p class="link-account"><strong>Ava [^<]+</strong><br>ava@example.com</p>', page), page


def test_the_new_words_are_indonesian_for_budi(pause_app: Flask) -> None:
    budi = _signed_in(pause_app, BUDI)
    keys = budi.get("/portal/license-keys").text
    assert (
        '<span class="when-closed">Tampilkan kunci</span><span class="when-open">Sembunyikan kunci</span>'
        in keys
    )
    assert 'data-copied-label="Tersalin"' in keys
    with pause_app.app_context():
        link = pause_app.extensions["customer_portal"].create_session(BUDI).link
    # Before signing in, the page speaks the browser's language.
    page = (
        pause_app.test_client()
        .get(link.removeprefix("http://shop.test"), headers={"Accept-Language": "id"})
        .text
    )
    assert "Tautan ini membuka akun milik:" in page
    assert "Selamat datang kembali" in page
