"""The forms added since :mod:`test_forms_property`, against any input:
billing details, the cancellation flow (reason, retention offer, pause,
resume), plan changes, the language picker, sessions, licence key
activations and the one-time link buttons.

Each form is posted with every field any text (NUL bytes, 10,000
characters, unicode of every kind, markup), with fields left out or sent
twice, and with a wrong or missing CSRF token. The properties: never a
5xx; input the view refuses is a 4xx (a re-shown form names the field);
a refused request writes nothing at all (every row of every portal table
is compared); and when a request does write, it wrote exactly what was
asked and touched no other table.

Forms whose success changes what the next example can do (pausing,
signing a session out) start every example from the same database file
and cookies (:class:`Baseline`, through the ``fresh`` fixture), so that
every example can succeed; the others build on each other, as in
:mod:`test_forms_property`.

:func:`test_every_post_endpoint_has_a_property_test` reads the URL map:
a POST endpoint without a property test fails it.
"""

from __future__ import annotations

import shutil
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import factories
import pytest
import test_forms_property
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import event, example, given
from hypothesis import strategies as st
from portal_fixtures import sign_in
from security_support import AVA, BUDI, NEW_EMAIL, db_dump, issue, records
from test_forms_property import ANY_TEXT, PROPERTY, _assert_answer, forms
from werkzeug.datastructures import MultiDict

from flask_customer_portal.auth import session_limits
from flask_customer_portal.billing.periods import add_months, invoice_takes_billing_details
from flask_customer_portal.offers import (
    CancellationReason,
    DiscountOffer,
    PauseOffer,
    RetentionOffer,
    clean_reason_text,
)
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    BillingDetails,
    Customer,
    Invoice,
    InvoiceStatus,
    LinkPurpose,
    PaymentMethod,
    Subscription,
    SubscriptionStatus,
    TaxIdScheme,
)
from flask_customer_portal.tax_ids import validate_tax_id
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from

#: Hypothesis drives each form with hundreds of inputs: left out of `make check`.
pytestmark = pytest.mark.slow

AVA_SUB = "sub_demo_ava_sync"
BUDI_SUB = "sub_demo_budi_sync"
AVA_KEY = "lk_demo_ava_sync"
AVA_OTHER_KEY = "lk_demo_ava_desktop"
BUDI_KEY = "lk_demo_budi_sync"

Dump = dict[str, list[tuple[Any, ...]]]

#: Where ``csrf_token`` is this value, the page's real token is sent.
REAL = "\uffffthe page's token\uffff"

#: The page's real token, most of the time; any text otherwise.
CSRF = st.tuples(st.integers(0, 9), ANY_TEXT).map(lambda drawn: drawn[1] if drawn[0] == 5 else REAL)

#: Numbers as text that ``int()`` refuses (more than 4,300 digits) or that
#: overflow any column, next to the plausible ones.
BIG_NUMBERS = st.sampled_from(["9" * 5000, "1" + "0" * 4400, "99999999999999999999", "-1", "0", "+2", " 2 "])


def form_data(
    valid: dict[str, st.SearchStrategy[str]], *, csrf: st.SearchStrategy[str] = CSRF
) -> st.SearchStrategy[MultiDict[str, str]]:
    """A form's data as anyone may send it: the fields of
    :func:`test_forms_property.forms` and the CSRF token, now and then one
    left out or sent twice (the other value any text, first or second)."""

    @st.composite
    def build(draw: st.DrawFn) -> MultiDict[str, str]:
        fields = {**draw(forms(valid)), "csrf_token": draw(csrf)} if valid else {"csrf_token": draw(csrf)}
        pairs: list[tuple[str, str]] = []
        for name, value in fields.items():
            how = draw(st.integers(0, 9))  # the middle values are the odd ones
            if how == 4:
                event("a field left out")
                continue
            if how == 5:
                pairs += [(name, value), (name, draw(ANY_TEXT))]
            elif how == 6:
                pairs += [(name, draw(ANY_TEXT)), (name, value)]
            else:
                pairs.append((name, value))
        if draw(st.integers(0, 9)) == 5:
            pairs.append((draw(st.sampled_from(["extra", "id", "customer_id", "percent"])), draw(ANY_TEXT)))
        return MultiDict(pairs)

    return build()


def post(client: FlaskClient, url: str, data: MultiDict[str, str], token: str) -> Any:
    """POST ``data`` with :data:`REAL` replaced by ``token``."""
    sent = MultiDict([(name, token if value == REAL else value) for name, value in data.items(multi=True)])
    return client.post(url, data=sent)


def first(data: MultiDict[str, str], name: str) -> str | None:
    """What a form reads for ``name``: the first value sent."""
    return data.get(name)


def intact(data: MultiDict[str, str], valid: dict[str, Iterable[str]]) -> bool:
    """Whether every field was sent once, with one of its ``valid`` values,
    and with the page's CSRF token."""
    expected = {**{name: set(values) for name, values in valid.items()}, "csrf_token": {REAL}}
    return set(data) == set(expected) and all(
        len(data.getlist(name)) == 1 and data[name] in values for name, values in expected.items()
    )


#: A change the customer is told about by email writes that email with it.
WITH_EMAIL = frozenset({"portal_mail_outbox"})


def changed_tables(before: Dump, after: Dump) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def assert_refused(response: Any, before: Dump, app: Flask, *, fields: Iterable[str] = ()) -> None:
    """A 4xx that wrote nothing; a 422 re-shows the form with a message
    next to one of ``fields``."""
    assert 400 <= response.status_code < 500, response.status_code
    get_state(app).wait_for_background_tasks()
    assert db_dump(app) == before
    if response.status_code == 422 and fields:
        page = response.get_data(as_text=True)
        named = [f'id="{name}-error"' in page for name in fields]
        assert any(named), f"422 without a message next to one of {sorted(fields)}"


def events(app: Flask, customer_id: str = AVA) -> list[Any]:
    with app.app_context():
        return list(get_state(app).storage.list_events(customer_id))  # type: ignore[attr-defined]


def subscription(app: Flask, subscription_id: str = AVA_SUB, customer_id: str = AVA) -> Subscription:
    with app.app_context():
        found = get_state(app).storage.get_subscription(customer_id, subscription_id)
    assert found is not None
    return found


