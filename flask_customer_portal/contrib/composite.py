"""One :class:`~flask_customer_portal.storage.PortalStorage` made of two stores.

A merchant whose subscriptions live at a payment company (Stripe, Dodo
Payments …) still keeps customers, sign-in links, sessions, the audit log and
licence keys in their own database. :class:`CompositeStorage` puts the two
together::

    storage = CompositeStorage(
        SQLAlchemyStorage(db),
        billing=StripeBillingStore(client),
        customer_ids=MappingCustomerIds(lookup, reverse_lookup),
    )
    CustomerPortal(app, storage=storage, payments=StripePaymentProvider(client))

What goes where:

* customers and everything about access — sign-in links, sessions, the
  audit log (:class:`~flask_customer_portal.storage.CustomerStore` and
  :class:`~flask_customer_portal.storage.AccessStore`) — always come from
  ``local``;
* :class:`~flask_customer_portal.storage.BillingStore` (subscriptions,
  invoices, payment methods, cancellation) always comes from ``billing``,
  and so does :class:`~flask_customer_portal.storage.ChargeStore` (the
  subscription lock, renewals) when ``billing`` implements it;
* the lock that holds across processes
  (:class:`~flask_customer_portal.storage.ProviderLockStore`) is always
  ``local``'s: a payment company's API has none, the merchant's database
  does. :meth:`CompositeStorage.lock_subscription` takes it around the
  billing back end's own lock;
* any other member of :class:`~flask_customer_portal.storage.PortalStorage`
  — licence keys, and whatever the protocol gains later — comes from
  ``billing`` if the adapter has a method of that name, else from ``local``.
  An adapter says what it serves by implementing it (the Stripe adapter
  leaves licence keys local; an adapter for a provider that issues licence
  keys can serve them).

A billing method the adapter does not have falls back to ``local``, which
holds no records of the provider's subscriptions and so answers "not found"
(``None`` / empty): a gap in an adapter shows up as a missing record, never
as another customer's data.

Customer ids
    The portal knows customers by their ``local`` id; the provider knows them
    by its own. ``customer_ids`` (a :class:`CustomerIdMap`) turns one into the
    other: on the way in every ``customer_id`` argument is mapped to the
    provider's id, on the way out every record's ``customer_id`` is mapped
    back, so views and templates only ever see portal ids. The default,
    :class:`SameCustomerIds`, is for portals whose customer ids *are* the
    provider's (``cus_…``); :class:`MappingCustomerIds` takes two functions,
    e.g. lookups on a ``stripe_customer_id`` column. A portal customer
    without a provider account has no billing records at all.

Audit events
    There is no transaction that spans a payment company and a database.
    A billing write is made at the provider without its ``event``; once the
    provider accepted it, the event is appended to the ``local`` audit log.
    If the provider refuses (raises, or answers ``None``), nothing is
    recorded. Inside :meth:`lock_subscription`, events are buffered and
    appended when the ``with`` block ends normally, dropped if it raises —
    as a database transaction would.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from ..capabilities import Capabilities
from ..storage import (
    AccessStore,
    AuditEvent,
    BillingStore,
    ChargeAttempt,
    ChargeStore,
    Customer,
    CustomerStore,
    Invoice,
    Page,
    PaymentMethod,
    PortalStorage,
    ProviderLockStore,
    ProviderSubscriptionLock,
    Subscription,
    SubscriptionLock,
)

__all__ = [
    "BILLING_CORE",
    "CompositeStorage",
    "CustomerIdMap",
    "MappingCustomerIds",
    "SameCustomerIds",
    "local_only_members",
    "protocol_members",
]

R = TypeVar("R")


def protocol_members(*protocols: type) -> frozenset[str]:
    """The public member names of ``protocols`` and the protocols they extend,
    as they are now."""
    names: set[str] = set()
    for protocol in protocols:
        for klass in protocol.__mro__:
            if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
                continue
            names.update(name for name in vars(klass) if not name.startswith("_"))
    return frozenset(names)


def local_only_members() -> frozenset[str]:
    """Members that always come from the local store: customers, links,
    sessions, the audit log and the lock that holds across processes."""
    return protocol_members(CustomerStore, AccessStore, ProviderLockStore)


#: What every billing adapter must have: the billing pages' reads and
#: changes. Members :class:`~flask_customer_portal.storage.BillingStore`
#: gained since (pausing, discounts, …) are optional: without them the
#: composite answers from ``local``, i.e. "not found".
BILLING_CORE = (
    "list_subscriptions",
    "get_subscription",
    "list_invoices",
    "get_invoice",
    "list_payment_methods",
    "get_payment_method",
    "add_payment_method",
    "remove_payment_method",
    "set_subscription_payment_method",
    "cancel_subscription",
    "undo_cancellation",
)


@runtime_checkable
class CustomerIdMap(Protocol):
    """Turns a portal customer id into the provider's, and back."""

    def to_provider(self, customer_id: str) -> str | None:
        """The provider's id of this portal customer; ``None`` if they have
        no account at the provider (then they have no billing records)."""

    def to_portal(self, provider_customer_id: str) -> str | None:
        """The portal customer of this provider id; ``None`` if none."""


