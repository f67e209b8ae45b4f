"""What a store can do beyond the core, as types: the feature protocols of
:mod:`flask_customer_portal.capabilities`, what :func:`capabilities_of`
finds, what a composite store declares, and that the portal asks once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, Protocol

import pytest
from flask import Flask
from portal_fixtures import make_portal_app, sign_in

from flask_customer_portal import capabilities
from flask_customer_portal.capabilities import (
    Capabilities,
    ChangesPlans,
    ChangesPlansAtProvider,
    ChargesSubscriptions,
    ClaimsDueSubscriptions,
    ClaimsWebhookEvents,
    CreatesCustomers,
    DeclaresCapabilities,
    ErasesCustomers,
    GrantsRetentionDiscounts,
    KeepsDefaultPaymentMethod,
    LinksInvoicePdfs,
    LocksInvoices,
    LocksProviderSubscriptions,
    PausesSubscriptions,
    PrunesExpiredRecords,
    PrunesWebhookEvents,
    QueuesMail,
    SettlesPlanChanges,
    StartsPortalSessions,
    TakesProviderPlanChangeCodes,
    TakesProviderPromotionCodes,
    capabilities_of,
    implements,
)
from flask_customer_portal.contrib import composite as composite_module
from flask_customer_portal.contrib.composite import BILLING_CORE, CompositeStorage, protocol_members
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import DueClaimStore, PortalStorage

#: Each flag of :class:`Capabilities` and the protocol whose methods it needs.
FEATURES: dict[str, type] = {
    "pause": PausesSubscriptions,
    "retention_discount": GrantsRetentionDiscounts,
    "charge": ChargesSubscriptions,
    "plans": ChangesPlans,
    "plan_settlement": SettlesPlanChanges,
    "webhook_claims": ClaimsWebhookEvents,
    "add_customer": CreatesCustomers,
    "erase": ErasesCustomers,
    "prune": PrunesExpiredRecords,
    "start_session_at_once": StartsPortalSessions,
    "provider_lock": LocksProviderSubscriptions,
    "invoice_pdf_links": LinksInvoicePdfs,
    "webhook_pruning": PrunesWebhookEvents,
    "mail_outbox": QueuesMail,
    "due_claims": ClaimsDueSubscriptions,
    "default_payment_method": KeepsDefaultPaymentMethod,
    "invoice_lock": LocksInvoices,
    "provider_plan_change": ChangesPlansAtProvider,
    "provider_plan_change_codes": TakesProviderPlanChangeCodes,
    "provider_promotion_codes": TakesProviderPromotionCodes,
}

#: Features that need another one: settling plan changes runs under the
#: subscription lock of the money path.
NEEDS = {"plan_settlement": "charge", "due_claims": "charge"}

#: Only a payment company's billing store links to invoice PDFs it issues
#: and changes plans with its own preview.
NOT_LOCAL = (
    "invoice_pdf_links",
    "provider_plan_change",
    "provider_plan_change_codes",
    "provider_promotion_codes",
)
SQLA_CAPABILITIES = dataclasses.replace(
    Capabilities.everything(),
    invoice_pdf_links=False,
    provider_plan_change=False,
    provider_plan_change_codes=False,
    provider_promotion_codes=False,
)

#: What a composite store always takes from its local store.
LOCAL_FEATURES = (
    "webhook_claims",
    "add_customer",
    "erase",
    "prune",
    "start_session_at_once",
    "webhook_pruning",
    "mail_outbox",
    "provider_lock",
)

AVA = "cus_demo_ava"
AVA_SUB_URL = "/portal/subscriptions/sub_demo_ava_sync"


def _feature_members(protocol: type) -> list[str]:
    """The protocol's methods, those of the protocols it extends included."""
    return sorted(
        {
            name
            for base in protocol.__mro__
            if base not in (object, Protocol, Generic)
            for name in vars(base)
            if not name.startswith("_")
        }
    )


class Without:
    """``inner`` with some of its members missing, or set to ``None``."""

    def __init__(self, inner: object, *missing: str, none: tuple[str, ...] = ()) -> None:
        self._inner = inner
        self._missing = set(missing)
        for name in none:
            setattr(self, name, None)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in self._missing:
            raise AttributeError(name)
        return getattr(self._inner, name)


class BillingAdapter:
    """A payment company's adapter with the billing core and, with
    ``extra``, the named methods of ``inner`` (calls go nowhere else)."""

    def __init__(self, inner: object, extra: frozenset[str] = frozenset()) -> None:
        self._inner = inner
        self._members = frozenset(BILLING_CORE) | extra

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._members:
            raise AttributeError(name)
        return getattr(self._inner, name)


# -- the protocols ---------------------------------------------------------------------


def test_every_flag_has_a_protocol() -> None:
    assert sorted(FEATURES) == sorted(field.name for field in dataclasses.fields(Capabilities))
    assert set(FEATURES.values()) <= {getattr(capabilities, name) for name in capabilities.__all__}