class Baseline:
    """The app's database file and some browsers' cookies as they are now;
    :meth:`restore` puts both back, so that every example starts from the
    same records (a subscription to pause, a session to sign out)."""

    def __init__(self, app: Flask, *clients: FlaskClient) -> None:
        self.app = app
        with app.app_context():
            self.engine = app.extensions["sqlalchemy"].engine
        database = self.engine.url.database
        assert database
        self.path = Path(database)
        self.copy = self.path.with_name(self.path.name + ".baseline")
        self._quiet()
        shutil.copyfile(self.path, self.copy)
        self.cookies = []
        for client in clients:
            cookie = client.get_cookie("session")
            assert cookie is not None
            self.cookies.append((client, cookie.value))

    def _quiet(self) -> None:
        get_state(self.app).wait_for_background_tasks()
        self.engine.dispose()

    def restore(self) -> None:
        self._quiet()
        shutil.copyfile(self.copy, self.path)
        for client, value in self.cookies:
            client.set_cookie("session", value)


class FreshStart:
    """Calling it starts an example from the test's :class:`Baseline`,
    taken at the first call after ``prepare`` (which returns the browsers
    to keep signed in and anything the test wants to remember)."""

    def __init__(self, app: Flask, ava: FlaskClient) -> None:
        self.app, self.ava = app, ava
        self.baseline: Baseline | None = None
        self.kept: dict[str, str] = {}

    def __call__(
        self, prepare: Callable[[], tuple[list[FlaskClient], dict[str, str]]] | None = None
    ) -> dict[str, str]:
        if self.baseline is None:
            clients, self.kept = prepare() if prepare is not None else ([], {})
            self.baseline = Baseline(self.app, self.ava, *clients)
        self.baseline.restore()
        return self.kept


@pytest.fixture
def fresh(shop: Flask, ava: FlaskClient) -> FreshStart:
    return FreshStart(shop, ava)


# --- the shop of these tests -------------------------------------------------------------------


def _offer(
    customer: Customer, subscription: Subscription, reason: CancellationReason
) -> RetentionOffer | None:
    """The merchant's retention offers: a discount for "too expensive", a
    pause for "a break", nothing otherwise."""
    if reason.code == "too_expensive":
        return DiscountOffer(percent=25, renewals=2)
    if reason.code == "temporary":
        return PauseOffer(months=2)
    return None


@pytest.fixture
def shop(make_app: Callable[..., Flask], mailer: MemoryMailer, payments: TestPaymentProvider) -> Flask:
    """The demo shop, where customers may pause and are offered to stay."""
    app = make_app(
        mailer=mailer, payments=payments, CUSTOMER_PORTAL_ALLOW_PAUSE=True, CUSTOMER_PORTAL_MAX_PAUSE_MONTHS=3
    )
    get_state(app).hooks.retention_offer = _offer
    return app


def _token(client: FlaskClient, path: str = "/portal/") -> str:
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code)
    return csrf_token_from(page.text)


# --- billing details ---------------------------------------------------------------------------

#: Countries with a tax ID of their kind that passes its checks.
_TAX_IDS = {
    "DE": ("DE136695976", TaxIdScheme.EU_VAT.value),
    "ID": ("01.300.066.6-091.000", TaxIdScheme.ID_NPWP.value),
    "GB": ("GB 980 7806 84", TaxIdScheme.GB_VAT.value),
    "AU": ("51 824 753 556", TaxIdScheme.AU_ABN.value),
}

_BILLING_VALID: dict[str, list[str]] = {
    "name": ["Ava Thompson", "PT Maju Jaya Tbk.", "Zoë Ünlü GmbH", "  Acme\u0301 Ltd  "],
    "line1": ["1 Main Street", "Jl. Sudirman No. 5"],
    "line2": ["", "Suite 400"],
    "city": ["Springfield", "Jakarta Selatan"],
    "region": ["", "DKI Jakarta"],
    "postal_code": ["", "12190", "SW1A 1AA"],
    "country": ["US", *_TAX_IDS],
    "tax_id_scheme": ["", *(scheme for _, scheme in _TAX_IDS.values())],
    "tax_id": ["", *(tax_id for tax_id, _ in _TAX_IDS.values())],
}

_BILLING_FIELDS = tuple(_BILLING_VALID)


def _billing_form(country: str, scheme: str, tax_id: str) -> MultiDict[str, str]:
    """Plausible details for ``country``, with this tax ID."""
    fields = {name: values[-1] for name, values in _BILLING_VALID.items()}
    return MultiDict(
        {**fields, "country": country, "tax_id_scheme": scheme, "tax_id": tax_id, "csrf_token": REAL}
    )


def _text(value: str | None) -> str | None:
    return unicodedata.normalize("NFC", value or "").strip() or None


def _asked(data: MultiDict[str, str]) -> BillingDetails:
    """The details the form asked for, read independently of the form."""
    country = first(data, "country") or ""
    tax_id = _text(first(data, "tax_id"))
    scheme_value = first(data, "tax_id_scheme") or _TAX_IDS.get(country, ("", ""))[1]
    scheme = TaxIdScheme(scheme_value) if tax_id and scheme_value else None
    return BillingDetails(
        name=_text(first(data, "name")) or "",
        line1=_text(first(data, "line1")) or "",
        line2=_text(first(data, "line2")),
        city=_text(first(data, "city")),
        region=_text(first(data, "region")),
        postal_code=_text(first(data, "postal_code")),
        country=country,
        tax_id=None if scheme is None or tax_id is None else validate_tax_id(scheme, tax_id, country=country),
        tax_id_scheme=scheme,
    )


class _FormReader(HTMLParser):
    """The values a browser would send for each POST form of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[list[tuple[str, str]]] = []
        self._values: list[tuple[str, str]] | None = None
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._values = [] if found.get("method", "").lower() == "post" else None
            if self._values is not None:
                self.forms.append(self._values)
            return
        if self._values is None:
            return
        name = found.get("name")
        kind = found.get("type", "text")
        if tag == "input" and name and kind not in ("submit", "button"):
            if kind not in ("radio", "checkbox") or "checked" in found:
                self._values.append((name, found.get("value", "")))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select is not None and "selected" in found:
            self._values.append((self._select, found.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea = name
            self._values.append((name, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self._values = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None and self._values:
            name, text = self._values.pop()
            self._values.append((name, text + data))


def _form_on(page: str, field: str) -> MultiDict[str, str]:
    """What the page's first POST form with ``field`` sends."""
    reader = _FormReader()
    reader.feed(page)
    return MultiDict(next(values for values in reader.forms if any(name == field for name, _ in values)))


