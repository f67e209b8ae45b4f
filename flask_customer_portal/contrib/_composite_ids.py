"""Customer ids on both sides of a composite store, and what crosses
between them.

The portal knows a customer by the local store's id; a payment company knows
them by its own. :class:`CustomerIdMap` turns one into the other;
:func:`with_portal_ids` and :func:`with_provider_id` rewrite the
``customer_id`` of records on their way out of and into the payment
company's adapter, and :class:`MappedLock` does so for everything that goes
through the adapter's subscription lock. The public names are imported from
:mod:`flask_customer_portal.contrib.composite`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from ..capabilities import implements
from ..storage import (
    AuditEvent,
    ChargeAttempt,
    Invoice,
    KeepsPlanChanges,
    OutboxMail,
    Page,
    Plan,
    PlanChange,
    Subscription,
    SubscriptionLock,
)

__all__ = [
    "CustomerIdMap",
    "MappedLock",
    "MappingCustomerIds",
    "SameCustomerIds",
    "with_portal_ids",
    "with_provider_id",
]

R = TypeVar("R")


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


def with_portal_ids(value: R, customer_ids: CustomerIdMap) -> R:
    """``value`` (a record, a list or a page of them) with the provider's
    customer ids replaced by the portal's. A record of a provider customer
    the portal does not know is refused (:class:`LookupError`), never shown
    to someone else."""
    if _is_record(value):
        record: Any = value
        changes: dict[str, Any] = {}
        portal_id = customer_ids.to_portal(record.customer_id)
        if portal_id is None:
            raise LookupError(f"no portal customer for provider customer {record.customer_id!r}")
        if portal_id != record.customer_id:
            changes["customer_id"] = portal_id
        nested = getattr(record, "payment_method", None)
        if nested is not None:
            mapped = with_portal_ids(nested, customer_ids)
            if mapped is not nested:
                changes["payment_method"] = mapped
        return cast(R, dataclasses.replace(record, **changes)) if changes else value
    if isinstance(value, Page):
        items = [with_portal_ids(item, customer_ids) for item in value.items]
        return cast(R, dataclasses.replace(value, items=items))
    if isinstance(value, list | tuple):
        return cast(R, type(value)(with_portal_ids(item, customer_ids) for item in value))
    return value


def with_provider_id(value: R, customer_ids: CustomerIdMap) -> R:
    """A record made with a portal customer id, with the provider's."""
    if _is_record(value):
        record: Any = value
        provider_id = customer_ids.to_provider(record.customer_id)
        if provider_id is None:
            raise LookupError(f"customer {record.customer_id!r} has no account at the billing provider")
        if provider_id != record.customer_id:
            return cast(R, dataclasses.replace(record, customer_id=provider_id))
    return value


class MappedLock:
    """A billing back end's :class:`SubscriptionLock` seen with portal
    customer ids; audit events go to ``events``, and emails to ``mails``
    (both written to the local store by the composite, in its lock's
    transaction, when the block ends normally)."""

    @classmethod
    def around(
        cls,
        lock: SubscriptionLock,
        customer_ids: CustomerIdMap,
        events: list[AuditEvent],
        mails: list[OutboxMail] | None = None,
    ) -> SubscriptionLock:
        """``lock`` seen with portal ids, with the optional pair that keeps
        plan changes exactly when ``lock`` has it
        (:class:`~flask_customer_portal.storage.KeepsPlanChanges`): the portal
        credits the payment of a change it cannot keep; and taking emails
        (:class:`~flask_customer_portal.storage.MailQueue`) exactly when
        ``mails`` is given (the local lock can write them)."""
        keeps = implements(lock, KeepsPlanChanges)
        if mails is not None:
            mailing = _MailingMappedLockKeepingPlanChanges if keeps else _MailingMappedLock
            return cast(SubscriptionLock, mailing(lock, customer_ids, events, mails))
        if keeps:
            return _MappedLockKeepingPlanChanges(lock, customer_ids, events)
        # Without the pair, as SubscriptionLock allows.
        return cast(SubscriptionLock, cls(lock, customer_ids, events))

    def __init__(
        self,
        lock: SubscriptionLock,
        customer_ids: CustomerIdMap,
        events: list[AuditEvent],
        mails: list[OutboxMail] | None = None,
    ) -> None:
        self._lock = lock
        self._customer_ids = customer_ids
        self._events = events
        self._mails: list[OutboxMail] = [] if mails is None else mails

    def _to_portal(self, value: R) -> R:
        return with_portal_ids(value, self._customer_ids)

    def _to_provider(self, value: R) -> R:
        return with_provider_id(value, self._customer_ids)

    @property
    def subscription(self) -> Subscription:
        return self._to_portal(self._lock.subscription)

    def open_invoices(self) -> Sequence[Invoice]:
        return self._to_portal(list(self._lock.open_invoices()))

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        return self._to_portal(self._lock.get_invoice(invoice_id))

    def issue_invoice(self, invoice: Invoice) -> Invoice:
        return self._to_portal(self._lock.issue_invoice(self._to_provider(invoice)))

    def attempts(self, invoice_id: str) -> Sequence[ChargeAttempt]:
        return self._to_portal(list(self._lock.attempts(invoice_id)))

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        self._lock.save_attempt(self._to_provider(attempt))

    def mark_invoice_paid(
        self, invoice_id: str, *, paid_at: datetime, payment_reference: str, payment_method_id: str | None
    ) -> Invoice:
        return self._to_portal(
            self._lock.mark_invoice_paid(
                invoice_id,
                paid_at=paid_at,
                payment_reference=payment_reference,
                payment_method_id=payment_method_id,
            )
        )

    def update_subscription(self, **changes: Any) -> Subscription:
        return self._to_portal(self._lock.update_subscription(**changes))

    def record_event(self, event: AuditEvent) -> None:
        self._events.append(event)

    def void_invoice(self, invoice_id: str) -> Invoice:
        return self._to_portal(self._lock.void_invoice(invoice_id))

    def change_plan(
        self,
        plan: Plan,
        quantity: int,
        *,
        credit: int,
        current_period_start: datetime | None = None,
        current_period_end: datetime | None = None,
    ) -> Subscription:
        return self._to_portal(
            self._lock.change_plan(
                plan,
                quantity,
                credit=credit,
                current_period_start=current_period_start,
                current_period_end=current_period_end,
            )
        )

    def set_credit(self, credit: int) -> Subscription:
        return self._to_portal(self._lock.set_credit(credit))

    def clear_scheduled_change(self) -> Subscription:
        return self._to_portal(self._lock.clear_scheduled_change())

    def use_retention_discount(self) -> Subscription:
        return self._to_portal(self._lock.use_retention_discount())


class _MappedLockKeepingPlanChanges(MappedLock):
    def record_plan_change(self, change: PlanChange) -> None:
        cast(KeepsPlanChanges, self._lock).record_plan_change(self._to_provider(change))

    def get_plan_change(self, invoice_id: str) -> PlanChange | None:
        return self._to_portal(cast(KeepsPlanChanges, self._lock).get_plan_change(invoice_id))


class _MailingMappedLock(MappedLock):
    def enqueue_mail(self, mail: OutboxMail) -> None:
        """Kept until the block ends, then written with its audit events: a
        block that raises leaves no email."""
        self._mails.append(mail)


class _MailingMappedLockKeepingPlanChanges(_MappedLockKeepingPlanChanges, _MailingMappedLock):
    pass
