"""Erasing a customer (GDPR art. 17): personal data goes, invoices keep what
they must, the customer can no longer sign in, and the erasure is audited
and signalled; on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from portal_fixtures import make_portal_app, open_link, path_of, portal_store, sign_in
from pypdf import PdfReader
from sqlalchemy import select

from flask_customer_portal import Customer, CustomerNotFound, signals
from flask_customer_portal.cli import portal_cli
from flask_customer_portal.contrib.sqla import (
    AuditEventModel,
    LinkModel,
    PaymentMethodModel,
    PortalSessionModel,
    SQLAlchemyStorage,
)
from flask_customer_portal.erasure import ErasureRefused
from flask_customer_portal.pdf import InvoiceDocument
from flask_customer_portal.state import PortalState, get_state
from flask_customer_portal.storage import (
    ERASED_EMAIL_DOMAIN,
    AuditEvent,
    Invoice,
    InvoiceStatus,
    SubscriptionStatus,
)
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA, BUDI, CHEN = "cus_demo_ava", "cus_demo_budi", "cus_demo_chen"


@pytest.fixture
def shop(db_url: str) -> Iterator[Flask]:
    """The demo shop on each database, its tables emptied afterwards."""
    app = make_portal_app(db_url, mailer=MemoryMailer())
    yield app
    get_state(app).shutdown()
    with app.app_context():
        store = get_state(app).storage
        assert isinstance(store, SQLAlchemyStorage)
        app.extensions["sqlalchemy"].session.remove()
        store.drop_all()
        app.extensions["sqlalchemy"].engine.dispose()


def _state(app: Flask) -> PortalState:
    return get_state(app)


def _everything(app: Flask, customer_id: str) -> tuple[Any, ...]:
    """What the store holds for one customer, for before/after comparisons."""
    store = portal_store(app)
    return (
        store.get_customer(customer_id),
        tuple(store.list_subscriptions(customer_id)),
        tuple(store.list_invoices(customer_id, page=1, per_page=1000).items),
        tuple(
            store.get_invoice(customer_id, i.id)
            for i in store.list_invoices(customer_id, page=1, per_page=1000).items
        ),
        tuple(store.list_payment_methods(customer_id)),
        tuple(store.list_license_keys(customer_id)),
        store.get_billing_details(customer_id),
        tuple(store.list_events(customer_id)),
    )


def _without_token(invoice: Invoice | None) -> Invoice | None:
    """The invoice as issued, but for the token of the card that paid it."""
    if invoice is None or invoice.payment_method is None:
        return invoice
    return dataclasses.replace(
        invoice, payment_method=dataclasses.replace(invoice.payment_method, provider_token="")
    )


def _rows(app: Flask, model: Any, customer_id: str) -> list[Any]:
    session = app.extensions["sqlalchemy"].session
    return list(session.scalars(select(model).where(model.customer_id == customer_id)))


def test_erasure_is_refused_while_a_subscription_is_not_cancelled(shop: Flask) -> None:
    with shop.app_context():
        before = _everything(shop, BUDI)
        with pytest.raises(ErasureRefused, match=r"sub_demo_budi_sync \(on_hold\).*force=True") as refused:
            shop.extensions["customer_portal"].erase_customer(BUDI)
        assert [s.id for s in refused.value.subscriptions] == ["sub_demo_budi_sync"]
        assert _everything(shop, BUDI) == before
        with pytest.raises(CustomerNotFound):
            shop.extensions["customer_portal"].erase_customer("cus_nobody")


def test_erasure_removes_personal_data_and_keeps_the_invoices(shop: Flask) -> None:
    sign_in(shop, shop.test_client(), BUDI)  # a session, with a user agent, and a used link
    received: list[dict[str, Any]] = []

    def record(sender: Flask, **extra: Any) -> None:
        received.append(extra)

    with shop.app_context():
        store = portal_store(shop)
        shop.extensions["customer_portal"].create_session(BUDI)  # an unused link
        store.record_event(
            AuditEvent(
                BUDI,
                "email.changed",
                store.list_events(BUDI)[-1].occurred_at,
                details={
                    "old_email": "budi@example.com",
                    "new_email": "budi@example.com",
                    "ip": "198.51.100.7",
                },
            )
        )
        ava_before = _everything(shop, AVA)
        invoices_before = {
            i.id: store.get_invoice(BUDI, i.id) for i in store.list_invoices(BUDI, page=1, per_page=100).items
        }
        assert _rows(shop, PortalSessionModel, BUDI) and _rows(shop, LinkModel, BUDI)

        with signals.customer_erased.connected_to(record, shop):
            report = shop.extensions["customer_portal"].erase_customer(
                BUDI, force=True, details={"request": "ticket-42"}
            )

        # The customer: anonymised, not deleted (invoices name it).
        erased = store.get_customer(BUDI)
        assert erased is not None and erased.is_erased
        assert erased.email.endswith("@" + ERASED_EMAIL_DOMAIN)
        assert (erased.name, erased.phone, erased.locale, erased.timezone) == ("", None, None, None)
        assert store.find_customer_by_email("budi@example.com") is None
        # Gone: sessions (user agents, places), links, billing details, licence keys.
        assert _rows(shop, PortalSessionModel, BUDI) == []
        assert _rows(shop, LinkModel, BUDI) == []
        assert store.get_billing_details(BUDI) is None
        assert not store.list_license_keys(BUDI)
        # The card the invoices name stays for them, and can never be charged again.
        (card,) = _rows(shop, PaymentMethodModel, BUDI)
        assert (card.id, card.last4, card.provider_token) == ("pm_demo_budi_card", "0002", "")
        # The subscription was cancelled first (force), at the store.
        (subscription,) = store.list_subscriptions(BUDI)
        assert subscription.status is SubscriptionStatus.CANCELLED and subscription.ended_at is not None
        # Invoices are kept exactly as issued, billing details included.
        after = {i: store.get_invoice(BUDI, i) for i in invoices_before}
        assert {i: _without_token(v) for i, v in after.items()} == {
            i: _without_token(v) for i, v in invoices_before.items()
        }
        paid = [v for v in after.values() if v is not None and v.status is InvoiceStatus.PAID]
        assert paid and all(v.payment_method is not None for v in paid)  # "paid with Visa 0002"
        assert any(i and i.billing_details and i.billing_details.tax_id for i in after.values())
        assert {i.status for i in after.values() if i} == {InvoiceStatus.PAID, InvoiceStatus.OPEN}
        # The audit log: kept, without personal data, with the erasure in it.
        events = store.list_events(BUDI)
        dumped = json.dumps([e.details for e in events])
        for personal in ("budi@example.com", "198.51.100.7", "Budi", "Mozilla"):
            assert personal not in dumped
        audit_rows = _rows(shop, AuditEventModel, BUDI)
        assert not any("old_email" in row.details or "ip" in row.details for row in audit_rows)
        erasure = events[-1]
        assert (erasure.action, erasure.actor) == ("customer.erased", "merchant")
        assert erasure.details == {"request": "ticket-42", "forced": "true", "subscriptions_cancelled": "1"}
        assert [e.action for e in events].count("subscription.cancelled") == 1
        # The report and the signal.
        assert (report.customer_id, report.invoices_kept, report.payment_methods_kept) == (BUDI, 3, 1)
        assert report.sessions_deleted == 1 and report.links_deleted == 2
        assert report.license_keys_deleted == 1 and report.billing_details_deleted == 1
        assert report.audit_events_scrubbed >= 1
        (sent,) = received
        assert sent["report"] == report
        assert sent["customer"].email == "budi@example.com"  # as it was, to erase copies elsewhere
        assert [s.id for s in sent["cancelled"]] == ["sub_demo_budi_sync"]
        # Other customers are untouched, and the address is free for a new account.
        assert _everything(shop, AVA) == ava_before
        again = shop.extensions["customer_portal"].add_customer(
            Customer(id="cus_new", email="budi@example.com", name="Budi")
        )
        assert again.id == "cus_new"


def test_an_erased_customer_cannot_sign_in(shop: Flask) -> None:
    signed_in = shop.test_client()
    sign_in(shop, signed_in, CHEN)
    with shop.app_context():
        pending = shop.extensions["customer_portal"].create_session(CHEN).link
        report = shop.extensions["customer_portal"].erase_customer(CHEN)
        assert report.invoices_kept == 0
        with pytest.raises(CustomerNotFound):
            shop.extensions["customer_portal"].create_session(CHEN)
        with pytest.raises(CustomerNotFound):
            shop.extensions["customer_portal"].send_invite(CHEN)
    # The session that was signed in is over.
    assert signed_in.get("/portal/").status_code == 302
    # A link made before does not open the portal.
    assert signed_in.get(path_of(pending)).status_code in (404, 410)
    # The static link sends nothing to the old address.
    client = shop.test_client()
    page = client.get("/portal/login/biz_demo")
    client.post(
        "/portal/login/biz_demo", data={"email": "chen@example.com", "csrf_token": csrf_token_from(page.text)}
    )
    _state(shop).wait_for_background_tasks()
    mailer = _state(shop).mailer
    assert isinstance(mailer, MemoryMailer)
    assert mailer.outbox == []


def test_a_host_user_of_an_erased_customer_is_not_signed_in(shop: Flask) -> None:
    state = _state(shop)
    shop.extensions["customer_portal"].customer_loader(lambda: CHEN)
    try:
        assert shop.test_client().get("/portal/").status_code == 200
        with shop.app_context():
            shop.extensions["customer_portal"].erase_customer(CHEN)
        assert shop.test_client().get("/portal/").status_code == 302
    finally:
        state.hooks.customer_loader = None


def test_invoices_of_an_erased_customer_still_render(shop: Flask) -> None:
    with shop.app_context():
        state = _state(shop)
        shop.extensions["customer_portal"].erase_customer(BUDI, force=True)
        customer = state.storage.get_customer(BUDI)
        invoice = state.storage.get_invoice(BUDI, "inv_demo_budi_sync_02")
        assert customer is not None and invoice is not None and invoice.billing_details is not None
        renderer = state.invoice_renderer
        assert renderer is not None
        pdf = renderer.render(
            InvoiceDocument(invoice=invoice, customer=customer, merchant_name="Acme Software")
        )
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert invoice.number in text
    assert "Budi Santoso" in text  # the name the invoice was issued to
    assert "Jakarta" in text
    assert ERASED_EMAIL_DOMAIN not in text and "budi@example.com" not in text


def test_the_erase_customer_command(shop: Flask) -> None:
    runner = shop.test_cli_runner()
    refused = runner.invoke(portal_cli, ["erase-customer", AVA, "--yes"])
    assert refused.exit_code == 1
    assert "sub_demo_ava_sync (active)" in refused.output and "--force" in refused.output
    assert runner.invoke(portal_cli, ["erase-customer", "cus_nobody", "--yes"]).exit_code == 1
    declined = runner.invoke(portal_cli, ["erase-customer", AVA, "--force"], input="n\n")
    assert declined.exit_code == 1
    with shop.app_context():
        assert portal_store(shop).get_customer(AVA).email == "ava@example.com"  # type: ignore[union-attr]
    result = runner.invoke(portal_cli, ["erase-customer", AVA, "--force"], input="y\n")
    assert result.exit_code == 0, result.output
    assert f"Erased customer {AVA}." in result.output
    assert "invoices kept: 15" in result.output
    with shop.app_context():
        erased = portal_store(shop).get_customer(AVA)
        assert erased is not None and erased.is_erased
        assert portal_store(shop).list_events(AVA)[-1].details["via"] == "cli"


def test_add_customer_is_idempotent_and_checked(shop: Flask) -> None:
    with shop.app_context():
        portal = shop.extensions["customer_portal"]
        ada = Customer(id="cus_ada", email="ada@example.com", name="Ada Lovelace")
        stored = portal.add_customer(ada)
        assert stored.created_at is not None
        assert portal.add_customer(ada) == stored  # a retried sign-up
        with pytest.raises(ValueError, match="another email"):
            portal.add_customer(Customer(id="cus_ada", email="other@example.com", name="Ada"))
        from flask_customer_portal.storage import EmailInUse

        with pytest.raises(EmailInUse):
            portal.add_customer(Customer(id="cus_ada2", email="ADA@example.com", name="Ada"))
        for bad in (
            Customer(id="", email="x@example.com", name=""),
            Customer(id="cus_x", email="nope", name=""),
        ):
            with pytest.raises(ValueError, match=r"customer id|email address"):
                portal.add_customer(bad)
    client = shop.test_client()
    with shop.app_context():
        link = portal.create_session("cus_ada").link
    assert open_link(client, link).status_code == 303


def test_a_composite_store_erases_locally_and_cancels_at_the_billing_store(tmp_path: Any) -> None:
    from test_composite_storage import BillingOnly

    from flask_customer_portal.contrib.composite import CompositeStorage

    adapters: list[BillingOnly] = []

    def composite(store: SQLAlchemyStorage) -> CompositeStorage:
        adapters.append(BillingOnly(store))
        return CompositeStorage(store, billing=adapters[0])

    app = make_portal_app(f"sqlite:///{tmp_path / 'composite.db'}", wrap_storage=composite)
    try:
        with app.app_context():
            report = app.extensions["customer_portal"].erase_customer(BUDI, force=True)
            assert report.customer_id == BUDI
            cancelled = [args for name, args, _ in adapters[0].calls if name == "cancel_subscription"]
            assert cancelled == [(BUDI, "sub_demo_budi_sync")]
            erased = get_state(app).storage.get_customer(BUDI)
            assert erased is not None and erased.is_erased
    finally:
        get_state(app).shutdown()