@PROPERTY
@given(
    data=form_data({name: st.sampled_from(values) for name, values in _BILLING_VALID.items()}),
    use_known=st.booleans(),
)
@example(data=_billing_form("US", "", ""), use_known=False)
@example(data=_billing_form("DE", "", "DE136695976"), use_known=False)
@example(data=_billing_form("ID", TaxIdScheme.ID_NPWP.value, "01.300.066.6-091.000"), use_known=False)
@example(data=_billing_form("US", "", "x" * 41), use_known=False)
def test_billing_details(shop: Flask, ava: FlaskClient, data: MultiDict[str, str], use_known: bool) -> None:
    if use_known:  # a matching country and tax ID, as most customers send
        country = first(data, "country")
        if country in _TAX_IDS and data.getlist("tax_id") and data.getlist("tax_id_scheme"):
            data.setlist("tax_id", [_TAX_IDS[country][0]])
            data.setlist("tax_id_scheme", [_TAX_IDS[country][1]])
    token = _token(ava, "/portal/profile/billing")
    before, budi = db_dump(shop), records(shop, BUDI)
    response = post(ava, "/portal/profile/billing", data, token)
    status = _assert_answer(response)
    country, tax_id = first(data, "country") or "", first(data, "tax_id")
    valid_tax = not tax_id or (
        country in _TAX_IDS
        and tax_id == _TAX_IDS[country][0]
        and first(data, "tax_id_scheme") in ("", _TAX_IDS[country][1])
    )
    if intact(data, _BILLING_VALID) and valid_tax:
        assert status == 303, response.text
    if status != 303:
        assert status in (400, 422), status
        assert_refused(response, before, shop, fields=_BILLING_FIELDS)
        return
    assert response.headers["Location"] == "/portal/profile/billing"
    with shop.app_context():
        saved = get_state(shop).storage.get_billing_details(AVA)
    assert saved is not None
    asked = _asked(data)
    for name in _BILLING_FIELDS:
        assert getattr(saved, name) == getattr(asked, name), name
    assert changed_tables(before, db_dump(shop)) <= {"portal_billing_details", "portal_audit_events"}
    assert records(shop, BUDI) == budi
    # The page shows the saved details back; sent again unchanged, they save nothing.
    shown = ava.get("/portal/profile/billing")
    again = _form_on(shown.text, "line1")
    assert {name: again.get(name) for name in ("name", "line1", "country")} == {
        "name": saved.name,
        "line1": saved.line1,
        "country": saved.country,
    }
    before_again = db_dump(shop)
    resent = ava.post("/portal/profile/billing", data=again)
    assert resent.status_code == 303, resent.text
    assert db_dump(shop) == before_again


#: An open invoice of Ava's issued without billing details (the demo's are paid).
_UNPAID_INVOICE = "inv_ava_unpaid"


@pytest.mark.parametrize("has_details", [True, False], ids=["saved-details", "no-details"])
@PROPERTY
@given(
    data=form_data({}),
    invoice_id=st.sampled_from(
        ["inv_demo_ava_sync_01", "inv_demo_ava_sync_02", "inv_demo_ava_desktop", _UNPAID_INVOICE]
    ),
)
def test_invoice_billing_details(
    shop: Flask,
    ava: FlaskClient,
    fresh: FreshStart,
    has_details: bool,
    data: MultiDict[str, str],
    invoice_id: str,
) -> None:
    def save_details() -> tuple[list[FlaskClient], dict[str, str]]:
        with shop.app_context():  # open, and issued before any details were saved
            store = get_state(shop).storage
            store.add_invoice(
                Invoice(
                    id=_UNPAID_INVOICE,
                    number=store.next_invoice_number(),
                    customer_id=AVA,
                    status=InvoiceStatus.OPEN,
                    currency="USD",
                    subtotal=900,
                    tax=0,
                    total=900,
                    issued_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                    description="Acme Sync",
                )
            )
        if has_details:
            token = _token(ava, "/portal/profile/billing")
            details = {"name": "Ava", "line1": "1 Main St", "city": "Springfield", "country": "US"}
            response = ava.post("/portal/profile/billing", data={**details, "csrf_token": token})
            assert response.status_code == 303
        return [], {}

    fresh(save_details)
    url = f"/portal/invoices/{invoice_id}/billing-details"
    page = ava.get(url)
    if page.status_code == 404:  # no such demo invoice in this shop
        event("invoice not found")
        return
    token = csrf_token_from(page.text)
    before = db_dump(shop)
    with shop.app_context():
        store = get_state(shop).storage
        current = store.get_billing_details(AVA)
        invoice = store.get_invoice(AVA, invoice_id)
    assert invoice is not None
    response = post(ava, url, data, token)
    status = _assert_answer(response)
    if status != 303:
        assert_refused(response, before, shop)
        assert intact(data, {}) is False or current is None or not invoice_takes_billing_details(invoice)
        return
    # Only an open invoice without details takes them (a paid one is final).
    assert current is not None and invoice_takes_billing_details(invoice)
    with shop.app_context():
        updated = get_state(shop).storage.get_invoice(AVA, invoice_id)
    assert updated is not None and updated.billing_details is not None
    for name in _BILLING_FIELDS:
        assert getattr(updated.billing_details, name) == getattr(current, name)
    assert changed_tables(before, db_dump(shop)) <= {"portal_invoices", "portal_audit_events"}


# --- the cancellation flow ---------------------------------------------------------------------

_REASONS = [
    "too_expensive",
    "not_using",
    "missing_features",
    "switching",
    "technical_issues",
    "temporary",
    "other",
]
_REASON_VALID = {
    "reason": _REASONS,
    "reason_text": ["", "I found something cheaper.", "Zu teuer.\nDanke!", "🙂 later"],
}
_REASON_FORM = form_data({name: st.sampled_from(values) for name, values in _REASON_VALID.items()})


def _hidden(page: str, name: str) -> str | None:
    return _form_on(page, "reason").get(name)


@PROPERTY
@given(data=_REASON_FORM)
def test_cancel_reason(shop: Flask, ava: FlaskClient, data: MultiDict[str, str]) -> None:
    url = f"/portal/subscriptions/{AVA_SUB}/cancel/reason"
    token = _token(ava, url)
    before = db_dump(shop)
    response = post(ava, url, data, token)
    status = _assert_answer(response)
    # Giving a reason only shows the confirmation: it never writes.
    assert db_dump(shop) == before
    if intact(data, _REASON_VALID):
        assert status == 200
    if status != 200:
        assert status in (400, 422), status
        assert_refused(response, before, shop, fields=("reason", "reason_text"))
        return
    # The confirmation carries the reason as it was given.
    assert _hidden(response.text, "reason") == first(data, "reason")
    text = clean_reason_text(first(data, "reason_text"))
    assert (_hidden(response.text, "reason_text") or None) == (text or None)


def _reason_form(reason: str, text: str = "") -> MultiDict[str, str]:
    return MultiDict({"reason": reason, "reason_text": text, "csrf_token": REAL})


