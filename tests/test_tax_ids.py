"""Tax IDs of many countries: checked with python-stdnum (or their shape),
shown on invoices, offered by the billing-details form in en and id, and
read from Stripe's invoices under Stripe's type names."""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone
from html import unescape

import pytest
from factories import vat_invoice
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import portal_store, sign_in
from pypdf import PdfReader

from flask_customer_portal.contrib.stripe._convert import (
    invoice_billing_details,
    stripe_tax_id_type,
    tax_id_scheme,
)
from flask_customer_portal.pdf import FPDFInvoiceRenderer, InvoiceDocument, default_labels
from flask_customer_portal.storage import BillingDetails, Customer, TaxIdScheme
from flask_customer_portal.tax_ids import (
    SCHEME_EXAMPLES,
    SCHEMES,
    InvalidTaxId,
    TaxIdProblem,
    bill_to_lines,
    format_tax_id,
    scheme_for_country,
    validate_tax_id,
)
from flask_customer_portal.testing import csrf_token_from

CHEN = "cus_demo_chen"
T0 = datetime(2026, 3, 14, 9, 0, tzinfo=timezone.utc)

#: The kinds whose numbers python-stdnum checks, check digits included.
_WITH_CHECKSUM = {
    scheme
    for scheme in TaxIdScheme
    if scheme
    not in {TaxIdScheme.SG_GST, TaxIdScheme.ZA_VAT, TaxIdScheme.AE_TRN, TaxIdScheme.SA_VAT, TaxIdScheme.HK_BR}
    and scheme not in {TaxIdScheme.IN_GST, TaxIdScheme.MX_RFC, TaxIdScheme.IS_VAT, TaxIdScheme.NO_VAT}
    # The last digits of these are not check digits (an NPWP ends with the branch code).
    and scheme not in {TaxIdScheme.ID_NPWP, TaxIdScheme.KR_BRN, TaxIdScheme.US_EIN}
}

# Numbers of the stdnum test suites and of the tax authorities' own examples.
_MORE_VALID = [
    (TaxIdScheme.CH_VAT, "CHE-113.553.869 TVA", "CHE-113.553.869 TVA"),
    (TaxIdScheme.NO_VAT, "NO 995 525 828 MVA", "NO 995 525 828 MVA"),
    (TaxIdScheme.US_EIN, "911144442", "91-1144442"),
    (TaxIdScheme.BR_CNPJ, "16727230000197", "16.727.230/0001-97"),
    (TaxIdScheme.KR_BRN, "1168200276", "116-82-00276"),
    (TaxIdScheme.IN_GST, "27aapfu0939f1zv", "27AAPFU0939F1ZV"),
    (TaxIdScheme.SG_GST, "M90312345A", "M90312345A"),
    (TaxIdScheme.AE_TRN, "100 1234 5670 0003", "100123456700003"),
]


def test_at_least_twenty_kinds_beyond_the_first_four_all_named_as_stripe_names_them() -> None:
    assert len(TaxIdScheme) - 4 >= 20
    assert set(SCHEMES) == set(TaxIdScheme)
    for scheme in TaxIdScheme:
        assert re.fullmatch(r"[a-z]{2}_[a-z]+", scheme.value)
        assert stripe_tax_id_type(scheme) == scheme.value
        assert tax_id_scheme(scheme.value) is scheme
    assert tax_id_scheme("xx_unknown") is None


@pytest.mark.parametrize("scheme", list(TaxIdScheme), ids=str)
def test_every_example_is_valid_and_shown_as_written(scheme: TaxIdScheme) -> None:
    example = SCHEMES[scheme].example
    compact = validate_tax_id(scheme, example)
    assert " " not in compact and "-" not in compact
    assert validate_tax_id(scheme, compact) == compact
    assert format_tax_id(scheme, compact) == example


@pytest.mark.parametrize(("scheme", "typed", "shown"), _MORE_VALID, ids=lambda v: str(v)[:20])
def test_numbers_typed_in_other_ways(scheme: TaxIdScheme, typed: str, shown: str) -> None:
    assert format_tax_id(scheme, validate_tax_id(scheme, typed)) == shown


@pytest.mark.parametrize("scheme", sorted(_WITH_CHECKSUM, key=str), ids=str)
def test_a_typing_mistake_is_caught_by_the_check_digit(scheme: TaxIdScheme) -> None:
    compact = validate_tax_id(scheme, SCHEMES[scheme].example)
    # Change the last digit: every one of these kinds has its check digit there.
    index = max(i for i, c in enumerate(compact) if c.isdigit())
    wrong = compact[:index] + str((int(compact[index]) + 1) % 10) + compact[index + 1 :]
    with pytest.raises(InvalidTaxId) as caught:
        validate_tax_id(scheme, wrong)
    assert caught.value.problem in (TaxIdProblem.CHECKSUM, TaxIdProblem.FORMAT)
    assert caught.value.scheme is scheme


