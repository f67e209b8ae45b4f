"""The records the portal shows and the storage protocol that provides them.

Views only ever talk to :class:`PortalStorage`; the SQLAlchemy store in
:mod:`flask_customer_portal.contrib.sqla` is one implementation, a payment
company's API can be another. Every read takes the id of the customer it is
scoped to and returns ``None`` (never another customer's record) when the
record belongs to someone else.

All amounts are integers in minor units with an ISO 4217 currency; all
datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar, runtime_checkable

from .money import Money

__all__ = [
    "AccessStore",
    "AuditEvent",
    "BillingStore",
    "ChargeAttempt",
    "ChargeAttemptStatus",
    "ChargeStore",
    "Customer",
    "CustomerStore",
    "EmailInUse",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
    "LicenseKey",
    "LicenseKeyStatus",
    "LicenseKeyStore",
    "LinkPurpose",
    "LinkRecord",
    "Page",
    "PaymentMethod",
    "PaymentMethodInUse",
    "PortalSessionRecord",
    "PortalStorage",
    "StateConflict",
    "Subscription",
    "SubscriptionLock",
    "SubscriptionStatus",
]

T = TypeVar("T")


class SubscriptionStatus(str, enum.Enum):
    """Where a subscription is in its life: ``active``, ``on_hold`` after a
    failed renewal, or ``cancelled``."""

    ACTIVE = "active"
    #: A renewal payment failed. Never renews by itself; a new payment
    #: method pays the arrears and makes it ``active`` again.
    ON_HOLD = "on_hold"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class InvoiceStatus(str, enum.Enum):
    """``open → paid``, ``open → void``, ``paid → refunded``."""

    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    REFUNDED = "refunded"

    def __str__(self) -> str:
        return self.value


class LicenseKeyStatus(str, enum.Enum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    EXPIRED = "expired"
    REVOKED = "revoked"

    def __str__(self) -> str:
        return self.value


class LinkPurpose(str, enum.Enum):
    """What a one-time link may be used for; each has its own token salt."""

    SESSION_LINK = "session_link"
    LOGIN_LINK = "login_link"
    EMAIL_CHANGE = "email_change"

    def __str__(self) -> str:
        return self.value


class StorageError(Exception):
    """Base of the errors a store raises for a change it refuses."""


class EmailInUse(StorageError):
    """Another customer already has this email address."""


class PaymentMethodInUse(StorageError):
    """A subscription is charged to this method, so it cannot be removed."""


class StateConflict(StorageError):
    """The record is not in a state that allows this change (cancelling a
    cancelled subscription, undoing a cancellation whose date has passed)."""


class ChargeAttemptStatus(str, enum.Enum):
    """What came of one attempt to charge an invoice."""

    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    REQUIRES_ACTION = "requires_action"
    FAILED = "failed"
    #: No answer from the provider: must be reconciled before the next try.
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    email: str
    name: str
    phone: str | None = None
    """E.164, e.g. ``+6281234567890``."""
    locale: str | None = None
    """Preferred language (``"en"``, ``"id"``); ``None`` follows the browser."""
    timezone: str | None = None
    """IANA time zone name; ``None`` shows times in UTC."""
    auth_version: int = 1
    """Bumped on email change and "sign out everywhere": older links and
    sessions stop working."""
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentMethod:
    id: str
    customer_id: str
    brand: str
    """``visa``, ``mastercard``, ``amex`` … as the provider names it."""
    last4: str
    exp_month: int
    exp_year: int
    provider_token: str
    """The provider's reference for charging it; never card data."""
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    customer_id: str
    product_name: str
    plan_name: str
    price: Money
    interval: str
    """``day``, ``week``, ``month`` or ``year``."""
    interval_count: int
    status: SubscriptionStatus
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool = False
    cancelled_at: datetime | None = None
    ended_at: datetime | None = None
    payment_method: PaymentMethod | None = None
    hold_reason: str | None = None
    """Why the last renewal failed: a decline code such as
    ``insufficient_funds`` (shown translated) or a sentence for the customer."""
    created_at: datetime | None = None

    @property
    def is_current(self) -> bool:
        """Still running (active or on hold), as opposed to past."""
        return self.status is not SubscriptionStatus.CANCELLED


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    description: str
    quantity: int
    unit_amount: int
    amount: int


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    number: str
    """Human invoice number, sequential per business, never reused."""
    customer_id: str
    status: InvoiceStatus
    currency: str
    subtotal: int
    tax: int
    total: int
    issued_at: datetime
    description: str
    """One line summary for lists ("Pro plan — March 2026")."""
    subscription_id: str | None = None
    paid_at: datetime | None = None
    payment_reference: str | None = None
    payment_method: PaymentMethod | None = None
    lines: tuple[InvoiceLine, ...] = ()
    """Filled by :meth:`BillingStore.get_invoice`; empty in lists."""

    @property
    def total_money(self) -> Money:
        return Money(self.total, self.currency)

    @property
    def subtotal_money(self) -> Money:
        return Money(self.subtotal, self.currency)

    @property
    def tax_money(self) -> Money:
        return Money(self.tax, self.currency)