@PROPERTY
@given(data=_REASON_FORM)
@example(data=_reason_form("too_expensive", "Zu teuer.\nDanke!"))
@example(data=_reason_form("temporary"))
@example(data=_reason_form("other"))
def test_accept_retention_offer(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str]
) -> None:
    fresh()
    url = f"/portal/subscriptions/{AVA_SUB}/cancel/offer"
    token = _token(ava, f"/portal/subscriptions/{AVA_SUB}/cancel/reason")
    before, was, had = db_dump(shop), subscription(shop), events(shop)
    response = post(ava, url, data, token)
    status = _assert_answer(response)
    reason = first(data, "reason")
    offered = reason in ("too_expensive", "temporary")
    if intact(data, _REASON_VALID):
        assert status == (303 if offered else 409), status
    if status != 303:
        assert_refused(response, before, shop, fields=("reason", "reason_text"))
        return
    now = subscription(shop)
    assert offered
    assert now.status is not SubscriptionStatus.CANCELLED and not now.cancel_at_period_end
    if reason == "too_expensive":
        assert (now.discount_percent, now.discount_renewals) == (25, 2)
        assert now.status is was.status
    else:
        assert now.status is SubscriptionStatus.PAUSED
        assert now.paused_at is not None and now.resumes_at == add_months(now.paused_at, 2)
    [accepted] = _new(events(shop), had)
    assert accepted.action == (
        "retention_offer.accepted" if reason == "too_expensive" else "subscription.paused"
    )
    assert accepted.details["reason"] == reason
    assert changed_tables(before, db_dump(shop)) <= WITH_EMAIL | {
        "portal_subscriptions",
        "portal_audit_events",
    }


def _new(after: list[Any], before: list[Any]) -> list[Any]:
    """The audit events written since ``before``."""
    return [e for e in after if e not in before]


@PROPERTY
@given(
    data=form_data(
        {
            "confirm": st.just("yes"),
            "reason": st.one_of(st.just(""), st.sampled_from(_REASONS)),
            "reason_text": st.sampled_from(_REASON_VALID["reason_text"]),
        }
    )
)
def test_cancel_with_a_reason(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str]
) -> None:
    fresh()
    url = f"/portal/subscriptions/{AVA_SUB}/cancel"
    token = _token(ava, f"/portal/subscriptions/{AVA_SUB}")
    before, had = db_dump(shop), events(shop)
    response = post(ava, url, data, token)
    status = _assert_answer(response)
    reason, text = first(data, "reason") or None, clean_reason_text(first(data, "reason_text")) or None
    if status != 303:
        if status < 400:  # the page that says what will happen
            assert status == 200 and first(data, "confirm") != "yes"
            assert db_dump(shop) == before
        else:
            assert_refused(response, before, shop, fields=("reason", "reason_text"))
        return
    assert first(data, "confirm") == "yes"
    [cancelled] = _new(events(shop), had)
    assert cancelled.action == "subscription.cancelled"
    assert cancelled.details.get("reason") == reason
    assert cancelled.details.get("reason_text") == (text if reason else None)
    assert changed_tables(before, db_dump(shop)) <= WITH_EMAIL | {
        "portal_subscriptions",
        "portal_audit_events",
    }


@PROPERTY
@given(
    data=form_data({"months": st.one_of(st.sampled_from(["1", "2", "3"]), BIG_NUMBERS)}),
)
@example(data=MultiDict({"months": "3", "csrf_token": REAL}))
@example(data=MultiDict({"months": "9" * 5000, "csrf_token": REAL}))
def test_pause(shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str]) -> None:
    fresh()
    token = _token(ava, f"/portal/subscriptions/{AVA_SUB}")
    before = db_dump(shop)
    response = post(ava, f"/portal/subscriptions/{AVA_SUB}/pause", data, token)
    status = _assert_answer(response)
    if intact(data, {"months": ["1", "2", "3"]}):
        assert status == 303
    if status != 303:
        assert_refused(response, before, shop, fields=("pause-months",))
        return
    months = first(data, "months")
    assert months is not None
    paused = subscription(shop)
    assert paused.status is SubscriptionStatus.PAUSED and paused.paused_at is not None
    assert paused.resumes_at == add_months(paused.paused_at, int(months.strip()))
    assert changed_tables(before, db_dump(shop)) <= WITH_EMAIL | {
        "portal_subscriptions",
        "portal_audit_events",
    }


def test_invalid_utf8_in_the_pause_form(shop: Flask, ava: FlaskClient) -> None:
    """As test_forms_property.test_invalid_utf8_in_every_field, in a shop that pauses."""
    token = _token(ava, f"/portal/subscriptions/{AVA_SUB}")
    before = db_dump(shop)
    for bad in ("%FF%FE", "%C0%AF", "%ED%A0%80", "%00%FF", "%EF%BC%92"):  # the last: a fullwidth 2
        response = ava.post(
            f"/portal/subscriptions/{AVA_SUB}/pause",
            data=f"csrf_token={token}&months={bad}",
            content_type="application/x-www-form-urlencoded",
        )
        assert _assert_answer(response, record=False) == 422, bad
        assert_refused(response, before, shop, fields=("pause-months",))


@pytest.mark.parametrize("paused", [True, False], ids=["paused", "active"])
@PROPERTY
@given(data=form_data({}))
def test_unpause(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, paused: bool, data: MultiDict[str, str]
) -> None:
    def pause() -> tuple[list[FlaskClient], dict[str, str]]:
        if paused:
            token = _token(ava, f"/portal/subscriptions/{AVA_SUB}")
            months = {"csrf_token": token, "months": "2"}
            assert ava.post(f"/portal/subscriptions/{AVA_SUB}/pause", data=months).status_code == 303
        return [], {}

    fresh(pause)
    token = _token(ava, f"/portal/subscriptions/{AVA_SUB}")
    before = db_dump(shop)
    response = post(ava, f"/portal/subscriptions/{AVA_SUB}/unpause", data, token)
    status = _assert_answer(response)
    if intact(data, {}):
        assert status == (303 if paused else 409)
    if status != 303:
        assert_refused(response, before, shop)
        return
    assert paused
    resumed = subscription(shop)
    assert resumed.status is SubscriptionStatus.ACTIVE and resumed.resumes_at is None
    assert changed_tables(before, db_dump(shop)) <= WITH_EMAIL | {
        "portal_subscriptions",
        "portal_audit_events",
    }


# --- plan changes --------------------------------------------------------------------------------

PRO = "plan_sync_pro_monthly"
BASIC = "plan_sync_basic_monthly"
BUSINESS = "plan_sync_business_monthly"
TEAM = "plan_sync_team_monthly"
PLANS = [BASIC, PRO, BUSINESS, "plan_sync_pro_yearly", TEAM]
PLAN_URL = f"/portal/subscriptions/{AVA_SUB}/plan"

_PLAN_FORM = form_data(
    {
        "step": st.sampled_from(["preview", "confirm"]),
        "plan": st.one_of(st.sampled_from(PLANS), st.just("plan_sync_pro_idr_monthly")),
        "quantity": st.one_of(st.sampled_from(["", "1", "2", "5", "50", "51"]), BIG_NUMBERS),
        # REAL: the quote of a preview of the same plan and quantity.
        "quote": st.one_of(st.just(REAL), ANY_TEXT),
    }
)


