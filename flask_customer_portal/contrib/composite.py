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
  does. :meth:`CompositeStorage.lock_subscription` holds it for the whole
  of the billing back end's block, and without it the money path is
  refused, never run unlocked (:attr:`CompositeStorage.locks_across_processes`);
* the rest — pauses, retention discounts, the plan catalogue, billing
  details, licence keys, resumes and settlements of the money path — comes
  from ``billing`` when the adapter implements it, else from ``local``.
  Each is a feature with a protocol of its own
  (:mod:`flask_customer_portal.capabilities`, e.g.
  :class:`~flask_customer_portal.capabilities.PausesSubscriptions`): the
  adapter serves it when it has every method of that protocol; licence
  keys are served method by method. What the adapter has is looked up once,
  when the composite is made, and :meth:`CompositeStorage.portal_capabilities`
  tells the portal what it found (the Stripe adapter leaves licence keys
  local; an adapter for a provider that issues licence keys can serve them).

A feature the adapter does not have is ``local``'s, which holds no records
of the provider's subscriptions and so answers "not found" (``None`` /
empty): a gap in an adapter shows up as a missing record, never as another
customer's data, and the portal offers no action of that feature.

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
import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Protocol, TypeVar, cast

from ..capabilities import (
    Capabilities,
    ChangesPlans,
    ChangesPlansAtProvider,
    ChargesSubscriptions,
    GrantsRetentionDiscounts,
    KeepsDefaultPaymentMethod,
    LinksInvoicePdfs,
    LocksInvoices,
    PausesSubscriptions,
    ProviderPlanPreview,
    ProviderPromotionCode,
    SettlesPlanChanges,
    TakesProviderPlanChangeCodes,
    TakesProviderPromotionCodes,
    capabilities_of,
    implements,
)
from ..storage import (
    AccessStore,
    AuditEvent,
    BillingDetails,
    BillingDetailsStore,
    BillingStore,
    ChargeStore,
    CustomerStore,
    Invoice,
    LicenseKey,
    LicenseKeyInstance,
    LicenseKeyStore,
    MailQueue,
    OutboxMail,
    Page,
    PaymentMethod,
    Plan,
    PlanChange,
    PlanStore,
    PortalStorage,
    ProviderLockStore,
    StateConflict,
    Subscription,
    SubscriptionLock,
)
from ._composite_ids import (
    CustomerIdMap,
    MappedLock,
    MappingCustomerIds,
    SameCustomerIds,
    with_portal_ids,
    with_provider_id,
)
from ._composite_invoices import InvoiceLockMembers
from ._composite_local import LocalMembers

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

logger = logging.getLogger("flask_customer_portal")


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


# The parts of the storage protocols an adapter may serve beyond
# BILLING_CORE that have no capability of their own. Like the capability
# protocols, each lists its methods by name only; tests/test_capabilities.py
# checks that the names are the storage protocols' own.


class _ReadsInvoiceBatches(Protocol):
    def list_invoices_after(self, *args: object, **kwargs: object) -> object: ...


class _ResumesSubscriptions(Protocol):
    def subscriptions_to_resume(self, *args: object, **kwargs: object) -> object: ...


class _ListsLicenseKeys(Protocol):
    def list_license_keys(self, *args: object, **kwargs: object) -> object: ...


class _CountsLicenseKeys(Protocol):
    def count_license_keys(self, *args: object, **kwargs: object) -> object: ...


class _FindsLicenseKeys(Protocol):
    def get_license_key(self, *args: object, **kwargs: object) -> object: ...


class _ListsLicenseKeyInstances(Protocol):
    def list_license_key_instances(self, *args: object, **kwargs: object) -> object: ...


class _DeactivatesLicenseKeyInstances(Protocol):
    def deactivate_license_key_instance(self, *args: object, **kwargs: object) -> object: ...


#: What an adapter may serve beyond BILLING_CORE, each served when the
#: adapter has all of its methods.
_OPTIONAL_FEATURES: tuple[type, ...] = (
    _ReadsInvoiceBatches,
    KeepsDefaultPaymentMethod,
    PausesSubscriptions,
    GrantsRetentionDiscounts,
    ChargesSubscriptions,
    _ResumesSubscriptions,
    SettlesPlanChanges,
    ChangesPlans,
    BillingDetailsStore,
    _ListsLicenseKeys,
    _CountsLicenseKeys,
    _FindsLicenseKeys,
    _ListsLicenseKeyInstances,
    _DeactivatesLicenseKeyInstances,
)

#: Features that run under the adapter's subscription lock: without its
#: money path they are the local store's (which has nothing of them).
_ON_THE_MONEY_PATH = frozenset({_ResumesSubscriptions, SettlesPlanChanges})