@dataclass(frozen=True, slots=True)
class LicenseKey:
    id: str
    customer_id: str
    key: str
    product_name: str
    status: LicenseKeyStatus
    activations: int
    activation_limit: int | None = None
    """``None`` means unlimited."""
    expires_at: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChargeAttempt:
    """One try at paying an invoice, kept so that a retry never charges twice.

    ``idempotency_key`` is ``invoice:<invoice id>:attempt:<n>``; attempt
    ``n + 1`` is only made once attempt ``n``'s outcome is known.
    """

    invoice_id: str
    attempt: int
    idempotency_key: str
    customer_id: str
    amount: int
    currency: str
    status: ChargeAttemptStatus
    created_at: datetime
    payment_method_id: str | None = None
    decline_reason: str | None = None
    provider_reference: str | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """Server-side state of a one-time link; holds a hash, never the token."""

    token_hash: str
    purpose: LinkPurpose
    customer_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PortalSessionRecord:
    """Server-side half of a signed-in customer's session."""

    id: str
    customer_id: str
    auth_version: int
    created_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Append-only record of something that happened in the portal."""

    customer_id: str
    action: str
    """Dotted name, e.g. ``session.signed_in`` or ``invoice.paid``."""
    occurred_at: datetime
    subject_id: str | None = None
    provider_reference: str | None = None
    actor: str = "customer"
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a long list, newest first."""

    items: Sequence[T]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


@runtime_checkable
class CustomerStore(Protocol):
    """Customers. Every write that takes an ``event`` appends it to the audit
    log in the same transaction as the change: both are saved, or neither."""

    def get_customer(self, customer_id: str) -> Customer | None:
        """The customer with this id, or ``None``."""

    def find_customer_by_email(self, email: str) -> Customer | None:
        """The customer with this email, compared case-insensitively."""

    def update_profile(
        self, customer_id: str, *, name: str, phone: str | None, event: AuditEvent | None = None
    ) -> Customer | None:
        """Save the customer's name and phone (E.164 or ``None``); ``None``
        if there is no such customer."""

    def change_email(
        self, customer_id: str, email: str, *, auth_version: int, event: AuditEvent | None = None
    ) -> Customer | None:
        """Set a new email and bump ``auth_version`` by one, atomically, but
        only while the customer's ``auth_version`` is still ``auth_version``
        (so a confirmation link works once and not after a later change).
        ``None`` if nothing matched. Raises :class:`EmailInUse`."""