def _plan_form(step: str, plan: str, quantity: str = "", quote: str = REAL) -> MultiDict[str, str]:
    return MultiDict({"step": step, "plan": plan, "quantity": quantity, "quote": quote, "csrf_token": REAL})


#: Changes that go through: (plan, quantity as typed).
_GOOD_CHANGES = {(BASIC, ""), (BASIC, "3"), (BUSINESS, ""), (TEAM, "5"), (TEAM, " 50 ")}


@PROPERTY
@given(data=_PLAN_FORM)
@example(data=_plan_form("confirm", BASIC))  # a downgrade: set for the period's end
@example(data=_plan_form("confirm", BUSINESS))  # an upgrade: now, for the quote
@example(data=_plan_form("confirm", TEAM, "5"))
@example(data=_plan_form("confirm", BUSINESS, quote="not a quote"))
@example(data=_plan_form("confirm", TEAM, "9" * 5000))
def test_change_plan(shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str]) -> None:
    fresh()
    token = _token(ava, PLAN_URL)
    plan, quantity = first(data, "plan") or "", (first(data, "quantity") or "").strip()
    quote = ""
    if REAL in data.getlist("quote"):
        preview = ava.post(
            PLAN_URL, data={"csrf_token": token, "step": "preview", "plan": plan, "quantity": quantity}
        )
        _assert_answer(preview, record=False)
        quote = _form_on(preview.text, "quote").get("quote", "") if preview.status_code == 200 else ""
    sent = MultiDict(
        [
            (name, quote if name == "quote" and value == REAL else value)
            for name, value in data.items(multi=True)
        ]
    )
    before, was = db_dump(shop), subscription(shop)
    response = post(ava, PLAN_URL, sent, token)
    status = _assert_answer(response)
    if intact(
        data, {"step": ["confirm"], "plan": PLANS, "quantity": ["", "3", "5", " 50 "], "quote": [REAL]}
    ):
        assert status == (303 if (plan, first(data, "quantity")) in _GOOD_CHANGES else 422), (plan, status)
    if status != 303:
        # A preview, a choice to correct, a stale quote, a refused token:
        # nothing is written (a declined or pending payment aside, which the
        # test provider does not answer for a card that works).
        assert status in (200, 400, 403, 409, 422), status
        get_state(shop).wait_for_background_tasks()
        assert db_dump(shop) == before
        if status == 422:
            assert_refused(response, before, shop, fields=("plan", "quantity"))
        return
    assert first(data, "step") == "confirm"
    now = subscription(shop)
    seats = int(quantity) if plan == TEAM else 1
    if (plan, seats) == (was.plan_id, was.quantity):  # confirmed twice: done already
        assert db_dump(shop) == before
    elif now.plan_id == was.plan_id:  # a downgrade, set for the period's end
        assert (now.scheduled_plan_id, now.scheduled_quantity) == (plan, seats)
        assert changed_tables(before, db_dump(shop)) <= {"portal_subscriptions", "portal_audit_events"}
    else:  # an upgrade, now, for the quoted price
        assert (now.plan_id, now.quantity) == (plan, seats)
        assert quote and first(sent, "quote") == quote
        assert changed_tables(before, db_dump(shop)) <= {
            "portal_subscriptions",
            "portal_invoices",
            "portal_invoice_lines",
            "portal_charge_attempts",
            "portal_plan_changes",
            "portal_sequences",
            "portal_audit_events",
            "portal_mail_outbox",
        }


@pytest.mark.parametrize("scheduled", [True, False], ids=["scheduled", "nothing-scheduled"])
@PROPERTY
@given(data=form_data({}))
def test_cancel_scheduled_change(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, scheduled: bool, data: MultiDict[str, str]
) -> None:
    def schedule() -> tuple[list[FlaskClient], dict[str, str]]:
        if scheduled:
            token = _token(ava, PLAN_URL)
            downgrade = {"csrf_token": token, "step": "confirm", "plan": BASIC, "quantity": "1"}
            assert ava.post(PLAN_URL, data=downgrade).status_code == 303
            assert subscription(shop).scheduled_plan_id == BASIC
        return [], {}

    fresh(schedule)
    token = _token(ava, f"/portal/subscriptions/{AVA_SUB}")
    before = db_dump(shop)
    response = post(ava, f"/portal/subscriptions/{AVA_SUB}/plan/cancel-scheduled", data, token)
    status = _assert_answer(response)
    if intact(data, {}):
        assert status == 303
    if status != 303:
        assert_refused(response, before, shop)
        return
    kept = subscription(shop)
    assert (kept.scheduled_plan_id, kept.scheduled_quantity) == (None, None)
    if scheduled:
        assert changed_tables(before, db_dump(shop)) <= {"portal_subscriptions", "portal_audit_events"}
    else:  # "There is no plan change to cancel."
        assert db_dump(shop) == before


# --- the language picker -------------------------------------------------------------------------

_NEXT = st.one_of(
    st.sampled_from(
        [
            "/portal/",
            "/portal/invoices?page=1",
            "/portal/profile",
            "/portal/logout",
            "https://evil.example/",
            "//evil.example/portal/",
            "/\\evil.example",
            "/portal/../../admin",
            "javascript:alert(1)",
        ]
    ),
    ANY_TEXT,
)


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "signed-out"])
@PROPERTY
@given(data=form_data({"language": st.sampled_from(["en", "id"]), "next": _NEXT}))
def test_set_language(shop: Flask, ava: FlaskClient, signed_in: bool, data: MultiDict[str, str]) -> None:
    client = ava if signed_in else shop.test_client()
    token = _token(client, "/portal/" if signed_in else "/portal/login/biz_demo")
    before, was = db_dump(shop), records(shop, AVA)[0]
    response = post(client, "/portal/language", data, token)
    status = _assert_answer(response)
    if intact(data, {"language": ["en", "id"], "next": ["/portal/profile"]}):
        assert status == 303
    if status != 303:
        assert_refused(response, before, shop)
        return
    # Only ever back to a portal page, whatever "next" said.
    location = response.headers["Location"]
    assert location.startswith("/portal/") and not location.startswith("//"), location
    language = first(data, "language")
    assert language in ("en", "id")
    now = records(shop, AVA)[0]
    if signed_in and was.locale != language:
        assert now.locale == language
        assert changed_tables(before, db_dump(shop)) <= {"portal_customers", "portal_audit_events"}
    else:
        assert db_dump(shop) == before


# --- sessions ------------------------------------------------------------------------------------


