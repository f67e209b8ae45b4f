"""CompositeStorage: billing from an adapter, the rest from the local store.

The "adapter" here is the SQLAlchemy store seen through a wrapper that only
has the billing methods, with its records under provider customer ids
(``prov_…``) while the portal knows the customers as ``local_…``.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from factories import UTC, card, invoice, portal_session, subscription

from flask_customer_portal.contrib.composite import (
    CompositeStorage,
    MappingCustomerIds,
    SameCustomerIds,
    local_only_members,
    protocol_members,
)
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.money import Money
from flask_customer_portal.storage import (
    AuditEvent,
    BillingStore,
    ChargeStore,
    Customer,
    LicenseKey,
    LicenseKeyStatus,
    PaymentMethod,
    Plan,
    PlanStore,
    PortalStorage,
    StateConflict,
    Subscription,
)

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
PRO_PLAN = Plan("plan_pro", "Pro", "Pro monthly", Money(1900, "USD"), "month")


class BillingOnly:
    """Exposes only the billing methods of ``inner`` and logs every call."""

    def __init__(self, inner: SQLAlchemyStorage, *, charge: bool = True, extra: tuple[str, ...] = ()) -> None:
        self._inner = inner
        self._members = protocol_members(BillingStore, *((ChargeStore,) if charge else ())) | set(extra)
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._members:
            raise AttributeError(name)
        target = getattr(self._inner, name)

        @functools.wraps(target)
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return target(*args, **kwargs)

        return call


def _method(pm_id: str, customer_id: str) -> PaymentMethod:
    return card(pm_id, customer_id, created_at=T0)


def _subscription(sub_id: str, customer_id: str, method: PaymentMethod | None, **kw: Any) -> Subscription:
    return subscription(
        sub_id,
        customer_id,
        current_period_start=T0,
        current_period_end=T0 + timedelta(days=31),
        payment_method=method,
        created_at=T0,
        **kw,
    )


@pytest.fixture
def seeded(sqlite_store: SQLAlchemyStorage) -> SQLAlchemyStorage:
    store = sqlite_store
    for cid in ("local_a", "local_b", "prov_a", "prov_b"):
        store.add_customer(Customer(cid, f"{cid}@example.com", cid, created_at=T0))
    for cid in ("prov_a", "prov_b"):
        method = store.add_payment_method(_method(f"pm_{cid}", cid))
        store.add_subscription(_subscription(f"sub_{cid}", cid, method))
        store.add_invoice(
            invoice(
                f"in_{cid}",
                cid,
                number=f"INV-{cid}",
                issued_at=T0,
                description="Pro",
                subscription_id=f"sub_{cid}",
                paid_at=T0,
                payment_method=method,
            )
        )
    store.add_license_key(
        LicenseKey("lk_1", "local_a", "KEY-1", "Desktop", LicenseKeyStatus.ACTIVE, 1, created_at=T0)
    )
    return store


@pytest.fixture
def adapter(seeded: SQLAlchemyStorage) -> BillingOnly:
    return BillingOnly(seeded)


@pytest.fixture
def composite(seeded: SQLAlchemyStorage, adapter: BillingOnly) -> CompositeStorage:
    return CompositeStorage(
        seeded,
        billing=adapter,
        customer_ids=MappingCustomerIds.from_dict({"local_a": "prov_a", "local_b": "prov_b"}),
    )


def _event(action: str, customer_id: str = "local_a", subject_id: str | None = None) -> AuditEvent:
    return AuditEvent(customer_id=customer_id, action=action, occurred_at=T0, subject_id=subject_id)


# -- routing -------------------------------------------------------------------------


def test_every_protocol_member_is_reachable(composite: CompositeStorage, adapter: BillingOnly) -> None:
    assert isinstance(composite, PortalStorage)
    members = protocol_members(PortalStorage)
    assert protocol_members(BillingStore) <= members
    for name in members:
        assert callable(getattr(composite, name)), name
        expected = adapter if name in protocol_members(BillingStore, ChargeStore) else composite.local
        assert composite.backend_of(name) is expected, name


def test_customers_access_and_licence_keys_stay_local(composite: CompositeStorage) -> None:
    assert {
        "get_customer",
        "create_link",
        "record_event",
        "get_session_with_customer",
    } <= local_only_members()
    customer = composite.get_customer("local_a")
    assert customer is not None and customer.email == "local_a@example.com"
    assert [k.id for k in composite.list_license_keys("local_a")] == ["lk_1"]
    assert composite.count_license_keys("local_a") == 1


def test_an_adapter_serves_what_it_implements(seeded: SQLAlchemyStorage) -> None:
    adapter = BillingOnly(seeded, extra=("list_license_keys",))
    composite = CompositeStorage(seeded, billing=adapter, customer_ids=SameCustomerIds())
    assert composite.backend_of("list_license_keys") is adapter
    assert composite.backend_of("count_license_keys") is seeded
    assert [k.id for k in composite.list_license_keys("local_a")] == ["lk_1"]
    assert adapter.calls == [("list_license_keys", ("local_a",), {})]


def _members_the_composite_lacks() -> set[str]:
    """Members of the storage protocol that no class of the composite defines."""
    defined = {name for klass in CompositeStorage.__mro__ for name in vars(klass)}
    return set(protocol_members(PortalStorage)) - defined


def test_a_billing_method_added_to_the_protocol_later_is_caught_until_it_is_delegated(
    seeded: SQLAlchemyStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _members_the_composite_lacks() == set()

    def preview_renewal(self: Any, customer_id: str, subscription_id: str) -> Subscription | None:
        """A protocol member this module has never heard of."""

    monkeypatch.setattr(BillingStore, "preview_renewal", preview_renewal, raising=False)
    monkeypatch.setattr(seeded, "preview_renewal", seeded.get_subscription, raising=False)
    adapter = BillingOnly(seeded, extra=("preview_renewal",))
    composite = CompositeStorage(
        seeded, billing=adapter, customer_ids=MappingCustomerIds.from_dict({"local_a": "prov_a"})
    )
    assert "preview_renewal" in protocol_members(PortalStorage)
    # Not served by a guess (the adapter's method of that name, or the
    # local store's) with customer ids left unmapped: missing, and named here.
    assert _members_the_composite_lacks() == {"preview_renewal"}
    assert not hasattr(composite, "preview_renewal")
    assert adapter.calls == []


def test_records_of_any_kind_come_back_with_portal_ids(seeded: SQLAlchemyStorage) -> None:
    seeded.add_license_key(
        LicenseKey("lk_p", "prov_a", "KEY-P", "Desktop", LicenseKeyStatus.ACTIVE, 1, created_at=T0)
    )
    adapter = BillingOnly(seeded, extra=("list_license_keys",))
    composite = CompositeStorage(
        seeded, billing=adapter, customer_ids=MappingCustomerIds.from_dict({"local_a": "prov_a"})
    )
    assert [(k.id, k.customer_id) for k in composite.list_license_keys("local_a")] == [("lk_p", "local_a")]
    assert adapter.calls == [("list_license_keys", ("prov_a",), {})]


def test_only_an_argument_named_customer_id_is_mapped(seeded: SQLAlchemyStorage) -> None:
    seeded.add_plan(PRO_PLAN)
    adapter = BillingOnly(seeded, extra=tuple(protocol_members(PlanStore)))
    composite = CompositeStorage(
        seeded, billing=adapter, customer_ids=MappingCustomerIds.from_dict({"local_a": "prov_a"})
    )
    assert list(composite.list_plans("Pro")) == [PRO_PLAN]
    assert composite.get_plan("plan_pro") == PRO_PLAN
    with pytest.raises(StateConflict):  # nothing scheduled to clear
        composite.schedule_plan_change("local_a", "sub_prov_a", plan_id=None, quantity=None, now=T0)
    assert composite.schedule_plan_change("nobody", "sub_prov_a", plan_id=None, quantity=None, now=T0) is None
    assert adapter.calls == [
        ("list_plans", ("Pro",), {}),
        ("get_plan", ("plan_pro",), {}),
        ("schedule_plan_change", ("prov_a", "sub_prov_a"), {"plan_id": None, "quantity": None, "now": T0}),
    ]


def test_the_billing_object_must_be_a_billing_store(seeded: SQLAlchemyStorage) -> None:
    with pytest.raises(TypeError, match="lacks the billing methods list_subscriptions, get_subscription"):
        CompositeStorage(seeded, billing=object())


# -- customer ids ----------------------------------------------------------------------


def test_reads_come_back_with_portal_customer_ids(composite: CompositeStorage, adapter: BillingOnly) -> None:
    (subscription,) = composite.list_subscriptions("local_a")
    assert subscription.id == "sub_prov_a"
    assert subscription.customer_id == "local_a"
    assert subscription.payment_method is not None
    assert subscription.payment_method.customer_id == "local_a"
    page = composite.list_invoices("local_a", page=1, per_page=10)
    assert [(i.id, i.customer_id) for i in page.items] == [("in_prov_a", "local_a")]
    invoice = composite.get_invoice("local_a", "in_prov_a")
    assert invoice is not None and invoice.payment_method is not None
    assert invoice.payment_method.customer_id == "local_a"
    assert [m.customer_id for m in composite.list_payment_methods("local_a")] == ["local_a"]
    method = composite.get_payment_method("local_a", "pm_prov_a")
    assert method is not None and method.customer_id == "local_a"
    assert all(args[0] == "prov_a" for _, args, _ in adapter.calls)


def test_reads_stay_scoped_to_the_customer(composite: CompositeStorage) -> None:
    assert composite.get_subscription("local_a", "sub_prov_b") is None
    assert composite.get_invoice("local_a", "in_prov_b") is None
    assert composite.get_payment_method("local_a", "pm_prov_b") is None


def test_a_customer_without_a_provider_account_has_no_billing_records(
    composite: CompositeStorage, adapter: BillingOnly
) -> None:
    # "prov_a" is a provider id, not a portal id: it maps to nothing.
    assert composite.list_subscriptions("prov_a") == []
    assert composite.get_subscription("prov_a", "sub_prov_a") is None
    page = composite.list_invoices("prov_a", page=2, per_page=5)
    assert (list(page.items), page.total, page.page) == ([], 0, 2)
    assert composite.list_payment_methods("prov_a") == []
    assert composite.remove_payment_method("prov_a", "pm_prov_a") is False
    assert composite.cancel_subscription("prov_a", "sub_prov_a", at_period_end=True, now=T0) is None
    with composite.lock_subscription("prov_a", "sub_prov_a") as lock:
        assert lock is None
    assert adapter.calls == []


def test_page_arguments_are_checked(composite: CompositeStorage) -> None:
    with pytest.raises(ValueError, match="page"):
        composite.list_invoices("nobody", page=0, per_page=10)


def test_mapping_from_a_dict_must_be_one_to_one() -> None:
    with pytest.raises(ValueError, match="same provider customer"):
        MappingCustomerIds.from_dict({"a": "cus_1", "b": "cus_1"})
    ids = MappingCustomerIds.from_dict({"a": "cus_1"})
    assert (ids.to_provider("a"), ids.to_portal("cus_1"), ids.to_portal("a")) == ("cus_1", "a", None)


# -- writes and the audit log ------------------------------------------------------------


def test_an_accepted_write_is_audited_locally_once(
    composite: CompositeStorage, seeded: SQLAlchemyStorage, adapter: BillingOnly
) -> None:
    cancelled = composite.cancel_subscription(
        "local_a", "sub_prov_a", at_period_end=True, now=T0, event=_event("subscription.cancelled")
    )
    assert cancelled is not None and cancelled.cancel_at_period_end
    assert cancelled.customer_id == "local_a"
    assert [e.action for e in seeded.list_events("local_a")] == ["subscription.cancelled"]
    assert seeded.list_events("prov_a") == ()
    # The adapter never sees the event: it is not part of the provider's change.
    assert adapter.calls[-1] == (
        "cancel_subscription",
        ("prov_a", "sub_prov_a"),
        {"at_period_end": True, "now": T0},
    )
    kept = composite.undo_cancellation("local_a", "sub_prov_a", now=T0, event=_event("subscription.kept"))
    assert kept is not None and not kept.cancel_at_period_end
    assert [e.action for e in seeded.list_events("local_a")] == [
        "subscription.cancelled",
        "subscription.kept",
    ]


def test_a_refused_write_is_not_audited(composite: CompositeStorage, seeded: SQLAlchemyStorage) -> None:
    assert (
        composite.cancel_subscription(
            "local_a", "sub_prov_b", at_period_end=False, now=T0, event=_event("subscription.cancelled")
        )
        is None
    )
    assert (
        composite.remove_payment_method("local_a", "pm_prov_b", event=_event("payment_method.removed"))
        is False
    )
    assert seeded.list_events("local_a") == ()


def test_payment_methods_are_added_and_set_under_the_providers_id(
    composite: CompositeStorage, seeded: SQLAlchemyStorage
) -> None:
    added = composite.add_payment_method(
        _method("pm_new", "local_a"), event=_event("payment_method.added", subject_id="pm_new")
    )
    assert added.customer_id == "local_a"
    assert seeded.get_payment_method("prov_a", "pm_new") is not None
    updated = composite.set_subscription_payment_method(
        "local_a", "sub_prov_a", "pm_new", event=_event("payment_method.changed")
    )
    assert updated is not None and updated.payment_method is not None
    assert (updated.payment_method.id, updated.payment_method.customer_id) == ("pm_new", "local_a")
    assert [e.subject_id for e in seeded.list_events("local_a")] == ["pm_new", None]


# -- the money path ------------------------------------------------------------------------


def test_lock_events_are_appended_when_the_block_ends(
    composite: CompositeStorage, seeded: SQLAlchemyStorage
) -> None:
    with composite.lock_subscription("local_a", "sub_prov_a") as lock:
        assert lock is not None
        assert lock.subscription.customer_id == "local_a"
        lock.record_event(_event("charge.succeeded"))
        assert seeded.list_events("local_a") == ()
        updated = lock.update_subscription(hold_reason="insufficient_funds")
        assert (updated.customer_id, updated.hold_reason) == ("local_a", "insufficient_funds")
    assert [e.action for e in seeded.list_events("local_a")] == ["charge.succeeded"]


def test_lock_events_are_dropped_when_the_block_raises(
    composite: CompositeStorage, seeded: SQLAlchemyStorage
) -> None:
    def charge_then_fail() -> None:
        with composite.lock_subscription("local_a", "sub_prov_a") as lock:
            assert lock is not None
            lock.record_event(_event("charge.succeeded"))
            raise RuntimeError("provider went away")

    with pytest.raises(RuntimeError):
        charge_then_fail()
    assert seeded.list_events("local_a") == ()


def test_another_customers_subscription_cannot_be_locked(composite: CompositeStorage) -> None:
    with composite.lock_subscription("local_a", "sub_prov_b") as lock:
        assert lock is None


def test_due_subscriptions_come_with_portal_ids(composite: CompositeStorage) -> None:
    due = composite.subscriptions_due(T0 + timedelta(days=40))
    assert sorted((s.id, s.customer_id) for s in due) == [
        ("sub_prov_a", "local_a"),
        ("sub_prov_b", "local_b"),
    ]


def test_an_adapter_without_a_charge_store_has_no_lock_and_no_renewals(seeded: SQLAlchemyStorage) -> None:
    composite = CompositeStorage(seeded, billing=BillingOnly(seeded, charge=False))
    assert composite.backend_of("lock_subscription") is seeded
    with composite.lock_subscription("prov_a", "sub_prov_a") as lock:
        assert lock is None
    assert composite.subscriptions_due(T0 + timedelta(days=40)) == []


def test_records_of_an_unknown_provider_customer_are_refused(seeded: SQLAlchemyStorage) -> None:
    composite = CompositeStorage(
        seeded,
        billing=BillingOnly(seeded),
        customer_ids=MappingCustomerIds(lambda cid: "prov_a", lambda pid: None),
    )
    with pytest.raises(LookupError, match="no portal customer"):
        composite.list_subscriptions("local_a")


def test_replace_keeps_records_that_need_no_mapping(seeded: SQLAlchemyStorage) -> None:
    composite = CompositeStorage(seeded, billing=BillingOnly(seeded))
    (subscription,) = composite.list_subscriptions("prov_a")
    assert dataclasses.asdict(subscription) == dataclasses.asdict(seeded.list_subscriptions("prov_a")[0])


def test_actions_the_adapter_lacks_are_not_offered(seeded: SQLAlchemyStorage) -> None:
    from flask_customer_portal.billing.pausing import pause_choices
    from flask_customer_portal.capabilities import Capabilities, capabilities_of
    from flask_customer_portal.config import PortalConfig
    from flask_customer_portal.contrib.composite import BILLING_CORE

    # The adapter holds the subscriptions but has no pauses and no discounts:
    # the local store has both methods, but not the adapter's subscriptions.
    adapter = BillingOnly(seeded, charge=False)
    adapter._members = set(BILLING_CORE)
    composite = CompositeStorage(seeded, billing=adapter)
    assert not hasattr(composite.billing, "pause_subscription")
    assert callable(seeded.pause_subscription)
    assert not capabilities_of(composite).pause
    assert not capabilities_of(composite).retention_discount
    # Cancelling is core: it reaches the adapter.
    cancelled = composite.cancel_subscription("prov_b", "sub_prov_b", at_period_end=True, now=T0)
    assert cancelled is not None and cancelled.cancel_at_period_end
    assert [name for name, _, _ in adapter.calls] == ["cancel_subscription"]
    # Members that are the local store's own (sessions, customers) are served by it.
    seeded.create_portal_session(dataclasses.replace(portal_session("ses_a", "prov_a"), public_id="pub_a"))
    sessions = composite.list_customer_sessions(
        "prov_a", T0, idle_timeout=timedelta(hours=1), max_age=timedelta(days=1)
    )
    assert [s.public_id for s in sessions] == ["pub_a"]
    assert composite.get_customer("local_a") == seeded.get_customer("local_a") is not None
    assert [name for name, _, _ in adapter.calls] == ["cancel_subscription"]
    # A store that holds everything itself can do what it implements, and
    # the bare adapter, which implements no feature, can do none.
    assert capabilities_of(seeded).pause
    assert capabilities_of(adapter) == Capabilities()

    subscription = seeded.get_subscription("prov_a", "sub_prov_a")
    assert subscription is not None
    config = cast(PortalConfig, SimpleNamespace(allow_pause=True, max_pause_months=3))
    assert pause_choices(
        config, subscription, T0, may_pause=True, pausable_store=capabilities_of(seeded).pause
    ) == (1, 2, 3)
    assert (
        pause_choices(
            config, subscription, T0, may_pause=True, pausable_store=capabilities_of(composite).pause
        )
        == ()
    )