class _BillingAdapter(
    BillingStore,
    ChargeStore,
    PlanStore,
    BillingDetailsStore,
    LicenseKeyStore,
    LinksInvoicePdfs,
    KeepsDefaultPaymentMethod,
    Protocol,
):
    """Every method the composite may call on the adapter; each call is
    made only if the adapter was found to have it."""


class CompositeStorage(LocalMembers, InvoiceLockMembers):
    """Billing from ``billing``, everything else from ``local``; see the
    module's description.

    Every member of :class:`~flask_customer_portal.storage.PortalStorage`
    is a method here that calls one of the two; a member the protocol gains
    is added here too (``tests/test_composite_storage.py`` checks that none
    is missing).

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
        # Typed with every method it may have; _serves() says which it has.
        self.billing = cast(_BillingAdapter, billing)
        self.customer_ids: CustomerIdMap = customer_ids or SameCustomerIds()
        served = {feature for feature in _OPTIONAL_FEATURES if implements(billing, feature)}
        if ChargesSubscriptions not in served:
            served -= _ON_THE_MONEY_PATH
        self._served = frozenset(served)
        self._billing_members = frozenset(BILLING_CORE) | protocol_members(*served)
        local_features = capabilities_of(local)
        self._capabilities = Capabilities(
            pause=self._serves(PausesSubscriptions),
            retention_discount=self._serves(GrantsRetentionDiscounts),
            charge=self._serves(ChargesSubscriptions),
            plans=self._serves(ChangesPlans),
            plan_settlement=self._serves(SettlesPlanChanges),
            webhook_claims=local_features.webhook_claims,
            add_customer=local_features.add_customer,
            erase=local_features.erase,
            prune=local_features.prune,
            start_session_at_once=local_features.start_session_at_once,
            provider_lock=local_features.provider_lock,
            invoice_pdf_links=implements(billing, LinksInvoicePdfs),
            webhook_pruning=local_features.webhook_pruning,
            mail_outbox=local_features.mail_outbox,
            default_payment_method=self._serves(KeepsDefaultPaymentMethod),
            provider_plan_change=implements(billing, ChangesPlansAtProvider)
            and local_features.provider_lock
            and local_features.plans,
            provider_plan_change_codes=implements(billing, TakesProviderPlanChangeCodes)
            and local_features.provider_lock,
            provider_promotion_codes=implements(billing, TakesProviderPromotionCodes)
            and local_features.provider_lock,
            invoice_lock=implements(billing, LocksInvoices) and local_features.provider_lock,
        )

    def __repr__(self) -> str:
        return f"CompositeStorage({self.local!r}, billing={self.billing!r})"

    # -- routing -------------------------------------------------------------------

    def _serves(self, feature: type) -> bool:
        """Whether the adapter serves ``feature`` (one of ``_OPTIONAL_FEATURES``)."""
        return feature in self._served

    @property
    def locks_across_processes(self) -> bool:
        """Whether the local store has the lock that holds across processes
        (:class:`~flask_customer_portal.storage.ProviderLockStore`, e.g. the
        SQLAlchemy store's). Without it the money path over the billing back
        end is refused (:meth:`lock_subscription` raises
        :class:`~flask_customer_portal.storage.StateConflict`), and a portal
        in live mode refuses to start
        (:func:`~flask_customer_portal.production.check_money_lock`)."""
        return self._capabilities.provider_lock

    def backend_of(self, name: str) -> object:
        """The store that serves the protocol member ``name``."""
        return self.billing if name in self._billing_members else self.local

    def portal_capabilities(self) -> Capabilities:
        """What the portal can do with the adapter's subscriptions: the
        features the adapter serves itself (a pause the adapter lacks would
        reach the local store, which does not know the subscription), and
        the local store's own (webhook claims, erasure, pruning …)."""
        return self._capabilities

    # -- customer ids ----------------------------------------------------------------

    def _provider_id(self, customer_id: str) -> str | None:
        return self.customer_ids.to_provider(customer_id)

    def _portal_id(self, provider_customer_id: str) -> str | None:
        return self.customer_ids.to_portal(provider_customer_id)

    def _to_portal(self, value: R) -> R:
        """``value`` (a record, a list or a page of them) with the
        provider's customer ids replaced by the portal's."""
        return with_portal_ids(value, self.customer_ids)

    def _to_provider(self, value: R) -> R:
        return with_provider_id(value, self.customer_ids)

    def _recorded(self, event: AuditEvent | None, result: R, mail: Sequence[OutboxMail] = ()) -> R:
        """Append ``event`` to the local audit log once the provider accepted
        the change (``result`` is neither ``None`` nor ``False``), with the
        emails ``mail`` in the same local transaction: the provider's
        change cannot share it, but the record of it and its emails are
        written together or not at all."""
        if result is None or result is False:
            return result
        if mail:
            self.enqueue_mail(mail, events=() if event is None else (event,))
        elif event is not None:
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

    def list_invoices_after(
        self, customer_id: str, after: Invoice | None, *, limit: int, with_lines: bool = False
    ) -> Sequence[Invoice]:
        if not self._serves(_ReadsInvoiceBatches):
            return self.local.list_invoices_after(customer_id, after, limit=limit, with_lines=with_lines)
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return []
        found = self.billing.list_invoices_after(provider_id, after, limit=limit, with_lines=with_lines)
        return self._to_portal(list(found))

    def get_invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        return self._to_portal(self.billing.get_invoice(provider_id, invoice_id))

    def invoice_pdf_url(self, customer_id: str, invoice_id: str) -> str | None:
        """The adapter's own PDF of the invoice (``invoice_pdf_links``)."""
        provider_id = self._provider_id(customer_id)
        if provider_id is None or not self._capabilities.invoice_pdf_links:
            return None
        return cast(LinksInvoicePdfs, self.billing).invoice_pdf_url(provider_id, invoice_id)

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

    def set_default_payment_method(
        self, customer_id: str, payment_method_id: str, *, event: AuditEvent | None = None
    ) -> PaymentMethod | None:
        """The adapter's (``default_payment_method``); without it, ``None``:
        the local store has none of the provider's methods."""
        provider_id = self._provider_id(customer_id)
        if provider_id is None or not self._serves(KeepsDefaultPaymentMethod):
            return None
        updated = self.billing.set_default_payment_method(provider_id, payment_method_id)
        return self._recorded(event, self._to_portal(updated))

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
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        cancelled = self.billing.cancel_subscription(
            provider_id, subscription_id, at_period_end=at_period_end, now=now
        )
        return self._recorded(event, self._to_portal(cancelled), mail)

    def undo_cancellation(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        now: datetime,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        kept = self.billing.undo_cancellation(provider_id, subscription_id, now=now)
        return self._recorded(event, self._to_portal(kept), mail)

    def pause_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        now: datetime,
        resumes_at: datetime,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        if not self._serves(PausesSubscriptions):
            return self.local.pause_subscription(
                customer_id, subscription_id, now=now, resumes_at=resumes_at, event=event, mail=mail
            )
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        paused = self.billing.pause_subscription(provider_id, subscription_id, now=now, resumes_at=resumes_at)
        return self._recorded(event, self._to_portal(paused), mail)

    def unpause_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        resumed_at: datetime,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        if not self._serves(PausesSubscriptions):
            return self.local.unpause_subscription(
                customer_id, subscription_id, resumed_at=resumed_at, event=event, mail=mail
            )
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        resumed = self.billing.unpause_subscription(provider_id, subscription_id, resumed_at=resumed_at)
        return self._recorded(event, self._to_portal(resumed), mail)

    def set_retention_discount(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        percent: int,
        renewals: int,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        if not self._serves(GrantsRetentionDiscounts):
            return self.local.set_retention_discount(
                customer_id, subscription_id, percent=percent, renewals=renewals, event=event
            )
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        discounted = self.billing.set_retention_discount(
            provider_id, subscription_id, percent=percent, renewals=renewals
        )
        return self._recorded(event, self._to_portal(discounted))

    # -- billing: the money path ---------------------------------------------------

    def lock_subscription(
        self, customer_id: str, subscription_id: str
    ) -> AbstractContextManager[SubscriptionLock | None]:
        """The billing back end's view of the subscription for the money
        path (when it implements
        :class:`~flask_customer_portal.storage.ChargeStore`), seen with
        portal customer ids, held still by the local store's
        :meth:`lock_provider_subscription`. Without a billing money path the
        context value is ``None`` (not found).

        A payment company's API has no lock, so the local store's lock — in
        the merchant's database, keyed by the customer and the provider's
        subscription id — is taken first and held until the block ends: the
        reads, the checks, the charge (with its idempotency key) and what is
        recorded all happen under it, and two workers or servers paying for
        the same subscription take turns, as on the local store. The
        block's audit events and emails are written in that lock's
        transaction when the block ends normally, and dropped if it raises. A local store without
        the lock (:attr:`locks_across_processes` false) gets
        :class:`~flask_customer_portal.storage.StateConflict` instead: the
        money path never runs without it."""
        return self._lock(customer_id, subscription_id)

    @contextmanager
    def _lock(self, customer_id: str, subscription_id: str) -> Iterator[SubscriptionLock | None]:
        provider_id = self._provider_id(customer_id)
        if provider_id is None or not self._serves(ChargesSubscriptions):
            yield None
            return
        if not self._capabilities.provider_lock:
            logger.error(
                "%s has no lock_provider_subscription: the money path of subscription %s was refused",
                type(self.local).__name__,
                subscription_id,
            )
            raise StateConflict(f"subscription {subscription_id!r} cannot be locked by this store")
        events: list[AuditEvent] = []
        mails: list[OutboxMail] = []
        with self.local.lock_provider_subscription(customer_id, subscription_id) as across_processes:
            queue = across_processes if isinstance(across_processes, MailQueue) else None
            with self.billing.lock_subscription(provider_id, subscription_id) as lock:
                yield (
                    None
                    if lock is None
                    else MappedLock.around(lock, self.customer_ids, events, None if queue is None else mails)
                )
            for event in events:
                across_processes.record_event(event)
            for mail in mails:
                cast(MailQueue, queue).enqueue_mail(mail)

    def subscriptions_due(self, now: datetime, *, limit: int = 100) -> Sequence[Subscription]:
        """The billing back end's due subscriptions (for portal customers
        only); none when the provider renews subscriptions itself."""
        if not self._serves(ChargesSubscriptions):
            return []
        due = []
        for subscription in self.billing.subscriptions_due(now, limit=limit):
            if self._portal_id(subscription.customer_id) is not None:
                due.append(self._to_portal(subscription))
        return due

    def subscriptions_to_resume(self, now: datetime, *, limit: int = 100) -> Sequence[Subscription]:
        if not self._serves(_ResumesSubscriptions):
            return self.local.subscriptions_to_resume(now, limit=limit)
        return self._to_portal(list(self.billing.subscriptions_to_resume(now, limit=limit)))

    def plan_changes_to_settle(
        self, *, limit: int = 100, customer_id: str | None = None
    ) -> Sequence[PlanChange]:
        if not self._serves(SettlesPlanChanges):
            return self.local.plan_changes_to_settle(limit=limit, customer_id=customer_id)
        provider_id = None
        if customer_id is not None:
            provider_id = self._provider_id(customer_id)
            if provider_id is None:
                return []
        return self._to_portal(
            list(self.billing.plan_changes_to_settle(limit=limit, customer_id=provider_id))
        )

    # -- plans ---------------------------------------------------------------------

    def list_plans(self, product_name: str) -> Sequence[Plan]:
        if not self._serves(ChangesPlans):
            return self.local.list_plans(product_name)
        return self.billing.list_plans(product_name)

    def get_plan(self, plan_id: str) -> Plan | None:
        if not self._serves(ChangesPlans):
            return self.local.get_plan(plan_id)
        return self.billing.get_plan(plan_id)

    def preview_provider_plan_change(
        self, customer_id: str, subscription_id: str, *, plan_id: str, quantity: int, at: datetime
    ) -> ProviderPlanPreview | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None or not self._capabilities.provider_plan_change:
            return None
        return cast(ChangesPlansAtProvider, self.billing).preview_provider_plan_change(
            provider_id, subscription_id, plan_id=plan_id, quantity=quantity, at=at
        )

    def make_provider_plan_change(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        plan_id: str,
        quantity: int,
        at: datetime,
        idempotency_key: str,
    ) -> ProviderPlanPreview | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None or not self._capabilities.provider_plan_change:
            return None
        return cast(ChangesPlansAtProvider, self.billing).make_provider_plan_change(
            provider_id,
            subscription_id,
            plan_id=plan_id,
            quantity=quantity,
            at=at,
            idempotency_key=idempotency_key,
        )

    # -- the payment company's promotion codes ---------------------------------------

    def _codes(self, customer_id: str) -> tuple[TakesProviderPlanChangeCodes, str] | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None or not self._capabilities.provider_plan_change_codes:
            return None
        return cast(TakesProviderPlanChangeCodes, self.billing), provider_id

    def find_provider_promotion_code(self, customer_id: str, code: str) -> ProviderPromotionCode | None:
        found = self._codes(customer_id)
        return None if found is None else found[0].find_provider_promotion_code(found[1], code)

    def preview_provider_plan_change_with_code(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        plan_id: str,
        quantity: int,
        at: datetime,
        promotion_code_id: str,
    ) -> ProviderPlanPreview | None:
        found = self._codes(customer_id)
        if found is None or not self._capabilities.provider_plan_change:
            return None
        return found[0].preview_provider_plan_change_with_code(
            found[1],
            subscription_id,
            plan_id=plan_id,
            quantity=quantity,
            at=at,
            promotion_code_id=promotion_code_id,
        )

    def make_provider_plan_change_with_code(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        plan_id: str,
        quantity: int,
        at: datetime,
        idempotency_key: str,
        promotion_code_id: str,
    ) -> ProviderPlanPreview | None:
        found = self._codes(customer_id)
        if found is None or not self._capabilities.provider_plan_change:
            return None
        return found[0].make_provider_plan_change_with_code(
            found[1],
            subscription_id,
            plan_id=plan_id,
            quantity=quantity,
            at=at,
            idempotency_key=idempotency_key,
            promotion_code_id=promotion_code_id,
        )

    def apply_provider_promotion_code(
        self, customer_id: str, subscription_id: str, *, promotion_code_id: str, idempotency_key: str
    ) -> Subscription | None:
        provider_id = self._provider_id(customer_id)
        if provider_id is None or not self._capabilities.provider_promotion_codes:
            return None
        return self._to_portal(
            cast(TakesProviderPromotionCodes, self.billing).apply_provider_promotion_code(
                provider_id,
                subscription_id,
                promotion_code_id=promotion_code_id,
                idempotency_key=idempotency_key,
            )
        )

    def schedule_plan_change(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        plan_id: str | None,
        quantity: int | None,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        if not self._serves(ChangesPlans):
            return self.local.schedule_plan_change(
                customer_id, subscription_id, plan_id=plan_id, quantity=quantity, now=now, event=event
            )
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        scheduled = self.billing.schedule_plan_change(
            provider_id, subscription_id, plan_id=plan_id, quantity=quantity, now=now
        )
        return self._recorded(event, self._to_portal(scheduled))

    # -- billing details -----------------------------------------------------------

    def get_billing_details(self, customer_id: str) -> BillingDetails | None:
        if not self._serves(BillingDetailsStore):
            return self.local.get_billing_details(customer_id)
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        return self.billing.get_billing_details(provider_id)

    def save_billing_details(
        self, customer_id: str, details: BillingDetails, *, event: AuditEvent | None = None
    ) -> BillingDetails | None:
        if not self._serves(BillingDetailsStore):
            return self.local.save_billing_details(customer_id, details, event=event)
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        return self._recorded(event, self.billing.save_billing_details(provider_id, details))

    def add_invoice_billing_details(
        self, customer_id: str, invoice_id: str, details: BillingDetails, *, event: AuditEvent | None = None
    ) -> Invoice | None:
        if not self._serves(BillingDetailsStore):
            return self.local.add_invoice_billing_details(customer_id, invoice_id, details, event=event)
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        updated = self.billing.add_invoice_billing_details(provider_id, invoice_id, details)
        return self._recorded(event, self._to_portal(updated))

    # -- licence keys, each from the adapter if it has it ---------------------------

    def list_license_keys(self, customer_id: str) -> Sequence[LicenseKey]:
        if not self._serves(_ListsLicenseKeys):
            return self.local.list_license_keys(customer_id)
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return []
        return self._to_portal(list(self.billing.list_license_keys(provider_id)))

    def count_license_keys(self, customer_id: str) -> int:
        if not self._serves(_CountsLicenseKeys):
            return self.local.count_license_keys(customer_id)
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return 0
        return self.billing.count_license_keys(provider_id)

    def get_license_key(self, customer_id: str, license_key_id: str) -> LicenseKey | None:
        if not self._serves(_FindsLicenseKeys):
            return self.local.get_license_key(customer_id, license_key_id)
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        return self._to_portal(self.billing.get_license_key(provider_id, license_key_id))

    def list_license_key_instances(
        self, customer_id: str, license_key_id: str
    ) -> Sequence[LicenseKeyInstance]:
        if not self._serves(_ListsLicenseKeyInstances):
            return self.local.list_license_key_instances(customer_id, license_key_id)
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return []
        return self._to_portal(list(self.billing.list_license_key_instances(provider_id, license_key_id)))

    def deactivate_license_key_instance(
        self,
        customer_id: str,
        license_key_id: str,
        instance_id: str,
        *,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> LicenseKeyInstance | None:
        if not self._serves(_DeactivatesLicenseKeyInstances):
            return self.local.deactivate_license_key_instance(
                customer_id, license_key_id, instance_id, now=now, event=event
            )
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return None
        deactivated = self.billing.deactivate_license_key_instance(
            provider_id, license_key_id, instance_id, now=now
        )
        return self._recorded(event, self._to_portal(deactivated))