def _sessions(app: Flask, customer_id: str) -> list[Any]:
    with app.app_context():
        store = get_state(app).storage
        idle_timeout, max_age = session_limits(get_state(app))
        now = datetime.now(timezone.utc)
        return list(
            store.list_customer_sessions(customer_id, now, idle_timeout=idle_timeout, max_age=max_age)
        )


def _signed_in_twice(app: Flask) -> tuple[list[FlaskClient], dict[str, str]]:
    """Ava on a second device and Budi on one: the browsers, and the
    sessions' public ids by name."""
    mine = {record.public_id for record in _sessions(app, AVA)}
    other = app.test_client()
    sign_in(app, other, AVA)
    budi = app.test_client()
    sign_in(app, budi, BUDI)
    [this] = mine
    [phone] = {record.public_id for record in _sessions(app, AVA)} - mine
    [budis] = [record.public_id for record in _sessions(app, BUDI)]
    return [other, budi], {"this": this, "phone": phone, "budi": budis}


@PROPERTY
@given(
    data=form_data({}),
    which=st.sampled_from(["phone", "phone", "this", "budi", "made-up"]),
)
def test_sign_out_session(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str], which: str
) -> None:
    ids = fresh(lambda: _signed_in_twice(shop))
    session_id = ids.get(which, "ses_" + "x" * 20)
    token = _token(ava, "/portal/sessions")
    before, budi = db_dump(shop), _sessions(shop, BUDI)
    response = post(ava, f"/portal/sessions/{quote(session_id, safe='')}/sign-out", data, token)
    status = _assert_answer(response)
    if intact(data, {}):
        assert status == (404 if which in ("budi", "made-up") else 303)
    if status != 303:
        assert_refused(response, before, shop)
        return
    left = {record.public_id for record in _sessions(shop, AVA)}
    assert left == {ids["this"], ids["phone"]} - {session_id}
    assert _sessions(shop, BUDI) == budi
    assert changed_tables(before, db_dump(shop)) <= {"portal_sessions", "portal_audit_events"}
    if which == "this":
        assert ava.get("/portal/").status_code == 302  # signed out here


@PROPERTY
@given(data=form_data({}))
def test_sign_out_everywhere(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str]
) -> None:
    fresh(lambda: _signed_in_twice(shop))
    token = _token(ava, "/portal/sessions")
    before, budi = db_dump(shop), _sessions(shop, BUDI)
    response = post(ava, "/portal/sessions/sign-out-everywhere", data, token)
    status = _assert_answer(response)
    if intact(data, {}):
        assert status == 303
    if status != 303:
        assert_refused(response, before, shop)
        assert ava.get("/portal/").status_code == 200  # still signed in
        return
    assert _sessions(shop, AVA) == []
    assert _sessions(shop, BUDI) == budi
    assert changed_tables(before, db_dump(shop)) <= {
        "portal_sessions",
        "portal_customers",
        "portal_audit_events",
    }
    assert ava.get("/portal/").status_code == 302


# --- licence key activations ---------------------------------------------------------------------

_INSTANCES = [
    (AVA_KEY, "lki_demo_ava_macbook"),  # active
    (AVA_KEY, "lki_demo_ava_iphone"),  # active
    (AVA_KEY, "lki_demo_ava_oldlaptop"),  # deactivated long ago
    (AVA_KEY, "lki_demo_ava_pc"),  # another key's
    (AVA_OTHER_KEY, "lki_demo_ava_pc"),  # active
    (BUDI_KEY, "lki_demo_budi_laptop"),  # another customer's
    (AVA_KEY, "lki_demo_budi_laptop"),
    (AVA_KEY, "lki_made_up"),
]


@PROPERTY
@given(data=form_data({}), target=st.sampled_from(_INSTANCES))
def test_deactivate_license_instance(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str], target: tuple[str, str]
) -> None:
    fresh()
    key_id, instance_id = target
    token = _token(ava, f"/portal/license-keys/{AVA_KEY}")
    with shop.app_context():
        store = get_state(shop).storage
        instances = (
            {i.id: i for i in store.list_license_key_instances(AVA, key_id)} if key_id != BUDI_KEY else {}
        )
        key = store.get_license_key(AVA, key_id)
    before = db_dump(shop)
    response = post(ava, f"/portal/license-keys/{key_id}/instances/{instance_id}/deactivate", data, token)
    status = _assert_answer(response)
    active = instance_id in instances and instances[instance_id].is_active
    if intact(data, {}):
        assert status == (303 if instance_id in instances else 404), status
    if status != 303:
        assert_refused(response, before, shop)
        return
    assert response.headers["Location"] == f"/portal/license-keys/{key_id}"
    if not active:  # "That device was already deactivated. Nothing changed."
        assert db_dump(shop) == before
        return
    with shop.app_context():
        store = get_state(shop).storage
        now = {i.id: i for i in store.list_license_key_instances(AVA, key_id)}
        saved = store.get_license_key(AVA, key_id)
    assert key is not None and saved is not None
    assert not now[instance_id].is_active
    assert {i for i in now if i != instance_id} == {i for i in instances if i != instance_id}
    assert all(now[i] == instances[i] for i in now if i != instance_id)
    assert saved.activations == key.activations - 1
    assert changed_tables(before, db_dump(shop)) <= {
        "portal_license_keys",
        "portal_license_key_instances",
        "portal_audit_events",
    }


# --- the one-time link buttons and signing out -------------------------------------------------

_LINKS = {
    LinkPurpose.SESSION_LINK: "/portal/session/{token}",
    LinkPurpose.LOGIN_LINK: "/portal/login/biz_demo/{token}",
    LinkPurpose.EMAIL_CHANGE: "/portal/profile/email/{token}",
}


@pytest.mark.parametrize("purpose", list(_LINKS), ids=[purpose.value for purpose in _LINKS])
@PROPERTY
@given(data=form_data({}), token=st.one_of(st.sampled_from(["<real>", "<cut>"]), ANY_TEXT))
def test_link_buttons(shop: Flask, purpose: LinkPurpose, data: MultiDict[str, str], token: str) -> None:
    client = shop.test_client()
    csrf = _token(client, "/portal/login/biz_demo")
    real = issue(shop, purpose)
    link = {"<real>": real, "<cut>": real[:-2]}.get(token, token)
    url = _LINKS[purpose].format(token=quote(link, safe="") or "x")
    before = db_dump(shop)
    response = post(client, url, data, csrf)
    status = _assert_answer(response)
    if status != 303:
        assert_refused(response, before, shop)
        return
    assert link == real  # only a link the portal made opens
    assert response.headers["Location"] in ("/portal/", "/portal/profile")
    if purpose is LinkPurpose.EMAIL_CHANGE:
        assert records(shop, AVA)[0].email == NEW_EMAIL
    assert client.get("/portal/").status_code == 200  # signed in


