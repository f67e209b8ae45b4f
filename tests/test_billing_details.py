"""Billing details: tax IDs checked with python-stdnum, the form that saves
them, the copy each invoice keeps (old invoices never change, new ones carry
the new details), adding them once to an invoice issued without, and the PDF."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from html import unescape
from typing import Any

import pytest
import time_machine
from blinker import Signal
from db_support import in_threads
from factories import vat_invoice
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import portal_store, sign_in
from pypdf import PdfReader

from flask_customer_portal import signals
from flask_customer_portal.billing.renewal import RenewalOutcome, renew_due
from flask_customer_portal.contrib.sqla import InvoiceModel, SQLAlchemyStorage
from flask_customer_portal.pdf import FPDFInvoiceRenderer, InvoiceDocument, default_labels
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    AuditEvent,
    BillingDetails,
    Customer,
    Invoice,
    InvoiceStatus,
    StateConflict,
    TaxIdScheme,
)
from flask_customer_portal.tax_ids import (
    InvalidTaxId,
    TaxIdProblem,
    bill_to_lines,
    country_codes,
    country_name,
    format_tax_id,
    scheme_for_country,
    validate_tax_id,
)
from flask_customer_portal.testing import csrf_token_from

AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"
CHEN = "cus_demo_chen"
AVA_SUB = "sub_demo_ava_sync"
AVA_INVOICE = "inv_demo_ava_sync_01"
BUDI_FIRST = "inv_demo_budi_sync_01"  # issued before Budi saved his details
BUDI_OPEN = "inv_demo_budi_sync_03"  # issued after
T0 = datetime(2026, 3, 14, 9, 0, tzinfo=timezone.utc)

ACME_GMBH = {
    "name": "Acme Analytics GmbH",
    "line1": "Friedrichstraße 123",
    "line2": "3. OG",
    "city": "Berlin",
    "region": "",
    "postal_code": "10117",
    "country": "DE",
    "tax_id_scheme": "",
    "tax_id": "de 136 695 976",
}


# -- helpers -------------------------------------------------------------------------


def _signed_in(app: Flask, customer_id: str) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, customer_id)
    return client


def _details(app: Flask, customer_id: str) -> BillingDetails | None:
    with app.app_context():
        return portal_store(app).get_billing_details(customer_id)


def _invoice(app: Flask, customer_id: str, invoice_id: str) -> Invoice:
    with app.app_context():
        invoice = portal_store(app).get_invoice(customer_id, invoice_id)
    assert invoice is not None
    return invoice


def _open_invoice_issued_without_details(app: Flask, customer_id: str, invoice_id: str) -> str:
    """An open invoice issued before the customer saved billing details (the
    store copies saved details onto every new invoice, so the copy is taken
    off again, as if the details had been saved after it)."""
    with app.app_context():
        store = portal_store(app)
        store.add_invoice(
            replace(
                _bare_invoice(invoice_id, customer_id, InvoiceStatus.OPEN), number=store.next_invoice_number()
            )
        )
        with app.extensions["sqlalchemy"].engine.begin() as connection:
            connection.execute(
                InvoiceModel.__table__.update()
                .where(InvoiceModel.id == invoice_id)
                .values(billing_details=None)
            )
    assert _invoice(app, customer_id, invoice_id).billing_details is None
    return invoice_id


def _events(app: Flask, customer_id: str) -> list[AuditEvent]:
    with app.app_context():
        return list(portal_store(app).list_events(customer_id))


def _field_value(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*\bname="{name}"[^>]*>', html)
    assert match, f"no {name} field"
    value = re.search(r'\bvalue="([^"]*)"', match.group(0))
    return unescape(value.group(1)) if value else ""


def _selected(html: str, name: str) -> str:
    select = re.search(rf'<select[^>]*\bname="{name}".*?</select>', html, re.S)
    assert select, f"no {name} select"
    option = re.search(
        r'<option[^>]*\bselected[^>]*value="([^"]*)"|<option[^>]*value="([^"]*)"[^>]*selected',
        select.group(0),
    )
    return "" if option is None else (option.group(1) or option.group(2) or "")


def _field_error(html: str, name: str) -> str | None:
    match = re.search(rf'<p class="field-message" id="{name}-error">(.*?)</p>', html, re.S)
    return unescape(match.group(1)).strip() if match else None


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@contextmanager
def _recording(signal: Signal, app: Flask) -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    with signal.connected_to(receiver, app):
        yield received


def _post_details(client: FlaskClient, data: dict[str, str], url: str = "/portal/profile/billing") -> Any:
    page = client.get(url)
    assert page.status_code == 200
    return client.post(url, data={**data, "csrf_token": csrf_token_from(page.text)})


# -- tax IDs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "country", "stored"),
    [
        ("DE136695976", "DE", "DE136695976"),
        ("de 136 695 976", "DE", "DE136695976"),
        ("136695976", "DE", "DE136695976"),  # the prefix comes from the country
        ("FR 40 303 265 045", "FR", "FR40303265045"),
        ("NL004495445B01", "NL", "NL004495445B01"),
        ("ESB58378431", "ES", "ESB58378431"),
        ("094259216", "GR", "EL094259216"),  # Greece's VAT prefix is EL
        ("ATU13585627", "CH", "ATU13585627"),  # a registration in another country
    ],
)
def test_valid_eu_vat_numbers(typed: str, country: str, stored: str) -> None:
    assert validate_tax_id(TaxIdScheme.EU_VAT, typed, country=country) == stored
    assert format_tax_id(TaxIdScheme.EU_VAT, stored) == stored


@pytest.mark.parametrize(
    ("typed", "country", "problem"),
    [
        ("DE136695977", "DE", TaxIdProblem.CHECKSUM),
        ("FR40303265046", "FR", TaxIdProblem.CHECKSUM),
        ("DE1366", "DE", TaxIdProblem.FORMAT),
        ("US123456789", "US", TaxIdProblem.FORMAT),
        ("136695976", "US", TaxIdProblem.FORMAT),  # no EU country to take a prefix from
        ("", "DE", TaxIdProblem.FORMAT),
        ("DE" + "1" * 80, "DE", TaxIdProblem.FORMAT),
    ],
)
def test_invalid_eu_vat_numbers(typed: str, country: str, problem: TaxIdProblem) -> None:
    with pytest.raises(InvalidTaxId) as caught:
        validate_tax_id(TaxIdScheme.EU_VAT, typed, country=country)
    assert caught.value.problem is problem
    assert caught.value.scheme is TaxIdScheme.EU_VAT


@pytest.mark.parametrize(
    ("typed", "stored", "shown"),
    [
        ("01.300.066.6-091.000", "013000666091000", "01.300.066.6-091.000"),
        ("013000666091000", "013000666091000", "01.300.066.6-091.000"),
        # Since 2024: 16 digits, the old number after a 0 …
        ("0013000666091000", "0013000666091000", "0013 0006 6609 1000"),
        # … or the owner's NIK.
        ("3171 0117 0845 0001", "3171011708450001", "3171 0117 0845 0001"),
    ],
)
def test_npwp_of_15_and_16_digits(typed: str, stored: str, shown: str) -> None:
    assert validate_tax_id(TaxIdScheme.ID_NPWP, typed, country="ID") == stored
    assert format_tax_id(TaxIdScheme.ID_NPWP, stored) == shown


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("01300066609100", TaxIdProblem.FORMAT),  # 14 digits
        ("01300066609100000", TaxIdProblem.FORMAT),  # 17 digits
        ("01.300.066.A-091.000", TaxIdProblem.FORMAT),
        ("013000667091000", TaxIdProblem.CHECKSUM),
        ("0013000667091000", TaxIdProblem.CHECKSUM),
    ],
)
def test_invalid_npwp(typed: str, problem: TaxIdProblem) -> None:
    with pytest.raises(InvalidTaxId) as caught:
        validate_tax_id(TaxIdScheme.ID_NPWP, typed)
    assert caught.value.problem is problem


def test_uk_vat_and_australian_abn() -> None:
    assert validate_tax_id(TaxIdScheme.GB_VAT, "GB 980 7806 84") == "GB980780684"
    assert validate_tax_id(TaxIdScheme.GB_VAT, "980780684") == "GB980780684"
    assert format_tax_id(TaxIdScheme.GB_VAT, "GB980780684") == "GB 980 7806 84"
    assert validate_tax_id(TaxIdScheme.AU_ABN, "51 824 753 556") == "51824753556"
    assert format_tax_id(TaxIdScheme.AU_ABN, "51824753556") == "51 824 753 556"
    with pytest.raises(InvalidTaxId) as caught:
        validate_tax_id(TaxIdScheme.AU_ABN, "51 824 753 557")
    assert caught.value.problem is TaxIdProblem.CHECKSUM
    with pytest.raises(InvalidTaxId):
        validate_tax_id(TaxIdScheme.GB_VAT, "GB 980 7806 85")


def test_the_usual_scheme_of_a_country() -> None:
    assert scheme_for_country("DE") is TaxIdScheme.EU_VAT
    assert scheme_for_country("gr") is TaxIdScheme.EU_VAT
    assert scheme_for_country("ID") is TaxIdScheme.ID_NPWP
    assert scheme_for_country("GB") is TaxIdScheme.GB_VAT
    assert scheme_for_country("AU") is TaxIdScheme.AU_ABN
    assert scheme_for_country("US") is TaxIdScheme.US_EIN
    assert scheme_for_country("VN") is None
    assert scheme_for_country(None) is None


def test_countries_are_named_and_sorted_in_the_readers_language() -> None:
    english, indonesian = dict(country_codes("en")), dict(country_codes("id"))
    assert english["DE"] == "Germany" and indonesian["DE"] == "Jerman"
    assert country_name("ID", "id") == "Indonesia"
    # Only real countries: no "European Union", "world" or unknown region.
    assert not {"EU", "UN", "ZZ", "001", "QO"} & set(english)
    assert {"ID", "DE", "GB", "AU", "US", "SG"} <= set(english)
    names = [name for _code, name in country_codes("id")]
    assert names == sorted(names, key=str.casefold)


def test_bill_to_lines_follow_the_countrys_custom() -> None:
    german = BillingDetails(
        name="Acme GmbH",
        line1="Friedrichstraße 123",
        country="DE",
        city="Berlin",
        postal_code="10117",
        tax_id="DE136695976",
        tax_id_scheme=TaxIdScheme.EU_VAT,
    )
    assert bill_to_lines(german, "en") == (
        "Acme GmbH",
        "Friedrichstraße 123",
        "10117 Berlin",
        "Germany",
        "VAT DE136695976",
    )
    indonesian = BillingDetails(
        name="Budi Santoso",
        line1="Jl. Jenderal Sudirman No. 52-53",
        line2="Senayan",
        country="ID",
        city="Jakarta Selatan",
        region="DKI Jakarta",
        postal_code="12190",
        tax_id="013000666091000",
        tax_id_scheme=TaxIdScheme.ID_NPWP,
    )
    assert bill_to_lines(indonesian, "id") == (
        "Budi Santoso",
        "Jl. Jenderal Sudirman No. 52-53",
        "Senayan",
        "Jakarta Selatan, DKI Jakarta 12190",
        "Indonesia",
        "NPWP 01.300.066.6-091.000",
    )


# -- the store (SQLite and PostgreSQL) -------------------------------------------------


def _customer(store: SQLAlchemyStorage, customer_id: str) -> None:
    store.add_customer(Customer(id=customer_id, email=f"{customer_id}@example.com", name=customer_id))


def _bare_invoice(
    invoice_id: str, customer_id: str, status: InvoiceStatus = InvoiceStatus.PAID, **kw: Any
) -> Invoice:
    return vat_invoice(invoice_id, customer_id, status=status, issued_at=T0, **kw)


GMBH = BillingDetails(
    name="Acme Analytics GmbH",
    line1="Friedrichstraße 123",
    line2="3. OG",
    country="DE",
    city="Berlin",
    postal_code="10117",
    tax_id="DE136695976",
    tax_id_scheme=TaxIdScheme.EU_VAT,
    updated_at=T0,
)


def test_billing_details_round_trip_and_scope(store: SQLAlchemyStorage) -> None:
    _customer(store, "cus_a")
    _customer(store, "cus_b")
    assert store.get_billing_details("cus_a") is None

    event = AuditEvent(customer_id="cus_a", action="billing_details.updated", occurred_at=T0)
    assert store.save_billing_details("cus_a", GMBH, event=event) == GMBH
    assert store.get_billing_details("cus_a") == GMBH
    assert store.get_billing_details("cus_b") is None
    assert [e.action for e in store.list_events("cus_a")] == ["billing_details.updated"]

    moved = BillingDetails(
        name="Acme Analytics GmbH", line1="Unter den Linden 1", country="DE", city="Berlin"
    )
    saved = store.save_billing_details("cus_a", moved)
    assert saved is not None and saved.tax_id is None and saved.updated_at is not None
    assert saved.updated_at.tzinfo is timezone.utc
    assert store.get_billing_details("cus_a") == saved
    assert store.save_billing_details("cus_nobody", GMBH) is None


def test_the_store_refuses_details_no_form_makes(store: SQLAlchemyStorage) -> None:
    _customer(store, "cus_a")
    for bad in (
        BillingDetails(name=" ", line1="x", country="DE"),
        BillingDetails(name="x", line1="x", country="Germany"),
        BillingDetails(name="x", line1="x", country="de"),
        BillingDetails(name="x", line1="x", country="DE", tax_id="DE136695976"),
    ):
        with pytest.raises(ValueError, match=r"billing details|country|tax ID"):
            store.save_billing_details("cus_a", bad)
    assert store.get_billing_details("cus_a") is None


def test_an_invoice_keeps_the_details_it_was_issued_with(store: SQLAlchemyStorage) -> None:
    _customer(store, "cus_a")
    before = store.add_invoice(_bare_invoice("inv_1", "cus_a"))
    assert before.billing_details is None

    store.save_billing_details("cus_a", GMBH)
    issued = store.add_invoice(_bare_invoice("inv_2", "cus_a"))
    assert issued.billing_details == GMBH

    store.save_billing_details("cus_a", BillingDetails(name="Renamed AG", line1="Elsewhere 1", country="AT"))
    after = store.add_invoice(_bare_invoice("inv_3", "cus_a"))

    assert store.get_invoice("cus_a", "inv_1") == before
    stored = store.get_invoice("cus_a", "inv_2")
    assert stored is not None and stored.billing_details == GMBH
    assert after.billing_details is not None and after.billing_details.name == "Renamed AG"
    listed = {i.id: i.billing_details for i in store.list_invoices("cus_a", page=1, per_page=10).items}
    assert listed["inv_2"] == GMBH and listed["inv_1"] is None


def test_details_are_added_to_an_invoice_once(store: SQLAlchemyStorage) -> None:
    _customer(store, "cus_a")
    _customer(store, "cus_b")
    store.add_invoice(_bare_invoice("inv_1", "cus_a", InvoiceStatus.OPEN))
    event = AuditEvent(customer_id="cus_a", action="invoice.billing_details_added", occurred_at=T0)

    assert store.add_invoice_billing_details("cus_b", "inv_1", GMBH, event=event) is None
    assert store.add_invoice_billing_details("cus_a", "inv_missing", GMBH) is None
    added = store.add_invoice_billing_details("cus_a", "inv_1", GMBH, event=event)
    assert added is not None and added.billing_details == GMBH

    other = BillingDetails(name="Someone else", line1="Street 1", country="FR")
    with pytest.raises(StateConflict):
        store.add_invoice_billing_details("cus_a", "inv_1", other, event=event)
    stored = store.get_invoice("cus_a", "inv_1")
    assert stored is not None and stored.billing_details == GMBH
    # One event: the refused attempt wrote nothing.
    assert [e.action for e in store.list_events("cus_a")] == ["invoice.billing_details_added"]


def test_concurrent_additions_only_one_wins(store_app: Flask, store: SQLAlchemyStorage) -> None:
    _customer(store, "cus_a")
    store.add_invoice(_bare_invoice("inv_1", "cus_a", InvoiceStatus.OPEN))
    candidates = [replace(GMBH, name=f"Company {n}") for n in range(6)]
    names = iter(candidates)
    lock = threading.Lock()

    def add() -> str:
        with lock:
            details = next(names)
        try:
            store.add_invoice_billing_details("cus_a", "inv_1", details)
        except StateConflict:
            return "refused"
        return details.name

    results = in_threads(store_app, len(candidates), add)
    winners = [r for r in results if r != "refused"]
    assert len(winners) == 1 and results.count("refused") == len(candidates) - 1
    stored = store.get_invoice("cus_a", "inv_1")
    assert stored is not None and stored.billing_details is not None
    assert stored.billing_details.name == winners[0]


# -- renewals carry the details saved before them ---------------------------------------


def test_a_renewal_after_a_change_carries_the_new_details_and_old_invoices_stay(app: Flask) -> None:
    client = _signed_in(app, AVA)
    old = _invoice(app, AVA, AVA_INVOICE)
    assert old.billing_details is None

    response = _post_details(client, ACME_GMBH)
    assert response.status_code == 303

    with app.app_context():
        subscription = portal_store(app).get_subscription(AVA, AVA_SUB)
        assert subscription is not None
        end = subscription.current_period_end
    with time_machine.travel(end + timedelta(minutes=5), tick=False), app.app_context():
        report = renew_due(get_state(app))
    [result] = report.results
    assert result.outcome is RenewalOutcome.RENEWED and result.invoice is not None
    renewal = _invoice(app, AVA, result.invoice.id)
    assert renewal.billing_details is not None
    assert renewal.billing_details.name == "Acme Analytics GmbH"
    assert renewal.billing_details.tax_id == "DE136695976"

    # Ava moves; the renewal already issued keeps the old address.
    response = _post_details(client, {**ACME_GMBH, "line1": "Unter den Linden 5", "postal_code": "10117"})
    assert response.status_code == 303
    assert _invoice(app, AVA, result.invoice.id) == renewal
    assert _invoice(app, AVA, AVA_INVOICE) == old
    page = client.get(f"/portal/invoices/{renewal.id}")
    assert "Friedrichstraße 123" in page.text and "Unter den Linden" not in page.text


# -- the billing details page -------------------------------------------------------------


def test_the_profile_links_to_billing_details(app: Flask) -> None:
    page = _signed_in(app, AVA).get("/portal/profile")
    assert 'href="/portal/profile/billing"' in page.text


def test_saving_billing_details(app: Flask) -> None:
    client = _signed_in(app, AVA)
    page = client.get("/portal/profile/billing")
    assert page.status_code == 200
    assert '<option value="DE">Germany</option>' in page.text
    assert _field_value(page.text, "name") == ""

    with _recording(signals.billing_details_updated, app) as received:
        response = _post_details(client, ACME_GMBH)
    assert response.status_code == 303
    assert response.location.endswith("/portal/profile/billing")

    saved = _details(app, AVA)
    assert saved is not None
    assert (saved.name, saved.line1, saved.line2, saved.city, saved.postal_code, saved.country) == (
        "Acme Analytics GmbH",
        "Friedrichstraße 123",
        "3. OG",
        "Berlin",
        "10117",
        "DE",
    )
    assert saved.region is None
    assert (saved.tax_id, saved.tax_id_scheme) == ("DE136695976", TaxIdScheme.EU_VAT)
    [signal] = received
    assert signal["billing_details"] == saved and signal["customer"].id == AVA
    assert "tax_id" in signal["changed"] and "country" in signal["changed"]
    [event] = [e for e in _events(app, AVA) if e.action == "billing_details.updated"]
    assert "tax_id" in event.details["changed"]

    shown = client.get("/portal/profile/billing")
    assert "Invoices issued from now on show them." in shown.text
    assert _field_value(shown.text, "tax_id") == "DE136695976"
    assert _selected(shown.text, "country") == "DE"

    # The same details again: nothing to save, no event, no signal.
    with _recording(signals.billing_details_updated, app) as again:
        response = _post_details(client, ACME_GMBH)
    assert response.status_code == 303 and again == []
    assert "There were no changes to save." in client.get("/portal/profile/billing").text
    assert len([e for e in _events(app, AVA) if e.action == "billing_details.updated"]) == 1


def test_an_npwp_is_shown_formatted(app: Flask) -> None:
    client = _signed_in(app, BUDI)
    page = client.get("/portal/profile/billing", headers={"Accept-Language": "en"})
    assert _field_value(page.text, "tax_id") == "01.300.066.6-091.000"
    assert _selected(page.text, "tax_id_scheme") == "id_npwp"
    response = _post_details(
        client,
        {
            "name": "PT Santoso Digital",
            "line1": "Jl. Jenderal Sudirman No. 52-53",
            "line2": "",
            "city": "Jakarta Selatan",
            "region": "DKI Jakarta",
            "postal_code": "12190",
            "country": "ID",
            "tax_id_scheme": "",
            "tax_id": "0013000666091000",
        },
    )
    assert response.status_code == 303
    saved = _details(app, BUDI)
    assert saved is not None and saved.tax_id == "0013000666091000"
    assert _field_value(client.get("/portal/profile/billing").text, "tax_id") == "0013 0006 6609 1000"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"tax_id": "DE136695977"},
            "tax_id",
            "This EU VAT number is not valid. Check it for typing mistakes.",
        ),
        ({"tax_id": "DE12"}, "tax_id", "Enter a valid EU VAT number, like DE136695976."),
        (
            {"tax_id_scheme": "id_npwp", "tax_id": "12345"},
            "tax_id",
            "Enter a valid Indonesian NPWP, like 01.300.066.6-091.000.",
        ),
        ({"country": "VN", "tax_id": "0100109106"}, "tax_id_scheme", "Choose which kind of tax ID this is."),
        ({"tax_id_scheme": "xx_vat"}, "tax_id_scheme", "Choose a kind of tax ID from the list."),
        ({"country": ""}, "country", "Choose a country."),
        ({"country": "XX"}, "country", "Choose a country from the list."),
        ({"country": "EU"}, "country", "Choose a country from the list."),
        ({"name": "  "}, "name", "Enter the name to bill."),
        ({"line1": ""}, "line1", "Enter the street address."),
        ({"city": ""}, "city", "Enter the city."),
        ({"postal_code": "10117; DROP"}, "postal_code", None),
        ({"line2": "a" * 201}, "line2", "This can be at most 200 characters long."),
        ({"name": "Acme\u202eHbmG"}, "name", "Remove the invisible control characters."),
    ],
)
def test_bad_input_is_refused_next_to_its_field_and_nothing_is_lost(
    app: Flask, changes: dict[str, str], field: str, message: str | None
) -> None:
    client = _signed_in(app, AVA)
    typed = {**ACME_GMBH, **changes}
    with _recording(signals.billing_details_updated, app) as received:
        response = _post_details(client, typed)

    assert response.status_code == 422
    error = _field_error(response.text, field)
    assert error is not None
    if message is not None:
        assert error == message
    assert "Nothing was saved." in response.text
    # What was typed is shown back.
    for name in ("name", "line1", "line2", "city", "postal_code", "tax_id"):
        assert _field_value(response.text, name) == typed[name]
    # A listed country stays selected (a code not in the list cannot be).
    listed = typed["country"] in {"DE", "VN"}
    assert _selected(response.text, "country") == (typed["country"] if listed else "")
    assert _details(app, AVA) is None and received == []


def test_the_form_needs_its_csrf_token(app: Flask) -> None:
    client = _signed_in(app, AVA)
    response = client.post("/portal/profile/billing", data=ACME_GMBH)
    assert response.status_code == 400
    assert "This form expired" in response.text
    response = client.post("/portal/profile/billing", data={**ACME_GMBH, "csrf_token": "forged"})
    assert response.status_code == 400
    assert _details(app, AVA) is None


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    for url in ("/portal/profile/billing", f"/portal/invoices/{AVA_INVOICE}/billing-details"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.location.endswith("/portal/login/biz_demo")


# -- an invoice issued without details ------------------------------------------------------


def test_adding_current_details_to_an_invoice_issued_without(app: Flask) -> None:
    client = _signed_in(app, BUDI)
    unpaid = _open_invoice_issued_without_details(app, BUDI, "inv_budi_unpaid")
    invoice_page = client.get(f"/portal/invoices/{unpaid}")
    link = f"/portal/invoices/{unpaid}/billing-details"
    assert f'href="{link}"' in invoice_page.text

    page = client.get(link)
    assert page.status_code == 200
    assert "NPWP 01.300.066.6-091.000" in page.text
    assert _invoice(app, BUDI, unpaid).billing_details is None  # a GET changes nothing

    with _recording(signals.invoice_billing_details_added, app) as received:
        response = client.post(link, data={"csrf_token": csrf_token_from(page.text)})
    assert response.status_code == 303
    assert response.location.endswith(f"/portal/invoices/{unpaid}")
    invoice = _invoice(app, BUDI, unpaid)
    assert invoice.billing_details is not None
    assert invoice.billing_details.tax_id == "013000666091000"
    [signal] = received
    assert signal["invoice"] == invoice and signal["customer"].id == BUDI
    [event] = [e for e in _events(app, BUDI) if e.action == "invoice.billing_details_added"]
    assert event.subject_id == unpaid

    shown = _text(client.get(f"/portal/invoices/{unpaid}").text)
    assert "Jakarta Selatan, DKI Jakarta 12190" in shown
    assert "NPWP 01.300.066.6-091.000" in shown
    assert f'href="{link}"' not in client.get(f"/portal/invoices/{unpaid}").text

    # Issued details are never edited: the page says so, a second POST is refused.
    again = client.get(link)
    assert again.status_code == 200
    # Budi reads Indonesian: "... and cannot be changed".
    assert "tidak dapat diubah" in again.text and f'action="{link}"' not in again.text
    refused = client.post(link, data={"csrf_token": csrf_token_from(again.text)})
    assert refused.status_code == 409
    assert _invoice(app, BUDI, unpaid) == invoice


def test_an_invoice_keeps_its_details_when_the_customer_changes_theirs(app: Flask) -> None:
    client = _signed_in(app, BUDI)
    before = _invoice(app, BUDI, BUDI_OPEN)
    assert before.billing_details is not None and before.billing_details.city == "Jakarta Selatan"
    response = _post_details(
        client,
        {
            "name": "Budi Santoso",
            "line1": "Jl. Malioboro 10",
            "line2": "",
            "city": "Yogyakarta",
            "region": "DI Yogyakarta",
            "postal_code": "55213",
            "country": "ID",
            "tax_id_scheme": "id_npwp",
            "tax_id": "01.300.066.6-091.000",
        },
    )
    assert response.status_code == 303
    assert _invoice(app, BUDI, BUDI_OPEN) == before
    page = client.get(f"/portal/invoices/{BUDI_OPEN}/billing-details")
    assert "Jakarta Selatan" in page.text and "Yogyakarta" not in page.text


def test_without_saved_details_the_invoice_page_asks_for_them_first(app: Flask) -> None:
    client = _signed_in(app, AVA)
    unpaid = _open_invoice_issued_without_details(app, AVA, "inv_ava_unpaid")
    link = f"/portal/invoices/{unpaid}/billing-details"
    page = client.get(link)
    assert page.status_code == 200
    assert f'href="/portal/profile/billing?invoice={unpaid}"' in page.text
    refused = client.post(link, data={"csrf_token": csrf_token_from(page.text)})
    assert refused.status_code == 409
    assert _invoice(app, AVA, unpaid).billing_details is None

    # Saving from there comes back to the invoice.
    response = _post_details(client, ACME_GMBH, url=f"/portal/profile/billing?invoice={unpaid}")
    assert response.status_code == 303
    assert response.location.endswith(link)
    assert "Acme Analytics GmbH" in client.get(link).text


def test_another_customers_invoice_is_not_found(app: Flask) -> None:
    client = _signed_in(app, AVA)
    link = f"/portal/invoices/{BUDI_FIRST}/billing-details"
    assert client.get(link).status_code == 404
    token = csrf_token_from(client.get("/portal/profile/billing").text)
    assert client.post(link, data={"csrf_token": token}).status_code == 404
    assert client.get("/portal/invoices/inv_nope/billing-details").status_code == 404
    assert client.get(f"/portal/invoices/{'x' * 500}/billing-details").status_code == 404
    assert _invoice(app, BUDI, BUDI_FIRST).billing_details is None


def test_adding_needs_the_csrf_token(app: Flask) -> None:
    client = _signed_in(app, BUDI)
    link = f"/portal/invoices/{BUDI_FIRST}/billing-details"
    assert client.post(link, data={}).status_code == 400
    assert client.post(link, data={"csrf_token": "forged"}).status_code == 400
    assert _invoice(app, BUDI, BUDI_FIRST).billing_details is None


def test_only_get_and_post(app: Flask) -> None:
    client = _signed_in(app, BUDI)
    assert client.put("/portal/profile/billing").status_code == 405
    assert client.delete(f"/portal/invoices/{BUDI_FIRST}/billing-details").status_code == 405


# -- PDF -----------------------------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_pdf_is_made_out_to_the_invoices_details(app: Flask) -> None:
    client = _signed_in(app, BUDI)
    response = client.get(f"/portal/invoices/{BUDI_OPEN}/pdf")
    assert response.status_code == 200
    text = _pdf_text(response.data)
    for expected in (
        "Budi Santoso",
        "Jl. Jenderal Sudirman No. 52-53",
        "Senayan, Kebayoran Baru",
        "Jakarta Selatan, DKI Jakarta 12190",
        "Indonesia",
        "NPWP 01.300.066.6-091.000",
        "budi@example.com",
    ):
        assert expected in text, expected

    # An invoice without details prints the customer's name and email, as before.
    first = _pdf_text(client.get(f"/portal/invoices/{BUDI_FIRST}/pdf").data)
    assert "Budi Santoso" in first and "NPWP" not in first and "Sudirman" not in first


def test_the_pdf_names_the_country_in_the_readers_language() -> None:
    invoice = _bare_invoice("inv_1", "cus_a", billing_details=GMBH)
    customer = Customer(id="cus_a", email="billing@acme.example", name="Ava")
    data = FPDFInvoiceRenderer().render(
        InvoiceDocument(
            invoice=invoice,
            customer=customer,
            merchant_name="Acme Software",
            locale="id",
            labels=default_labels(),
        )
    )
    text = _pdf_text(data)
    assert "Acme Analytics GmbH" in text
    assert "Friedrichstraße 123" in text
    assert "10117 Berlin" in text
    assert "Jerman" in text
    assert "VAT DE136695976" in text
    assert "billing@acme.example" in text


# -- queries ---------------------------------------------------------------------------------


def test_the_pages_cost_a_fixed_number_of_queries(app: Flask, count_queries: Callable[..., Any]) -> None:
    budi, ava = _signed_in(app, BUDI), _signed_in(app, AVA)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine

    def measure(client: FlaskClient, url: str) -> int:
        with count_queries(engine) as queries:
            response = client.get(url)
        assert response.status_code == 200, url
        return queries.count

    with_details = measure(budi, "/portal/profile/billing")
    without = measure(ava, "/portal/profile/billing")
    assert with_details == without <= 4
    on_invoice = measure(budi, f"/portal/invoices/{BUDI_OPEN}/billing-details")
    off_invoice = measure(budi, f"/portal/invoices/{BUDI_FIRST}/billing-details")
    assert on_invoice == off_invoice <= 6