#: Features whose methods are no member of the storage protocol: a store
#: that has them says so with a method of the feature's own protocol.
BEYOND_STORAGE = {
    "invoice_pdf_links": {"invoice_pdf_url"},
    "webhook_pruning": {"prune_webhook_events"},
    "default_payment_method": {"set_default_payment_method"},
    "invoice_lock": {"lock_invoice"},
    "provider_plan_change": {"make_provider_plan_change", "preview_provider_plan_change"},
    "provider_plan_change_codes": {
        "find_provider_promotion_code",
        "preview_provider_plan_change_with_code",
        "make_provider_plan_change_with_code",
    },
    "provider_promotion_codes": {
        "find_provider_promotion_code",
        "preview_provider_plan_change_with_code",
        "make_provider_plan_change_with_code",
        "apply_provider_promotion_code",
    },
}


@pytest.mark.parametrize("flag", sorted(set(FEATURES) - set(BEYOND_STORAGE)))
def test_each_feature_names_methods_of_the_storage_protocol(flag: str) -> None:
    # A misspelt name would find no store that has it: the feature would be
    # off everywhere, without an error.
    members = _feature_members(FEATURES[flag])
    assert members, flag
    # DueClaimStore is a protocol of its own, outside PortalStorage: a
    # store without it (a composite) renews through the lock alone.
    assert set(members) <= protocol_members(PortalStorage, DueClaimStore), flag


@pytest.mark.parametrize("flag", sorted(BEYOND_STORAGE))
def test_a_feature_beyond_the_storage_protocol_is_found_by_its_own_methods(
    flag: str, sqlite_store: SQLAlchemyStorage
) -> None:
    assert set(_feature_members(FEATURES[flag])) == BEYOND_STORAGE[flag]
    assert not set(BEYOND_STORAGE[flag]) & protocol_members(PortalStorage)
    has_it = all(callable(getattr(sqlite_store, name, None)) for name in BEYOND_STORAGE[flag])
    assert getattr(capabilities_of(sqlite_store), flag) is has_it


def test_the_composites_own_features_name_methods_of_the_storage_protocol() -> None:
    # Pieces an adapter may serve that have no capability (licence keys,
    # batches of invoices, resumes): the same rule.
    beyond = set().union(*BEYOND_STORAGE.values())
    for feature in composite_module._OPTIONAL_FEATURES:
        members = _feature_members(feature)
        assert members, feature
        assert set(members) <= protocol_members(PortalStorage) | beyond, feature


def test_what_declares_capabilities_is_the_composite() -> None:
    assert _feature_members(DeclaresCapabilities) == ["portal_capabilities"]
    assert not isinstance(object(), DeclaresCapabilities)


# -- capabilities_of ---------------------------------------------------------------------


def test_the_sqlalchemy_store_can_do_everything_a_local_store_can(sqlite_store: SQLAlchemyStorage) -> None:
    found = capabilities_of(sqlite_store)
    assert found == SQLA_CAPABILITIES
    assert all(getattr(found, flag) for flag in FEATURES if flag not in NOT_LOCAL)
    assert not any(getattr(found, flag) for flag in NOT_LOCAL)
    assert found.plan_change


def test_a_bare_object_can_do_nothing() -> None:
    assert capabilities_of(object()) == Capabilities()
    assert not Capabilities().plan_change


@pytest.mark.parametrize(
    ("flag", "member"),
    [
        (flag, member)
        for flag, protocol in sorted(FEATURES.items())
        if flag not in NOT_LOCAL
        for member in _feature_members(protocol)
    ],
)
def test_a_store_without_one_method_of_a_feature_lacks_that_feature_only(
    sqlite_store: SQLAlchemyStorage, flag: str, member: str
) -> None:
    lost = {flag} | {needing for needing, needed in NEEDS.items() if needed == flag}
    expected = dataclasses.replace(SQLA_CAPABILITIES, **dict.fromkeys(lost, False))
    assert capabilities_of(Without(sqlite_store, member)) == expected


@pytest.mark.parametrize("flag", sorted(FEATURES))
def test_a_member_set_to_none_does_not_count(sqlite_store: SQLAlchemyStorage, flag: str) -> None:
    member = _feature_members(FEATURES[flag])[0]
    store = Without(sqlite_store, none=(member,))
    assert getattr(store, member) is None
    assert not implements(store, FEATURES[flag])
    assert not getattr(capabilities_of(store), flag)


def test_plan_changes_need_the_plan_catalogue_and_the_money_path() -> None:
    assert Capabilities(plans=True, charge=True).plan_change
    assert not Capabilities(plans=True).plan_change
    assert not Capabilities(charge=True).plan_change


def test_a_store_that_declares_its_capabilities_is_taken_at_its_word(sqlite_store: SQLAlchemyStorage) -> None:
    class Declaring(Without):
        def portal_capabilities(self) -> Capabilities:
            return Capabilities(pause=True)

    assert capabilities_of(Declaring(sqlite_store)) == Capabilities(pause=True)


# -- the composite store -------------------------------------------------------------------