@PROPERTY
@given(data=form_data({}))
def test_logout(shop: Flask, data: MultiDict[str, str]) -> None:
    client = shop.test_client()
    sign_in(shop, client, AVA)
    token = _token(client)
    before = db_dump(shop)
    response = post(client, "/portal/logout", data, token)
    status = _assert_answer(response)
    if intact(data, {}):
        assert status == 200
    if status != 200:
        assert_refused(response, before, shop)
        assert client.get("/portal/").status_code == 200  # still signed in
        return
    assert client.get("/portal/").status_code == 302
    assert changed_tables(before, db_dump(shop)) <= {"portal_sessions", "portal_audit_events"}


# --- the payment-methods page --------------------------------------------------------------------

_NEXT_YEAR = str(datetime.now(timezone.utc).year + 1)
_NEW_CARD: dict[str, list[str]] = {
    "payment_method": ["new"],
    "card_number": ["4242424242424242", "4242 4242 4242 4242", "5555555555554444", "4000000000000002"],
    "exp_month": ["1", "12", "07"],
    "exp_year": [_NEXT_YEAR, _NEXT_YEAR[2:]],
    "cvc": ["123", "999"],
}


@PROPERTY
@given(data=form_data({name: st.sampled_from(values) for name, values in _NEW_CARD.items()}))
def test_add_card(shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str]) -> None:
    fresh()
    token = _token(ava, "/portal/payment-methods")
    before, budi = db_dump(shop), records(shop, BUDI)
    response = post(ava, "/portal/payment-methods", data, token)
    status = _assert_answer(response)
    assert records(shop, BUDI) == budi
    if status != 303:
        # Refused, declined (said at the top), or over the hourly allowance
        # (the examples share it): nothing written.
        declined = 'id="payment-problem"' in response.get_data(as_text=True)
        assert_refused(response, before, shop, fields=() if declined else [*_NEW_CARD, "payment_method"])
        return
    assert response.headers["Location"] == "/portal/payment-methods"
    get_state(shop).wait_for_background_tasks()
    assert changed_tables(before, db_dump(shop)) <= {"portal_payment_methods", "portal_audit_events"}
    assert len(records(shop, AVA)[3]) == 2  # her Visa and the one added, not the default
    assert [m.id for m in records(shop, AVA)[3] if m.is_default] == ["pm_demo_ava_visa"]


_PROPERTY_CARD = "pm_property_extra"
_PROPERTY_EXPIRED = "pm_property_expired"


def _two_more_cards(app: Flask) -> tuple[list[FlaskClient], dict[str, str]]:
    with app.app_context():
        store = get_state(app).storage
        for method_id, year in ((_PROPERTY_CARD, int(_NEXT_YEAR) + 1), (_PROPERTY_EXPIRED, 2020)):
            store.add_payment_method(
                PaymentMethod(
                    id=method_id,
                    customer_id=AVA,
                    brand="mastercard",
                    last4="4444",
                    exp_month=10,
                    exp_year=year,
                    provider_token=TestPaymentProvider.token_for("5555555555554444"),
                )
            )
    return [], {}


@PROPERTY
@given(
    data=form_data({"also_active_subscriptions": st.sampled_from(["1", "0", ""])}),
    which=st.sampled_from(
        [_PROPERTY_CARD, "pm_demo_ava_visa", _PROPERTY_EXPIRED, "pm_demo_budi_card", "pm_x"]
    ),
)
def test_set_default_payment_method(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str], which: str
) -> None:
    fresh(lambda: _two_more_cards(shop))
    token = _token(ava, "/portal/payment-methods")
    before, budi = db_dump(shop), records(shop, BUDI)
    response = post(ava, f"/portal/payment-methods/{which}/default", data, token)
    status = _assert_answer(response)
    assert records(shop, BUDI) == budi
    if intact(data, {"also_active_subscriptions": ["1", "0", ""]}):
        assert status == (404 if which in ("pm_demo_budi_card", "pm_x") else 303)
    if status != 303:
        assert_refused(response, before, shop)
        return
    get_state(shop).wait_for_background_tasks()
    after = db_dump(shop)
    defaults = [m.id for m in records(shop, AVA)[3] if m.is_default]
    if which == _PROPERTY_EXPIRED:
        assert after == before  # refused with a reason: nothing written
        return
    assert defaults == [which]
    assert changed_tables(before, after) <= {
        "portal_payment_methods",
        "portal_subscriptions",
        "portal_audit_events",
    }
    charged_to = subscription(shop).payment_method
    assert charged_to is not None
    moved = first(data, "also_active_subscriptions") == "1"
    assert charged_to.id == (which if moved else "pm_demo_ava_visa")


# --- paying an open invoice, emailing an invoice ------------------------------------------------

_OPEN = "inv_property_open"
_PAY_VALID: dict[str, list[str]] = {
    **_NEW_CARD,
    "payment_method": ["pm_demo_ava_visa", "new"],
}
#: What paying may write: the payment, the invoice, the card added for it,
#: the receipt and the activity entry.
_PAY_TABLES = {
    "portal_invoices",
    "portal_charge_attempts",
    "portal_payment_methods",
    "portal_mail_outbox",
    "portal_audit_events",
}


def _open_invoice(app: Flask) -> tuple[list[FlaskClient], dict[str, str]]:
    with app.app_context():
        get_state(app).storage.add_invoice(  # type: ignore[attr-defined]
            factories.invoice(
                _OPEN,
                AVA,
                status=InvoiceStatus.OPEN,
                number="INV-PROPERTY",
                description="Setup and onboarding",
                subtotal=15000,
                total=15000,
            )
        )
    return [], {}


def _first_invoice(app: Flask, customer_id: str) -> str:
    return str(records(app, customer_id)[2][0].id)


@PROPERTY
@given(
    data=form_data({name: st.sampled_from(values) for name, values in _PAY_VALID.items()}),
    whose=st.sampled_from(["ava", "budi", "none"]),
)
def test_pay_invoice(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str], whose: str
) -> None:
    fresh(lambda: _open_invoice(shop))
    target = {"ava": _OPEN, "budi": _first_invoice(shop, BUDI), "none": "inv_x"}[whose]
    token = _token(ava, f"/portal/invoices/{_OPEN}/pay")
    before, budi = db_dump(shop), records(shop, BUDI)
    response = post(ava, f"/portal/invoices/{target}/pay", data, token)
    status = _assert_answer(response)
    event(f"{whose}: status {status}")
    assert records(shop, BUDI) == budi
    if whose != "ava":
        assert status == 404
    if status != 303:
        get_state(shop).wait_for_background_tasks()
        if status == 402:  # declined: the attempt is kept, nothing is paid
            assert changed_tables(before, db_dump(shop)) <= _PAY_TABLES
            assert [i.status for i in records(shop, AVA)[2] if i.id == _OPEN] == [InvoiceStatus.OPEN]
            return
        declined = 'id="payment-problem"' in response.get_data(as_text=True)
        assert_refused(response, before, shop, fields=() if declined else list(_PAY_VALID))
        return
    get_state(shop).wait_for_background_tasks()
    assert changed_tables(before, db_dump(shop)) <= _PAY_TABLES
    assert [i.status for i in records(shop, AVA)[2] if i.id == _OPEN] == [InvoiceStatus.PAID]