@pytest.mark.parametrize(
    ("scheme", "typed"),
    [
        (TaxIdScheme.ZA_VAT, "5123456789"),  # South African VAT numbers start with 4
        (TaxIdScheme.ZA_VAT, "412345678"),
        (TaxIdScheme.AE_TRN, "200123456700003"),
        (TaxIdScheme.SA_VAT, "310123456700004"),  # starts and ends with 3
        (TaxIdScheme.SG_GST, "X21234567K"),
        (TaxIdScheme.HK_BR, "1234567"),
        (TaxIdScheme.US_EIN, "12-345"),
        (TaxIdScheme.JP_CN, "abc"),
        (TaxIdScheme.CH_VAT, "CHE-113.553.869"),  # without MWST/TVA/IVA
        (TaxIdScheme.US_EIN, "9" * 65),
    ],
)
def test_numbers_of_the_wrong_shape(scheme: TaxIdScheme, typed: str) -> None:
    with pytest.raises(InvalidTaxId) as caught:
        validate_tax_id(scheme, typed)
    assert caught.value.problem is TaxIdProblem.FORMAT


def test_the_usual_kind_of_more_countries() -> None:
    expected = {
        "CH": TaxIdScheme.CH_VAT,
        "NO": TaxIdScheme.NO_VAT,
        "NZ": TaxIdScheme.NZ_GST,
        "IN": TaxIdScheme.IN_GST,
        "SG": TaxIdScheme.SG_UEN,
        "CA": TaxIdScheme.CA_BN,
        "US": TaxIdScheme.US_EIN,
        "BR": TaxIdScheme.BR_CNPJ,
        "MX": TaxIdScheme.MX_RFC,
        "JP": TaxIdScheme.JP_CN,
        "KR": TaxIdScheme.KR_BRN,
        "ZA": TaxIdScheme.ZA_VAT,
        "AE": TaxIdScheme.AE_TRN,
        "SA": TaxIdScheme.SA_VAT,
        "TR": TaxIdScheme.TR_TIN,
        "DE": TaxIdScheme.EU_VAT,
        "GB": TaxIdScheme.GB_VAT,
        "ID": TaxIdScheme.ID_NPWP,
    }
    assert {country: scheme_for_country(country.lower()) for country in expected} == expected
    assert scheme_for_country("VN") is None


def _details(scheme: TaxIdScheme, country: str) -> BillingDetails:
    return BillingDetails(
        name="Northwind Traders Inc.",
        line1="1 Market Street",
        city="San Francisco",
        region="CA",
        postal_code="94105",
        country=country,
        tax_id=validate_tax_id(scheme, SCHEMES[scheme].example),
        tax_id_scheme=scheme,
    )


def test_the_tax_id_is_on_the_invoice_pdf() -> None:
    details = _details(TaxIdScheme.US_EIN, "US")
    assert bill_to_lines(details)[-1] == "EIN 91-1144442"
    invoice = vat_invoice("inv_1", "cus_a", issued_at=T0, billing_details=details)
    data = FPDFInvoiceRenderer().render(
        InvoiceDocument(
            invoice=invoice,
            customer=Customer(id="cus_a", email="ap@northwind.example", name="Nora"),
            merchant_name="Acme Software",
            locale="en",
            labels=default_labels(),
        )
    )
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    assert "EIN 91-1144442" in text


def _signed_in(app: Flask, customer_id: str) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, customer_id)
    return client


def _options(html: str) -> dict[str, str]:
    select = re.search(r'<select[^>]*\bname="tax_id_scheme".*?</select>', html, re.S)
    assert select
    return {
        value: unescape(label).strip()
        for value, label in re.findall(r'<option[^>]*value="([^"]*)"[^>]*>(.*?)</option>', select.group(0))
    }


def _tax_id_hint(html: str) -> str:
    hint = re.search(r'<p class="field-hint" id="tax_id-hint">([^<]*)</p>', html)
    assert hint, "no hint for the tax ID field"
    return unescape(hint.group(1))


def test_the_form_offers_every_kind_by_country_and_name_in_english_and_indonesian(app: Flask) -> None:
    client = _signed_in(app, CHEN)
    english = _options(client.get("/portal/profile/billing", headers={"Accept-Language": "en"}).text)
    assert set(english) == {"", *(scheme.value for scheme in TaxIdScheme)}
    assert english["us_ein"] == "United States · EIN"
    assert english["ch_vat"] == "Switzerland · VAT"
    assert english["eu_vat"] == "European Union · VAT"
    labels = [label for value, label in english.items() if value]
    assert labels == sorted(labels, key=str.casefold)
    assert len(set(labels)) == len(labels)

    client.post(
        "/portal/language",
        data={"language": "id", "csrf_token": csrf_token_from(client.get("/portal/profile").text)},
    )
    page = client.get("/portal/profile/billing")
    indonesian = _options(page.text)
    assert indonesian["us_ein"] != english["us_ein"]
    assert indonesian["id_npwp"] == "Indonesia · NPWP"
    assert indonesian["us_ein"] == "Amerika Serikat · EIN"