class SameCustomerIds:
    """Portal customer ids are the provider's ids."""

    def to_provider(self, customer_id: str) -> str | None:
        return customer_id

    def to_portal(self, provider_customer_id: str) -> str | None:
        return provider_customer_id

    def __repr__(self) -> str:
        return "SameCustomerIds()"


class MappingCustomerIds:
    """Ids looked up by two functions, e.g. on a column of the merchant's
    customer table::

        MappingCustomerIds(
            to_provider=lambda cid: db.session.scalar(select(User.stripe_id).where(User.id == cid)),
            to_portal=lambda sid: db.session.scalar(select(User.id).where(User.stripe_id == sid)),
        )

    or, for a fixed set, ``MappingCustomerIds.from_dict({"cus_local": "cus_Stripe…"})``.
    """

    def __init__(
        self,
        to_provider: Callable[[str], str | None],
        to_portal: Callable[[str], str | None],
    ) -> None:
        self._to_provider = to_provider
        self._to_portal = to_portal

    @classmethod
    def from_dict(cls, portal_to_provider: dict[str, str]) -> MappingCustomerIds:
        forward = dict(portal_to_provider)
        backward = {provider: portal for portal, provider in forward.items()}
        if len(backward) != len(forward):
            raise ValueError("two portal customers map to the same provider customer")
        return cls(forward.get, backward.get)

    def to_provider(self, customer_id: str) -> str | None:
        return self._to_provider(customer_id)

    def to_portal(self, provider_customer_id: str) -> str | None:
        return self._to_portal(provider_customer_id)

    def __repr__(self) -> str:
        return "MappingCustomerIds(...)"


def _is_record(value: object) -> bool:
    """A storage record that belongs to a customer (a subscription, an
    invoice, a licence key …), whatever its type: records the protocol
    gains later are mapped too. Audit events are made with portal ids."""
    return (
        dataclasses.is_dataclass(value)
        and not isinstance(value, type | AuditEvent)
        and isinstance(getattr(value, "customer_id", None), str)
    )