@runtime_checkable
class BillingStore(Protocol):
    def list_subscriptions(self, customer_id: str) -> Sequence[Subscription]:
        """All of the customer's subscriptions: current ones first, then
        past ones, newest first within each, payment methods loaded."""

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        """One subscription of this customer, or ``None``."""

    def list_invoices(self, customer_id: str, *, page: int, per_page: int) -> Page[Invoice]:
        """One page of the customer's invoices, newest first, without lines."""

    def get_invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        """One invoice of this customer with its lines, or ``None``."""

    def list_payment_methods(self, customer_id: str) -> Sequence[PaymentMethod]:
        """The customer's saved payment methods, newest first."""

    def get_payment_method(self, customer_id: str, payment_method_id: str) -> PaymentMethod | None:
        """One saved payment method of this customer, or ``None``."""

    def add_payment_method(
        self, payment_method: PaymentMethod, *, event: AuditEvent | None = None
    ) -> PaymentMethod:
        """Save a method the provider attached; ``created_at`` defaults to now."""

    def remove_payment_method(
        self, customer_id: str, payment_method_id: str, *, event: AuditEvent | None = None
    ) -> bool:
        """Forget a saved method. ``False`` if it is not this customer's;
        raises :class:`PaymentMethodInUse` if a current subscription uses it."""

    def set_subscription_payment_method(
        self,
        customer_id: str,
        subscription_id: str,
        payment_method_id: str,
        *,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        """Charge future renewals of the subscription to another of the
        customer's methods. ``None`` if either is not this customer's."""

    def cancel_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        at_period_end: bool,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        """Cancel now (``cancelled``, ended now) or at the end of the current
        period (stays ``active`` with ``cancel_at_period_end``). An ``on_hold``
        subscription is always cancelled now, and so is one already set to end
        when ``at_period_end`` is false (the customer wants it to end today).
        ``None`` if not this customer's; raises :class:`StateConflict` if it is
        already cancelled, or already set to end and ``at_period_end`` is true."""

    def undo_cancellation(
        self, customer_id: str, subscription_id: str, *, now: datetime, event: AuditEvent | None = None
    ) -> Subscription | None:
        """Keep a subscription that was set to end at period end, while that
        date is still ahead. ``None`` if not this customer's; raises
        :class:`StateConflict` if there is nothing to undo or it is too late."""


@runtime_checkable
class LicenseKeyStore(Protocol):
    def list_license_keys(self, customer_id: str) -> Sequence[LicenseKey]:
        """Every licence key of the customer's purchases, newest first."""

    def count_license_keys(self, customer_id: str) -> int:
        """How many licence keys the customer has (what
        :meth:`list_license_keys` would return), without loading them."""


@runtime_checkable
class AccessStore(Protocol):
    """One-time links, portal sessions and the audit log."""

    def create_link(self, record: LinkRecord) -> None:
        """Remember a link that was handed out (by its token hash)."""

    def consume_link(self, token_hash: str, purpose: LinkPurpose, customer_id: str, now: datetime) -> bool:
        """Mark the link used, atomically. ``True`` only for the one caller
        that used it while it was unused, unexpired, of this purpose and
        customer; every other caller gets ``False``."""

    def get_link(self, token_hash: str) -> LinkRecord | None:
        """The link's state, for telling "used" from "unknown"."""

    def create_portal_session(self, record: PortalSessionRecord) -> None:
        """Remember a new signed-in session."""

    def get_portal_session(self, session_id: str) -> PortalSessionRecord | None:
        """A session by id, revoked or not."""

    def get_session_with_customer(self, session_id: str) -> tuple[PortalSessionRecord, Customer] | None:
        """A session by id, revoked or not, together with the customer it
        belongs to, in one round trip (it runs on every signed-in request).
        ``None`` if there is no such session or its customer is gone."""

    def touch_portal_session(self, session_id: str, now: datetime) -> None:
        """Record activity (for the idle timeout)."""

    def revoke_portal_session(self, session_id: str, now: datetime) -> None:
        """End one session (logout)."""

    def revoke_customer_sessions(self, customer_id: str, now: datetime) -> int:
        """End all of a customer's sessions; returns how many were live."""

    def sign_out_everywhere(self, customer_id: str, now: datetime, *, event: AuditEvent | None = None) -> int:
        """End every session of the customer **and** every link made for
        them before now (their ``auth_version`` moves on), in one
        transaction. Returns how many sessions were live."""

    def record_event(self, event: AuditEvent) -> None:
        """Append to the audit log."""


class SubscriptionLock(Protocol):
    """A subscription held exclusively while money moves for it.

    Made by :meth:`ChargeStore.lock_subscription`. Everything written
    through it is committed together when the ``with`` block ends normally
    and rolled back if it raises; until then no other caller can lock the
    same subscription (``SELECT … FOR UPDATE`` or its equivalent).
    """

    @property
    def subscription(self) -> Subscription:
        """The subscription as it is now, re-read under the lock."""

    def open_invoices(self) -> Sequence[Invoice]:
        """The subscription's ``open`` invoices, oldest first, with lines."""

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        """One of the subscription's invoices, with lines."""

    def issue_invoice(self, invoice: Invoice) -> Invoice:
        """Store a new invoice of this subscription. ``number`` may be left
        empty: the store then gives it the next number of its series."""

    def attempts(self, invoice_id: str) -> Sequence[ChargeAttempt]:
        """Every charge attempt on the invoice, in order."""

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        """Record an attempt, or its outcome (same invoice and number)."""

    def mark_invoice_paid(
        self, invoice_id: str, *, paid_at: datetime, payment_reference: str, payment_method_id: str | None
    ) -> Invoice:
        """``open → paid``. Raises :class:`StateConflict` for any other state."""

    def update_subscription(
        self,
        *,
        status: SubscriptionStatus | None = None,
        current_period_start: datetime | None = None,
        current_period_end: datetime | None = None,
        payment_method_id: str | None = None,
        hold_reason: str | None = None,
        clear_hold_reason: bool = False,
        ended_at: datetime | None = None,
    ) -> Subscription:
        """Change the locked subscription; arguments left ``None`` keep
        their value (``clear_hold_reason`` empties ``hold_reason``)."""

    def record_event(self, event: AuditEvent) -> None:
        """Append to the audit log in the same transaction as the money
        event it describes."""


@runtime_checkable
class ChargeStore(Protocol):
    """Where money moves: a lock per subscription and the attempt log."""

    def lock_subscription(
        self, customer_id: str, subscription_id: str
    ) -> AbstractContextManager[SubscriptionLock | None]:
        """Hold the customer's subscription for the ``with`` block; the
        context value is ``None`` if it is not this customer's."""

    def subscriptions_due(self, now: datetime, *, limit: int = 100) -> Sequence[Subscription]:
        """Active subscriptions whose current period ended at or before
        ``now``, oldest first: renewals to charge and period-end
        cancellations to finish. ``on_hold`` ones are never due."""


@runtime_checkable
class PortalStorage(CustomerStore, BillingStore, LicenseKeyStore, AccessStore, ChargeStore, Protocol):
    """Everything the portal reads and writes, in one object."""
