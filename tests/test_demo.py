"""The demo as a new user meets it: ``make demo`` installs only what the demo
runs, ``demo-data --reset`` puts the demo customers back as they started,
pausing and retention offers are on, and the printed login email stands
apart from the request log."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from portal_fixtures import sign_in
from sqlalchemy import func, select

from example_app import create_app, storage
from example_app.demo import DEMO_CUSTOMER_IDS, delete_demo_customers
from flask_customer_portal import (
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LogMailer,
    Message,
    SubscriptionStatus,
)
from flask_customer_portal.contrib.sqla import AuditEventModel, PortalModel, PortalSessionModel
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import AuditEvent
from flask_customer_portal.testing import csrf_token_from

ROOT = Path(__file__).resolve().parent.parent
AVA_SUB = "sub_demo_ava_sync"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}"})
    result = app.test_cli_runner().invoke(args=["demo-data"])
    assert result.exit_code == 0, result.output
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def _rows_of(app: Flask, customer_ids: tuple[str, ...]) -> dict[str, int]:
    """Rows per portal table that belong to ``customer_ids``."""
    session = app.extensions["sqlalchemy"].session
    counts: dict[str, int] = {}
    for table in PortalModel.metadata.sorted_tables:
        if "customer_id" in table.c:
            counts[table.name] = session.scalar(
                select(func.count()).select_from(table).where(table.c.customer_id.in_(customer_ids))
            )
    return counts


def _demo_state(app: Flask) -> tuple[Any, ...]:
    """The demo customers as the portal shows them (dates aside)."""
    store = storage()
    return tuple(
        (
            store.get_customer(cid).name,  # type: ignore[union-attr]
            [(s.id, s.status, s.plan_id) for s in store.list_subscriptions(cid)],
            [(i.id, i.status, i.total) for i in store.list_invoices(cid, page=1, per_page=100).items],
            [(k.id, k.activations) for k in store.list_license_keys(cid)],
            [m.id for m in store.list_payment_methods(cid)],
            store.get_billing_details(cid) is not None,
        )
        for cid in DEMO_CUSTOMER_IDS
    )


# --- demo-data --reset ------------------------------------------------------


def test_reset_restores_the_demo_customers_and_nobody_else(shop: Flask) -> None:
    other = "cus_shop_real"
    with shop.app_context():
        store = storage()
        fresh = _demo_state(shop)
        fresh_rows = _rows_of(shop, DEMO_CUSTOMER_IDS)
        store.add_customer(Customer(id=other, email="real@example.com", name="A real customer"))
        now = datetime.now(timezone.utc)
        store.add_invoice(
            Invoice(
                id="inv_real_1",
                number=store.next_invoice_number(),
                customer_id=other,
                status=InvoiceStatus.PAID,
                currency="USD",
                subtotal=500,
                tax=0,
                total=500,
                issued_at=now,
                description="A sale",
                lines=(InvoiceLine("A sale", 1, 500, 500),),
            )
        )
        store.record_event(AuditEvent(other, "profile.updated", now))
    # Play with the demo: sign in, cancel, rename, pause, and let time pass.
    client = shop.test_client()
    sign_in(shop, client, "cus_demo_ava")
    page = client.get("/portal/profile")
    client.post(
        "/portal/profile",
        data={"csrf_token": csrf_token_from(page.text), "name": "Someone Else", "email": "ava@example.com"},
    )
    with shop.app_context():
        store = storage()
        store.cancel_subscription(
            "cus_demo_ava", AVA_SUB, at_period_end=False, now=datetime.now(timezone.utc)
        )
        shop.extensions["customer_portal"].erase_customer("cus_demo_chen")
        others_before = _rows_of(shop, (other,))
        assert _demo_state(shop) != fresh
        assert shop.extensions["sqlalchemy"].session.scalar(
            select(func.count())
            .select_from(PortalSessionModel)
            .where(PortalSessionModel.customer_id == "cus_demo_ava")
        )

    result = shop.test_cli_runner().invoke(args=["demo-data", "--reset"])
    assert result.exit_code == 0, result.output
    assert "Reset demo data: cus_demo_ava, cus_demo_budi, cus_demo_chen, cus_demo_dewi." in result.output
    with shop.app_context():
        assert _demo_state(shop) == fresh
        assert _rows_of(shop, DEMO_CUSTOMER_IDS) == fresh_rows  # no session, link or event left over
        assert _rows_of(shop, (other,)) == others_before
        assert storage().get_invoice(other, "inv_real_1") is not None
        # A number handed out is never reused, after a reset too.
        numbers = [i.number for i in storage().list_invoices("cus_demo_ava", page=1, per_page=100).items]
        assert "INV-000001" not in numbers
    assert client.get("/portal/").status_code == 302  # the old session went with the rest


def test_reset_works_from_any_state_and_only_in_test_mode(shop: Flask, tmp_path: Path) -> None:
    runner = shop.test_cli_runner()
    with shop.app_context():
        shop.extensions["customer_portal"].erase_customer("cus_demo_chen")  # half a demo is still a demo
        session = shop.extensions["sqlalchemy"].session
        assert session.scalar(select(func.count()).select_from(AuditEventModel)) > 0
    assert runner.invoke(args=["demo-data", "--reset"]).exit_code == 0
    assert runner.invoke(args=["demo-data", "--reset"]).exit_code == 0  # and again
    with shop.app_context():
        chen = storage().get_customer("cus_demo_chen")
        assert chen is not None and chen.email == "chen@example.com"
    shop.config["CUSTOMER_PORTAL_MODE"] = "live"
    refused = runner.invoke(args=["demo-data", "--reset"])
    assert refused.exit_code == 1
    assert "test mode" in refused.output


# --- every feature can be seen --------------------------------------------------


def test_the_demo_offers_pausing_and_retention_offers(shop: Flask) -> None:
    assert get_state(shop).config.allow_pause
    client = shop.test_client()
    sign_in(shop, client, "cus_demo_ava")
    page = client.get(f"/portal/subscriptions/{AVA_SUB}")
    assert f'action="/portal/subscriptions/{AVA_SUB}/pause"' in page.text
    offers = {}
    for reason in ("too_expensive", "temporary", "not_using", "other"):
        form = client.get(f"/portal/subscriptions/{AVA_SUB}/cancel/reason")
        answer = client.post(
            f"/portal/subscriptions/{AVA_SUB}/cancel/reason",
            data={"csrf_token": csrf_token_from(form.text), "reason": reason},
        )
        assert answer.status_code == 200
        offers[reason] = "retention-offer" in answer.text
    assert offers == {"too_expensive": True, "temporary": True, "not_using": True, "other": False}


# --- the login email in the terminal -------------------------------------------------


def test_a_printed_email_stands_apart_from_the_request_log(caplog: pytest.LogCaptureFixture) -> None:
    link = "http://127.0.0.1:5000/portal/login/biz_demo/.eJyrVkrOz0nTSs7PL0pRslJKSS1OLUpLLS5JzVUqKVbSUSpKLVayUoJKAQ"
    message = Message(
        to="ava@example.com",
        subject="Your sign-in link",
        text=f"Hello Ava,\n\nUse this link to sign in:\n\n{link}\n\nAcme Software\n",
        html="<p>…</p>",
    )
    with caplog.at_level(logging.WARNING, logger="flask_customer_portal.mail"):
        LogMailer(default_sender="billing@acme.example").send(message)
    (record,) = caplog.records
    printed = record.getMessage()
    lines = printed.split("\n")
    assert lines[0] == "" and lines[-1] == ""  # a blank line before and after
    assert lines[1] == lines[-2] == "=" * 72  # a rule above and below
    assert "To: ava@example.com" in lines and "Subject: Your sign-in link" in lines
    assert link in lines  # the link alone on its line, to copy whole
    assert "<p>" not in printed  # the plain-text part only


def test_the_demo_prints_the_login_email_boxed(shop: Flask, caplog: pytest.LogCaptureFixture) -> None:
    client = shop.test_client()
    page = client.get("/portal/login/biz_demo")
    with caplog.at_level(logging.WARNING, logger="flask_customer_portal.mail"):
        client.post(
            "/portal/login/biz_demo",
            data={"email": "ava@example.com", "csrf_token": csrf_token_from(page.text)},
        )
        get_state(shop).wait_for_background_tasks()
    (printed,) = [r.getMessage() for r in caplog.records if r.name == "flask_customer_portal.mail"]
    assert re.search(r"^http://127\.0\.0\.1:5000/portal/login/biz_demo/\S+$", printed, flags=re.MULTILINE)


# --- make demo ---------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    """``make -n`` in a copy with no virtualenv: the commands ``make demo``
    would run from scratch."""
    for name in ("Makefile", "pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    # As typed in a shell, also when the suite itself runs under `make test`
    # (a sub-make would print "Entering directory …/pytest-of-…").
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    planned = subprocess.run(  # fixed arguments, a dry run
        ["make", "-n", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True, env=env
    ).stdout
    installs = [
        line for line in planned.splitlines() if "pip install" in line and "--upgrade pip" not in line
    ]
    assert installs, planned
    assert all("[dev]" not in line for line in installs), installs
    assert any("'.[example]'" in line for line in installs), installs
    assert "pytest" not in planned and "mypy" not in planned
    # `make test` still gets the dev tools.
    tested = subprocess.run(  # fixed arguments, a dry run
        ["make", "-n", ".venv/.installed"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "'.[dev]'" in tested


# --- Dewi ---------------------------------------------------------------------------


def test_dewi_shows_an_open_invoice_a_trial_a_credit_note_and_a_code(shop: Flask) -> None:
    with shop.app_context():
        store = storage()
        dewi = store.get_customer("cus_demo_dewi")
        assert dewi is not None and dewi.email == "dewi@example.com"
        invoices = {i.id: i for i in store.list_invoices(dewi.id, page=1, per_page=100).items}
        onboarding = invoices["inv_demo_dewi_onboarding"]
        assert onboarding.status is InvoiceStatus.OPEN and onboarding.subscription_id is None
        refunded = store.get_invoice(dewi.id, "inv_demo_dewi_desktop")
        assert refunded is not None and refunded.fully_refunded
        (note,) = refunded.credit_notes
        assert note.number.startswith("CN-") and note.refunded == refunded.total
        statuses = {s.id: s.status for s in store.list_subscriptions(dewi.id)}
        assert statuses == {
            "sub_demo_dewi_desktop": SubscriptionStatus.TRIALING,
            "sub_demo_dewi_sync": SubscriptionStatus.ACTIVE,
        }
        code = store.get_promotion_code("welcome10")
        assert code is not None and code.percent_off == 10 and code.active
        assert not store.promotion_redeemed(dewi.id, "WELCOME10")
    client = shop.test_client()
    sign_in(shop, client, "cus_demo_dewi")
    assert "Trial ends on" in client.get("/portal/subscriptions/sub_demo_dewi_desktop").text
    assert "CN-" in client.get("/portal/invoices/inv_demo_dewi_desktop").text
    form = client.get("/portal/subscriptions/sub_demo_dewi_sync/plan")
    preview = client.post(
        "/portal/subscriptions/sub_demo_dewi_sync/plan",
        data={
            "csrf_token": csrf_token_from(form.text),
            "step": "preview",
            "plan": "plan_sync_pro_monthly",
            "quantity": "1",
            "promotion_code": "welcome10",
        },
    )
    assert preview.status_code == 200 and "WELCOME10" in preview.text


def test_a_demo_database_from_before_dewi_gains_her(shop: Flask) -> None:
    """Ava, Budi and Chen loaded by an older demo: `demo-data` adds Dewi
    and leaves the others as they are."""
    with shop.app_context():
        delete_demo_customers(shop.extensions["sqlalchemy"].session(), ("cus_demo_dewi",))
        before = _rows_of(shop, DEMO_CUSTOMER_IDS[:3])
        assert storage().get_customer("cus_demo_dewi") is None
    result = shop.test_cli_runner().invoke(args=["demo-data"])
    assert result.exit_code == 0, result.output
    assert "Loaded demo data: cus_demo_dewi." in result.output
    with shop.app_context():
        assert storage().get_customer("cus_demo_dewi") is not None
        assert _rows_of(shop, DEMO_CUSTOMER_IDS[:3]) == before
    again = shop.test_cli_runner().invoke(args=["demo-data"])
    assert "Demo data already loaded." in again.output


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("backend", ["stripe", "dodo"])
def test_make_demo_over_a_provider_installs_its_extra(tmp_path: Path, backend: str) -> None:
    for name in ("Makefile", "pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    planned = subprocess.run(  # fixed arguments, a dry run
        ["make", "-n", "demo", f"BACKEND={backend}", "PORT=8123"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    ).stdout
    installs = [line for line in planned.splitlines() if "pip install" in line]
    assert len(installs) == 1 and f"'.[demo-{backend}]'" in installs[0], planned
    assert f"scripts/demo_backend.py {backend} --port 8123" in planned
    assert "demo-data" not in planned  # the stand-in is seeded, not the shop's own tables
    refused = subprocess.run(  # fixed arguments, a dry run
        ["make", "-n", "demo", "BACKEND=paypal"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert refused.returncode != 0 and "BACKEND must be local, stripe or dodo" in refused.stderr