class CompositeStorage:
    """Billing from ``billing``, everything else from ``local``; see the
    module's description.

    :param local: a complete store (usually
        :class:`~flask_customer_portal.contrib.sqla.SQLAlchemyStorage`).
    :param billing: the payment company's adapter: has at least the
        methods in :data:`BILLING_CORE` (of
        :class:`~flask_customer_portal.storage.BillingStore`) and, if the
        portal's money path (paying arrears, renewals) should run against
        it, :class:`~flask_customer_portal.storage.ChargeStore`.
    :param customer_ids: how portal customer ids map to the provider's.
    """

    def __init__(
        self,
        local: PortalStorage,
        *,
        billing: object,
        customer_ids: CustomerIdMap | None = None,
    ) -> None:
        missing = [name for name in BILLING_CORE if not callable(getattr(billing, name, None))]
        if missing:
            raise TypeError(f"{type(billing).__name__} lacks the billing methods {', '.join(missing)}")
        self.local = local
        self.billing = cast(BillingStore, billing)
        self.customer_ids: CustomerIdMap = customer_ids or SameCustomerIds()

    def __repr__(self) -> str:
        return f"CompositeStorage({self.local!r}, billing={self.billing!r})"

    # -- routing -------------------------------------------------------------------

    @property
    def _billing_charges(self) -> bool:
        """``True`` if the billing back end runs the money path: it has the
        subscription lock (members the protocol gained later are optional)."""
        billing = self.billing
        return callable(getattr(billing, "lock_subscription", None)) and callable(
            getattr(billing, "subscriptions_due", None)
        )

    def backend_of(self, name: str) -> object:
        """The store that serves the protocol member ``name``."""
        if name in local_only_members() or not hasattr(self.billing, name):
            return self.local
        if name in protocol_members(ChargeStore) and not self._billing_charges:
            return self.local
        return self.billing

    def supports(self, name: str) -> bool:
        """Whether the protocol member ``name`` can act on the billing
        adapter's subscriptions: it is served by the store that holds them
        (a pause or a retention discount the adapter lacks would otherwise
        reach the local store, which does not know the subscription).
        The portal offers no action whose member is unsupported. Members
        that are always the local store's (customers, sessions) are supported."""
        if name in local_only_members():
            return callable(getattr(self.local, name, None))
        return self.backend_of(name) is self.backend_of("get_subscription")

    def portal_capabilities(self) -> Capabilities:
        """What the portal can do with the adapter's subscriptions: each
        feature whose members are all served by the store that holds them
        (a pause the adapter lacks would otherwise reach the local store,
        which does not know the subscription)."""

        def served(*names: str) -> bool:
            return all(self.supports(name) for name in names)

        charge = served("lock_subscription", "subscriptions_due")
        return Capabilities(
            pause=served("pause_subscription", "unpause_subscription"),
            retention_discount=served("set_retention_discount"),
            charge=charge,
            plans=served("list_plans", "get_plan", "schedule_plan_change"),
            plan_settlement=charge and served("plan_changes_to_settle"),
            webhook_claims=served("claim_webhook_event", "finish_webhook_event", "release_webhook_event"),
            add_customer=served("add_customer"),
            erase=served("erase_customer"),
            prune=served("prune_expired"),
            start_session_at_once=served("start_portal_session"),
        )

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this class does not define: licence keys,
        # access, and protocol members added after it was written. Those the
        # adapter serves are called with their ``customer_id`` argument (by
        # that name in the adapter's signature) mapped to the provider's,
        # their records mapped back and their ``event`` appended locally.
        if name.startswith("_") or name in ("local", "billing", "customer_ids"):
            raise AttributeError(name)
        backend = self.backend_of(name)
        attribute = getattr(backend, name)
        if backend is self.local or not callable(attribute):
            return attribute
        try:
            signature: inspect.Signature | None = inspect.signature(attribute)
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            signature = None

        def call(*args: Any, **kwargs: Any) -> Any:
            event = kwargs.pop("event", None)
            if signature is not None and "customer_id" in signature.parameters:
                bound = signature.bind(*args, **kwargs)
                provider_id = self._provider_id(bound.arguments["customer_id"])
                if provider_id is None:
                    return None
                bound.arguments["customer_id"] = provider_id
                args, kwargs = bound.args, bound.kwargs
            return self._recorded(event, self._to_portal(attribute(*args, **kwargs)))

        return call

    def _provider_id(self, customer_id: str) -> str | None:
        return self.customer_ids.to_provider(customer_id)

    def _portal_id(self, provider_customer_id: str) -> str | None:
        return self.customer_ids.to_portal(provider_customer_id)

    def _to_portal(self, value: R) -> R:
        """``value`` (a record, a list or a page of them) with the
        provider's customer ids replaced by the portal's."""
        if _is_record(value):
            record: Any = value
            changes: dict[str, Any] = {}
            portal_id = self._portal_id(record.customer_id)
            if portal_id is None:
                raise LookupError(f"no portal customer for provider customer {record.customer_id!r}")
            if portal_id != record.customer_id:
                changes["customer_id"] = portal_id
            nested = getattr(record, "payment_method", None)
            if nested is not None:
                mapped = self._to_portal(nested)
                if mapped is not nested:
                    changes["payment_method"] = mapped
            return cast(R, dataclasses.replace(record, **changes)) if changes else value
        if isinstance(value, Page):
            items = [self._to_portal(item) for item in value.items]
            return cast(R, dataclasses.replace(value, items=items))
        if isinstance(value, list | tuple):
            return cast(R, type(value)(self._to_portal(item) for item in value))
        return value

    def _to_provider(self, value: R) -> R:
        if _is_record(value):
            record: Any = value
            provider_id = self._provider_id(record.customer_id)
            if provider_id is None:
                raise LookupError(f"customer {record.customer_id!r} has no account at the billing provider")
            if provider_id != record.customer_id:
                return cast(R, dataclasses.replace(record, customer_id=provider_id))
        return value

    def _recorded(self, event: AuditEvent | None, result: R) -> R:
        """Append ``event`` to the local audit log once the provider accepted
        the change (``result`` is neither ``None`` nor ``False``)."""
        if event is not None and result is not None and result is not False:
            self.local.record_event(event)
        return result

    # -- billing: reads ------------------------------------------------------------

    def list_subscriptions(self, customer_id: str) -> Sequence[Subscription]:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return []
        return self._to_portal(list(self.billing.list_subscriptions(provider_id)))

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        return self._to_portal(self.billing.get_subscription(provider_id, subscription_id))

    def list_invoices(self, customer_id: str, *, page: int, per_page: int) -> Page[Invoice]:
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page start at 1")
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return Page(items=[], page=page, per_page=per_page, total=0)
        return self._to_portal(self.billing.list_invoices(provider_id, page=page, per_page=per_page))

    def get_invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        return self._to_portal(self.billing.get_invoice(provider_id, invoice_id))

    def list_payment_methods(self, customer_id: str) -> Sequence[PaymentMethod]:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return []
        return self._to_portal(list(self.billing.list_payment_methods(provider_id)))

    def get_payment_method(self, customer_id: str, payment_method_id: str) -> PaymentMethod | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        return self._to_portal(self.billing.get_payment_method(provider_id, payment_method_id))

    # -- billing: writes -----------------------------------------------------------

    def add_payment_method(
        self, payment_method: PaymentMethod, *, event: AuditEvent | None = None
    ) -> PaymentMethod:
        saved = self._to_portal(self.billing.add_payment_method(self._to_provider(payment_method)))
        if event is not None and saved.id != payment_method.id and event.subject_id == payment_method.id:
            # The provider names the method itself (Stripe: its ``pm_…`` id).
            event = dataclasses.replace(event, subject_id=saved.id)
        return self._recorded(event, saved)

    def remove_payment_method(
        self, customer_id: str, payment_method_id: str, *, event: AuditEvent | None = None
    ) -> bool:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return False
        return self._recorded(event, self.billing.remove_payment_method(provider_id, payment_method_id))

    def set_subscription_payment_method(
        self,
        customer_id: str,
        subscription_id: str,
        payment_method_id: str,
        *,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        billing = self.billing
        updated = billing.set_subscription_payment_method(provider_id, subscription_id, payment_method_id)
        return self._recorded(event, self._to_portal(updated))

    def cancel_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        at_period_end: bool,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        cancelled = self.billing.cancel_subscription(
            provider_id, subscription_id, at_period_end=at_period_end, now=now
        )
        return self._recorded(event, self._to_portal(cancelled))

    def undo_cancellation(
        self, customer_id: str, subscription_id: str, *, now: datetime, event: AuditEvent | None = None
    ) -> Subscription | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        kept = self.billing.undo_cancellation(provider_id, subscription_id, now=now)
        return self._recorded(event, self._to_portal(kept))

    # -- billing: the money path ---------------------------------------------------

    def lock_subscription(
        self, customer_id: str, subscription_id: str
    ) -> AbstractContextManager[SubscriptionLock | None]:
        """The billing back end's lock (when it implements
        :class:`~flask_customer_portal.storage.ChargeStore`), seen with
        portal customer ids, its audit events appended to the local log
        when the block ends normally. Without one, the subscription cannot
        be locked here: the context value is ``None`` (not found).

        A payment company's lock (Stripe's) is held inside one process
        only, so the local store's
        :meth:`lock_provider_subscription` is taken first when it has one:
        two workers or servers paying for the same subscription then take
        turns, as on the local store, and the block's audit events are
        written in that lock's transaction."""
        return self._lock(customer_id, subscription_id)

    @contextmanager
    def _lock(self, customer_id: str, subscription_id: str) -> Iterator[SubscriptionLock | None]:
        provider_id = self._provider_id(customer_id)
        if provider_id is None or not self._billing_charges:
            yield None
            return
        events: list[AuditEvent] = []
        held: AbstractContextManager[ProviderSubscriptionLock | None] = nullcontext()
        locker = getattr(self.local, "lock_provider_subscription", None)
        if callable(locker):  # a local store made before the protocol had it has none
            held = locker(customer_id, subscription_id)
        with held as across_processes:
            with cast(ChargeStore, self.billing).lock_subscription(provider_id, subscription_id) as lock:
                yield None if lock is None else _MappedLock(self, lock, events)
            for event in events:
                (across_processes or self.local).record_event(event)

    def lock_provider_subscription(
        self, customer_id: str, subscription_id: str
    ) -> AbstractContextManager[ProviderSubscriptionLock]:
        """The local store's lock, in the merchant's database (portal
        customer id, the provider's subscription id)."""
        return self.local.lock_provider_subscription(customer_id, subscription_id)

    def subscriptions_due(self, now: datetime, *, limit: int = 100) -> Sequence[Subscription]:
        """The billing back end's due subscriptions (for portal customers
        only); none when the provider renews subscriptions itself."""
        if not self._billing_charges:
            return []
        due = []
        for subscription in cast(ChargeStore, self.billing).subscriptions_due(now, limit=limit):
            if self._portal_id(subscription.customer_id) is not None:
                due.append(self._to_portal(subscription))
        return due

    # -- always local ------------------------------------------------------------
    # Customers and access come through ``__getattr__``; these two are spelt
    # out because every signed-in request uses them.

    def get_customer(self, customer_id: str) -> Customer | None:
        return self.local.get_customer(customer_id)

    def record_event(self, event: AuditEvent) -> None:
        self.local.record_event(event)


class _MappedLock:
    """A billing back end's :class:`SubscriptionLock` seen with portal
    customer ids; audit events go to ``events`` (appended to the local log
    by :meth:`CompositeStorage._lock` when the block ends normally)."""

    def __init__(self, owner: CompositeStorage, lock: SubscriptionLock, events: list[AuditEvent]) -> None:
        self._owner = owner
        self._lock = lock
        self._events = events

    @property
    def subscription(self) -> Subscription:
        return self._owner._to_portal(self._lock.subscription)

    def open_invoices(self) -> Sequence[Invoice]:
        return self._owner._to_portal(list(self._lock.open_invoices()))

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        return self._owner._to_portal(self._lock.get_invoice(invoice_id))

    def issue_invoice(self, invoice: Invoice) -> Invoice:
        return self._owner._to_portal(self._lock.issue_invoice(self._owner._to_provider(invoice)))

    def attempts(self, invoice_id: str) -> Sequence[ChargeAttempt]:
        return self._owner._to_portal(list(self._lock.attempts(invoice_id)))

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        self._lock.save_attempt(self._owner._to_provider(attempt))

    def mark_invoice_paid(
        self, invoice_id: str, *, paid_at: datetime, payment_reference: str, payment_method_id: str | None
    ) -> Invoice:
        return self._owner._to_portal(
            self._lock.mark_invoice_paid(
                invoice_id,
                paid_at=paid_at,
                payment_reference=payment_reference,
                payment_method_id=payment_method_id,
            )
        )

    def update_subscription(self, **changes: Any) -> Subscription:
        return self._owner._to_portal(self._lock.update_subscription(**changes))

    def __getattr__(self, name: str) -> Any:
        # Lock methods added to the protocol later: called as they are,
        # records mapped back to portal customer ids.
        if name.startswith("_"):
            raise AttributeError(name)
        attribute = getattr(self._lock, name)
        if not callable(attribute):
            return self._owner._to_portal(attribute)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._owner._to_portal(attribute(*args, **kwargs))

        return call

    def record_event(self, event: AuditEvent) -> None:
        self._events.append(event)