@pytest.mark.parametrize("language", ["en", "id", "es", "ar"])
def test_the_closed_list_fits_a_phone_and_the_example_is_the_fields_hint(app: Flask, language: str) -> None:
    """A closed select shows only the chosen label, cut at its width on a
    phone: the examples (the part that matters) are in the tax ID field's
    hint, for the kind chosen, not at the end of long option labels."""
    client = _signed_in(app, CHEN)
    headers = {"Accept-Language": language}
    page = client.get("/portal/profile/billing", headers=headers).text
    options = _options(page)
    for scheme in TaxIdScheme:
        assert SCHEME_EXAMPLES[scheme] not in options[scheme.value], options[scheme.value]
    # At 375 px the select's text box is about 265 px: some 30 characters of
    # 16 px Latin text, more of Arabic's narrower letters (measured in Chromium).
    longest = max(options.values(), key=len)
    assert len(longest) <= (36 if language == "ar" else 30), longest

    data = {"csrf_token": csrf_token_from(page), "name": "Northwind", "line1": "1 Market Street"}
    data |= {"city": "San Francisco", "country": "US", "tax_id_scheme": "ch_vat", "tax_id": "nope"}
    refused = client.post("/portal/profile/billing", data=data, headers=headers)
    assert refused.status_code == 422
    assert "CHE-107.787.577 MWST" in _tax_id_hint(refused.text)
    # "The usual one of the country": the country's own kind's example.
    data |= {"tax_id_scheme": ""}
    refused = client.post("/portal/profile/billing", data=data, headers=headers)
    assert "91-1144442" in _tax_id_hint(refused.text)


def test_saving_a_us_ein_and_seeing_it_on_the_next_invoice(app: Flask) -> None:
    client = _signed_in(app, CHEN)
    page = client.get("/portal/profile/billing", headers={"Accept-Language": "en"})
    response = client.post(
        "/portal/profile/billing",
        data={
            "name": "Northwind Traders Inc.",
            "line1": "1 Market Street",
            "line2": "",
            "city": "San Francisco",
            "region": "CA",
            "postal_code": "94105",
            "country": "US",
            "tax_id_scheme": "",  # the usual one of the United States
            "tax_id": "91 1144442",
            "csrf_token": csrf_token_from(page.text),
        },
    )
    assert response.status_code == 303
    with app.app_context():
        saved = portal_store(app).get_billing_details(CHEN)
    assert saved is not None and (saved.tax_id, saved.tax_id_scheme) == ("911144442", TaxIdScheme.US_EIN)
    shown = client.get("/portal/profile/billing", headers={"Accept-Language": "en"}).text
    assert 'value="91-1144442"' in shown

    wrong = client.post(
        "/portal/profile/billing",
        data={
            "name": "Northwind Traders Inc.",
            "line1": "1 Market Street",
            "city": "San Francisco",
            "country": "BR",
            "tax_id_scheme": "br_cpf",
            "tax_id": "390.533.447-06",
            "csrf_token": csrf_token_from(shown),
        },
        headers={"Accept-Language": "en"},
    )
    assert wrong.status_code == 422
    assert "This Brazilian CPF is not valid. Check it for typing mistakes." in unescape(wrong.text)


def test_a_stripe_invoice_is_made_out_to_the_details_stripe_copied_onto_it() -> None:
    data = {
        "customer_name": "Northwind Traders Inc.",
        "customer_address": {
            "line1": "1 Market Street",
            "line2": None,
            "city": "San Francisco",
            "state": "CA",
            "postal_code": "94105",
            "country": "us",
        },
        "customer_tax_ids": [
            {"type": "unknown_kind", "value": "123"},
            {"type": "us_ein", "value": "91-1144442"},
        ],
    }
    details = invoice_billing_details(data)
    assert details is not None
    assert (details.country, details.region, details.tax_id_scheme) == ("US", "CA", TaxIdScheme.US_EIN)
    assert bill_to_lines(details)[-1] == "EIN 91-1144442"
    assert invoice_billing_details(
        {**data, "customer_tax_ids": [{"type": "xx", "value": "1"}]}
    ) == BillingDetails(
        name="Northwind Traders Inc.",
        line1="1 Market Street",
        city="San Francisco",
        region="CA",
        postal_code="94105",
        country="US",
    )
    assert invoice_billing_details({"customer_name": "Nora", "customer_address": None}) is None