@PROPERTY
@given(data=form_data({}), whose=st.sampled_from(["ava", "budi", "none"]))
def test_email_invoice(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str], whose: str
) -> None:
    fresh()
    mine = _first_invoice(shop, AVA)
    target = {"ava": mine, "budi": _first_invoice(shop, BUDI), "none": "inv_x"}[whose]
    token = _token(ava, f"/portal/invoices/{mine}")
    before, budi = db_dump(shop), records(shop, BUDI)
    response = post(ava, f"/portal/invoices/{target}/email", data, token)
    status = _assert_answer(response)
    assert records(shop, BUDI) == budi
    if status != 303:
        # A bad token, another customer's invoice, or over the hourly limit
        # (the examples share it): nothing written.
        assert_refused(response, before, shop)
        return
    assert whose == "ava"
    get_state(shop).wait_for_background_tasks()
    assert changed_tables(before, db_dump(shop)) <= {"portal_mail_outbox", "portal_audit_events"}


_CODES = ["WELCOME10", " welcome10 ", "NOSUCHCODE", "", "<b>x</b>"]


@PROPERTY
@given(
    data=form_data({"promotion_code": st.one_of(st.sampled_from(_CODES), ANY_TEXT)}),
    whose=st.sampled_from(["ava", "budi", "none"]),
)
@example(data=MultiDict({"promotion_code": "WELCOME10", "csrf_token": REAL}), whose="ava")
@example(data=MultiDict({"promotion_code": "W" * 5000, "csrf_token": REAL}), whose="ava")
def test_apply_promotion_code(
    shop: Flask, ava: FlaskClient, fresh: FreshStart, data: MultiDict[str, str], whose: str
) -> None:
    fresh()
    target = {"ava": AVA_SUB, "budi": BUDI_SUB, "none": "sub_x"}[whose]
    token = _token(ava, f"/portal/subscriptions/{AVA_SUB}")
    before, budi = db_dump(shop), records(shop, BUDI)
    response = post(ava, f"/portal/subscriptions/{target}/promotion-code", data, token)
    status = _assert_answer(response)
    event(f"{whose}: status {status}")
    assert records(shop, BUDI) == budi
    if whose != "ava":
        assert status in (400, 404)
    if status != 303:
        # A bad token, a code that is not one, or over the hourly limit
        # (the examples share it): nothing written.
        assert_refused(response, before, shop, fields=("promotion-code",))
        return
    assert whose == "ava" and (first(data, "promotion_code") or "").strip().upper() == "WELCOME10"
    discounted = subscription(shop)
    assert (discounted.discount_percent, discounted.discount_renewals) == (10, 1)
    assert changed_tables(before, db_dump(shop)) <= {
        "portal_subscriptions",
        "portal_audit_events",
        "portal_promotion_redemptions",
        "portal_promotion_codes",
    }


# --- every POST endpoint has one -----------------------------------------------------------------

#: Each POST endpoint of the blueprint and the property tests that post to it.
COVERED: dict[str, tuple[str, ...]] = {
    "portal.login": ("test_forms_property::test_login_email",),
    "portal.profile": ("test_forms_property::test_profile",),
    "portal.cancel_subscription": (
        "test_forms_property::test_confirm_forms",
        "test_forms_property_more::test_cancel_with_a_reason",
    ),
    "portal.undo_cancellation": ("test_forms_property::test_confirm_forms",),
    "portal.remove_payment_method": ("test_forms_property::test_confirm_forms",),
    "portal.payment_methods": ("test_forms_property_more::test_add_card",),
    "portal.set_default_payment_method": ("test_forms_property_more::test_set_default_payment_method",),
    "portal.payment_method": ("test_forms_property::test_payment_method",),
    "portal.billing_details": ("test_forms_property_more::test_billing_details",),
    "portal.invoice_billing_details": ("test_forms_property_more::test_invoice_billing_details",),
    "portal.cancel_flow": ("test_forms_property_more::test_cancel_reason",),
    "portal.accept_retention_offer": ("test_forms_property_more::test_accept_retention_offer",),
    "portal.pause_subscription": ("test_forms_property_more::test_pause",),
    "portal.unpause_subscription": ("test_forms_property_more::test_unpause",),
    "portal.change_plan": ("test_forms_property_more::test_change_plan",),
    "portal.cancel_scheduled_change": ("test_forms_property_more::test_cancel_scheduled_change",),
    "portal.set_language": ("test_forms_property_more::test_set_language",),
    "portal.sign_out_session": ("test_forms_property_more::test_sign_out_session",),
    "portal.sign_out_everywhere": ("test_forms_property_more::test_sign_out_everywhere",),
    "portal.deactivate_license_instance": ("test_forms_property_more::test_deactivate_license_instance",),
    "portal.session_link": ("test_forms_property_more::test_link_buttons",),
    "portal.login_link": ("test_forms_property_more::test_link_buttons",),
    "portal.confirm_email_change": ("test_forms_property_more::test_link_buttons",),
    "portal.logout": ("test_forms_property_more::test_logout",),
    "portal.pay_invoice": ("test_forms_property_more::test_pay_invoice",),
    "portal.email_invoice": ("test_forms_property_more::test_email_invoice",),
    "portal.apply_promotion_code": ("test_forms_property_more::test_apply_promotion_code",),
}


def _post_endpoints(app: Flask) -> Iterator[str]:
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("portal.") and "POST" in (rule.methods or ()):
            yield rule.endpoint


def test_every_post_endpoint_has_a_property_test(shop: Flask) -> None:
    modules = {"test_forms_property": test_forms_property, "test_forms_property_more": sys.modules[__name__]}
    posts = set(_post_endpoints(shop))
    missing = posts - set(COVERED)
    assert not missing, (
        f"POST endpoints without a property test (add one, then list it in COVERED): {sorted(missing)}"
    )
    assert set(COVERED) <= posts, f"gone from the URL map: {sorted(set(COVERED) - posts)}"
    for endpoint, tests in COVERED.items():
        for test in tests:
            module, name = test.split("::")
            function = getattr(modules[module], name, None)
            assert callable(function) and hasattr(function, "hypothesis"), (endpoint, test)