def test_a_composite_over_a_bare_adapter_has_only_what_the_local_store_adds(
    sqlite_store: SQLAlchemyStorage,
) -> None:
    adapter = BillingAdapter(sqlite_store)
    assert capabilities_of(adapter) == Capabilities()
    composite = CompositeStorage(sqlite_store, billing=adapter)
    assert isinstance(composite, DeclaresCapabilities)
    # The local store can pause, change plans and charge, but it does not
    # hold the adapter's subscriptions: none of those is offered.
    assert capabilities_of(composite) == Capabilities(**dict.fromkeys(LOCAL_FEATURES, True))


@pytest.mark.parametrize("flag", ["pause", "retention_discount", "charge", "plans"])
def test_a_composite_offers_a_billing_feature_the_adapter_holds(
    sqlite_store: SQLAlchemyStorage, flag: str
) -> None:
    adapter = BillingAdapter(sqlite_store, frozenset(_feature_members(FEATURES[flag])))
    expected = Capabilities(**dict.fromkeys((*LOCAL_FEATURES, flag), True))
    assert capabilities_of(CompositeStorage(sqlite_store, billing=adapter)) == expected


def test_a_composite_settles_plan_changes_only_with_the_money_path(sqlite_store: SQLAlchemyStorage) -> None:
    settles = frozenset(_feature_members(SettlesPlanChanges))
    alone = CompositeStorage(sqlite_store, billing=BillingAdapter(sqlite_store, settles))
    assert not capabilities_of(alone).plan_settlement
    charges = settles | frozenset(_feature_members(ChargesSubscriptions))
    with_money_path = CompositeStorage(sqlite_store, billing=BillingAdapter(sqlite_store, charges))
    assert capabilities_of(with_money_path).plan_settlement


def test_a_composite_over_a_local_store_without_a_feature_lacks_it(sqlite_store: SQLAlchemyStorage) -> None:
    local = Without(sqlite_store, "erase_customer", "prune_expired")
    composite = CompositeStorage(local, billing=BillingAdapter(sqlite_store))  # type: ignore[arg-type]
    found = capabilities_of(composite)
    assert not found.erase and not found.prune
    assert found.webhook_claims and found.add_customer and found.start_session_at_once


def test_a_composite_looks_at_its_adapter_once(sqlite_store: SQLAlchemyStorage) -> None:
    adapter = BillingAdapter(sqlite_store, frozenset(_feature_members(PausesSubscriptions)))
    composite = CompositeStorage(sqlite_store, billing=adapter)
    adapter._members = frozenset(BILLING_CORE)  # the adapter loses its pauses afterwards
    assert capabilities_of(composite).pause


# -- the portal asks once ------------------------------------------------------------------


@pytest.fixture
def composite_app(tmp_path: Path) -> Iterator[Flask]:
    """The demo shop over a composite store whose adapter cannot pause."""
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}",
        wrap_storage=lambda local: CompositeStorage(local, billing=BillingAdapter(local)),
        CUSTOMER_PORTAL_ALLOW_PAUSE=True,
    )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_capabilities_are_resolved_once_when_the_portal_is_registered(composite_app: Flask) -> None:
    state = get_state(composite_app)
    resolved = state.capabilities
    assert resolved == capabilities_of(state.storage)
    assert not resolved.pause
    local = SQLAlchemyStorage(composite_app.extensions["sqlalchemy"])
    assert capabilities_of(local).pause
    # A store swapped in afterwards changes nothing the portal offers.
    state.storage = local
    assert state.capabilities is resolved
    client = composite_app.test_client()
    sign_in(composite_app, client, AVA)
    page = client.get(AVA_SUB_URL)
    assert page.status_code == 200
    assert f"{AVA_SUB_URL}/pause" not in page.text


def test_the_same_shop_over_the_local_store_offers_a_pause(tmp_path: Path) -> None:
    # The other half of the test above: the page does offer a pause when
    # the store registered with the portal can pause.
    app = make_portal_app(f"sqlite:///{tmp_path / 'portal.db'}", CUSTOMER_PORTAL_ALLOW_PAUSE=True)
    try:
        assert get_state(app).capabilities.pause
        client = app.test_client()
        sign_in(app, client, AVA)
        page = client.get(AVA_SUB_URL)
        assert page.status_code == 200
        assert f"{AVA_SUB_URL}/pause" in page.text
    finally:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


class PdfIssuingAdapter(BillingAdapter):
    """An adapter whose payment company issues its own invoice PDFs."""

    def invoice_pdf_url(self, customer_id: str, invoice_id: str) -> str | None:
        return f"https://pay.example/{customer_id}/{invoice_id}.pdf"


def test_a_composite_links_to_invoice_pdfs_only_when_its_adapter_issues_them(
    sqlite_store: SQLAlchemyStorage,
) -> None:
    issuing = CompositeStorage(sqlite_store, billing=PdfIssuingAdapter(sqlite_store))
    assert capabilities_of(issuing).invoice_pdf_links
    plain = CompositeStorage(sqlite_store, billing=BillingAdapter(sqlite_store))
    assert not capabilities_of(plain).invoice_pdf_links
    assert plain.invoice_pdf_url("cus_any", "inv_any") is None
