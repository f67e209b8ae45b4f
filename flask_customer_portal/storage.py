"""The storage protocol: what the portal asks of the store that holds its
records.

Views only ever talk to :class:`PortalStorage`; the SQLAlchemy store in
:mod:`flask_customer_portal.contrib.sqla` is one implementation, a payment
company's API can be another. Every read takes the id of the customer it is
scoped to and returns ``None`` (never another customer's record) when the
record belongs to someone else.

The records themselves (:class:`Customer`, :class:`Invoice`, :class:`Page` …)
are defined in :mod:`flask_customer_portal.records` and importable from
here too. What a store can do beyond the core is typed in
:mod:`flask_customer_portal.capabilities`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

# The records are defined in their own module and named here too, so that
# ``flask_customer_portal.storage.Customer`` and the like keep working.
from .records import (
    ERASED_EMAIL_DOMAIN,
    ArrearsAttempt,
    AuditEvent,
    BillingDetails,
    ChargeAttempt,
    ChargeAttemptStatus,
    CreditNote,
    CreditNoteReason,
    Customer,
    EmailInUse,
    ErasureReport,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LicenseKey,
    LicenseKeyInstance,
    LicenseKeyStatus,
    LinkPurpose,
    LinkRecord,
    LinkUse,
    MailCounts,
    MailStatus,
    OutboxMail,
    Page,
    PaymentMethod,
    PaymentMethodInUse,
    Plan,
    PlanChange,
    PortalSessionRecord,
    PromotionCode,
    PromotionDuration,
    PromotionRedemption,
    PruneReport,
    StateConflict,
    StorageError,
    Subscription,
    SubscriptionStatus,
    TaxIdScheme,
    WebhookClaim,
)

__all__ = [
    "ERASED_EMAIL_DOMAIN",
    "AccessStore",
    "ArrearsAttempt",
    "AuditEvent",
    "BillingDetails",
    "BillingDetailsStore",
    "BillingStore",
    "ChargeAttempt",
    "ChargeAttemptStatus",
    "ChargeStore",
    "CreditNote",
    "CreditNoteReason",
    "CreditNoteStore",
    "Customer",
    "CustomerStore",
    "DueClaimStore",
    "DueShare",
    "EmailInUse",
    "ErasureReport",
    "Invoice",
    "InvoiceChargeLock",
    "InvoiceLine",
    "InvoiceLock",
    "InvoiceLockStore",
    "InvoiceStatus",
    "KeepsPlanChanges",
    "LicenseKey",
    "LicenseKeyInstance",
    "LicenseKeyStatus",
    "LicenseKeyStore",
    "LinkPurpose",
    "LinkRecord",
    "LinkUse",
    "MailCounts",
    "MailOutboxStore",
    "MailQueue",
    "MailStatus",
    "NumbersAtCommit",
    "OutboxMail",
    "Page",
    "PaymentMethod",
    "PaymentMethodInUse",
    "Plan",
    "PlanChange",
    "PlanStore",
    "PortalSessionRecord",
    "PortalStorage",
    "PromotionCode",
    "PromotionDuration",
    "PromotionRedemption",
    "ProviderLockStore",
    "ProviderSubscriptionLock",
    "PruneReport",
    "StateConflict",
    "StorageError",
    "Subscription",
    "SubscriptionLock",
    "SubscriptionStatus",
    "TaxIdScheme",
    "WebhookClaim",
]


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

    def set_locale(
        self, customer_id: str, locale: str | None, *, event: AuditEvent | None = None
    ) -> Customer | None:
        """Save the customer's language (a code such as ``"id"``; ``None``
        follows the browser again); ``None`` if there is no such customer."""

    def change_email(
        self,
        customer_id: str,
        email: str,
        *,
        auth_version: int,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Customer | None:
        """Set a new email and bump ``auth_version`` by one, atomically, but
        only while the customer's ``auth_version`` is still ``auth_version``
        (so a confirmation link works once and not after a later change).
        ``None`` if nothing matched. Raises :class:`EmailInUse`. The emails
        ``mail`` (the notice to the old address) are written in the same
        transaction, only if the change is (stores with
        :class:`MailOutboxStore` only; the portal passes none otherwise)."""

    def add_customer(self, customer: Customer) -> Customer:
        """Store a new customer (``created_at`` defaults to now) and return
        it as stored; raises, with nothing written, if the id or the email
        (case-insensitively) is taken. Optional
        (:meth:`~flask_customer_portal.CustomerPortal.add_customer` needs it)."""

    def erase_customer(
        self, customer_id: str, *, email: str, now: datetime, event: AuditEvent | None = None
    ) -> ErasureReport | None:
        """Erase the customer's personal data in one transaction, keeping
        the record issued invoices name (see :doc:`/privacy`): ``email`` (a
        placeholder at :data:`ERASED_EMAIL_DOMAIN`) replaces the address,
        the name is emptied, phone, language and time zone are cleared and
        ``auth_version`` moves on; sessions, links, billing details,
        licence keys with their activations, and saved payment methods
        nothing issued names are deleted; the others lose their provider
        token; audit events keep only the details that never hold personal
        data; invoices (with their billing details as issued) and charge
        attempts are kept. Appends ``event``. ``None``, with nothing
        written, if there is no such customer.

        Optional (:meth:`~flask_customer_portal.CustomerPortal.erase_customer`
        needs it)."""


@runtime_checkable
class BillingStore(Protocol):
    def list_subscriptions(self, customer_id: str) -> Sequence[Subscription]:
        """All of the customer's subscriptions: current ones first, then
        past ones, newest first within each, payment methods loaded."""

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        """One subscription of this customer, or ``None``."""

    def list_invoices(self, customer_id: str, *, page: int, per_page: int) -> Page[Invoice]:
        """One page of the customer's invoices, newest first, without lines."""

    def list_invoices_after(
        self, customer_id: str, after: Invoice | None, *, limit: int, with_lines: bool = False
    ) -> Sequence[Invoice]:
        """Up to ``limit`` of the customer's invoices that come after
        ``after`` in billing-history order (newest first, then by id;
        ``None`` starts at the newest), with their lines if ``with_lines``.
        For reading a whole history in batches (exports): every batch costs
        the same, however far into the history it is. Credit notes are
        included where the store keeps them with its invoices (the CSV
        export lists their numbers)."""

    def get_invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        """One invoice of this customer with its lines and credit notes, or ``None``."""

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
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        """Cancel now (``cancelled``, ended now) or at the end of the current
        period (stays ``active`` with ``cancel_at_period_end``). An ``on_hold``
        subscription is always cancelled now, and so is one already set to end
        when ``at_period_end`` is false (the customer wants it to end today).
        ``None`` if not this customer's; raises :class:`StateConflict` if it is
        already cancelled, or already set to end and ``at_period_end`` is true.
        The emails ``mail`` are written with the change, as
        :meth:`CustomerStore.change_email` writes its own."""

    def undo_cancellation(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        now: datetime,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        """Keep a subscription that was set to end at period end, while that
        date is still ahead. ``None`` if not this customer's; raises
        :class:`StateConflict` if there is nothing to undo or it is too late.
        ``mail`` as for :meth:`cancel_subscription`."""

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
        """``active → paused`` until ``resumes_at`` (``paused_at`` is
        ``now``). ``None`` if not this customer's; raises
        :class:`StateConflict` unless it is ``active``, not set to end, with
        its period still ahead of ``now`` and ``resumes_at`` after ``now``.
        ``mail`` as for :meth:`cancel_subscription`."""

    def unpause_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        resumed_at: datetime,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        """``paused → active`` as of ``resumed_at``: the current period's
        start and end both move on by ``resumed_at - paused_at`` (the
        paid-for time left at the pause is kept whole). ``None`` if not this
        customer's; raises :class:`StateConflict` if it is not ``paused`` or
        ``resumed_at`` is before ``paused_at``. ``mail`` as for
        :meth:`cancel_subscription`."""

    def set_retention_discount(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        percent: int,
        renewals: int,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        """Take ``percent`` off the next ``renewals`` renewal invoices
        (replacing any discount not used up). ``None`` if not this
        customer's; raises :class:`StateConflict` if it is cancelled."""


@runtime_checkable
class LicenseKeyStore(Protocol):
    def list_license_keys(self, customer_id: str) -> Sequence[LicenseKey]:
        """Every licence key of the customer's purchases, newest first."""

    def count_license_keys(self, customer_id: str) -> int:
        """How many licence keys the customer has (what
        :meth:`list_license_keys` would return), without loading them."""

    def get_license_key(self, customer_id: str, license_key_id: str) -> LicenseKey | None:
        """One licence key of this customer, or ``None``."""

    def list_license_key_instances(
        self, customer_id: str, license_key_id: str
    ) -> Sequence[LicenseKeyInstance]:
        """The activations of one of the customer's keys: active ones first,
        then deactivated ones, newest first within each. Empty for a key
        that is not this customer's."""

    def deactivate_license_key_instance(
        self,
        customer_id: str,
        license_key_id: str,
        instance_id: str,
        *,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> LicenseKeyInstance | None:
        """Deactivate one activation and take one off the key's
        ``activations`` (never below zero), atomically: of two concurrent
        calls for the same activation exactly one changes anything.
        ``None`` if the key or the activation is not this customer's; raises
        :class:`StateConflict` if it is already deactivated."""


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

    def start_portal_session(
        self,
        record: PortalSessionRecord,
        *,
        link: LinkUse | None = None,
        replaces: str | None = None,
        event: AuditEvent | None = None,
    ) -> bool:
        """Sign in, in one transaction: use up ``link`` (exactly as
        :meth:`consume_link` would, at ``record.created_at`` and for
        ``record.customer_id``), end the session ``replaces`` (the
        browser's previous one, as :meth:`revoke_portal_session` would),
        remember ``record`` and append ``event``. ``False``, with nothing
        written, if the link could not be used; ``True`` otherwise.

        Optional: the portal makes the same calls one by one on a store
        without it."""

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

    def claim_webhook_event(
        self, provider: str, event_id: str, now: datetime, *, lease: timedelta
    ) -> WebhookClaim:
        """Claim a payment company's webhook event (``provider`` such as
        ``"stripe"``, its own event id) for handling, atomically, in any
        process, before or after a restart:

        * :attr:`~WebhookClaim.CLAIMED` for the first caller, and for a
          caller that finds a claim made more than ``lease`` before ``now``
          and never finished (the delivery that made it died); that claim
          is taken over and counts from ``now``. Of concurrent callers
          exactly one gets it;
        * :attr:`~WebhookClaim.HANDLED` once the event was finished
          (:meth:`finish_webhook_event`);
        * :attr:`~WebhookClaim.IN_PROGRESS` while another caller's claim
          is unfinished and younger than ``lease``.

        Decided by the database (a unique key, a conditional update), never
        by a read before the write.

        Optional, with :meth:`finish_webhook_event` and
        :meth:`release_webhook_event`: the webhook views keep the ids they
        handle per process on a store without all three."""

    def finish_webhook_event(self, provider: str, event_id: str, now: datetime) -> None:
        """Record that the claimed event was handled (at ``now``): every
        later claim of it is :attr:`~WebhookClaim.HANDLED`.

        A store with a mail outbox may take a keyword argument ``mail`` (a
        sequence of :class:`~flask_customer_portal.records.OutboxMail`):
        the emails the event causes (a receipt), written in the same
        transaction, and only if this call is the one that marks the
        event handled. The webhook views pass it where the method has it."""

    def release_webhook_event(self, provider: str, event_id: str) -> None:
        """Forget the unfinished claim on an event whose handling failed,
        so that the provider's next delivery of it is handled. Nothing
        happens if it was not claimed, or was finished already."""

    def list_customer_sessions(
        self, customer_id: str, now: datetime, *, idle_timeout: timedelta, max_age: timedelta
    ) -> Sequence[PortalSessionRecord]:
        """The customer's live sessions, most recently active first: not
        revoked, made under the customer's current ``auth_version``, active
        within ``idle_timeout`` and started within ``max_age`` of ``now``
        (the rules that decide whether a session still signs anybody in)."""

    def revoke_customer_session(
        self, customer_id: str, public_id: str, now: datetime, *, event: AuditEvent | None = None
    ) -> PortalSessionRecord | None:
        """End the customer's session with this ``public_id`` (and append
        ``event``) in one transaction. ``None``, with nothing written, if
        no unrevoked session of this customer has that public id."""

    def list_customer_events(self, customer_id: str, *, page: int, per_page: int) -> Page[AuditEvent]:
        """One page of the customer's audit log, newest first, in a fixed
        number of queries whatever its length."""

    def prune_expired(
        self,
        now: datetime,
        *,
        session_idle_timeout: timedelta,
        session_max_age: timedelta,
        webhook_events_before: datetime | None = None,
        batch_size: int = 500,
        sent_mail_before: datetime | None = None,
    ) -> PruneReport:
        """Delete links expired at ``now`` (used ones are kept until then,
        to say "already used"), sessions revoked, idle for
        ``session_idle_timeout`` or older than ``session_max_age``,
        webhook events received before ``webhook_events_before`` and
        outbox rows sent before ``sent_mail_before``; at most
        ``batch_size`` rows per transaction. Several hosts may run it at
        once: each row is deleted and counted once. Optional (``flask
        portal prune`` needs it)."""


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

    def void_invoice(self, invoice_id: str) -> Invoice:
        """``open → void`` (an invoice that will never be paid, such as the
        one of a plan change whose charge was declined). Raises
        :class:`StateConflict` for any other state."""

    def change_plan(
        self,
        plan: Plan,
        quantity: int,
        *,
        credit: int,
        current_period_start: datetime | None = None,
        current_period_end: datetime | None = None,
    ) -> Subscription:
        """Move the locked subscription to ``quantity`` of ``plan``: its plan,
        name, price (of the whole quantity) and interval, its ``credit``, and
        the period if given. Clears any scheduled change."""

    def set_credit(self, credit: int) -> Subscription:
        """Set the locked subscription's ``credit`` (0 or more)."""

    def clear_scheduled_change(self) -> Subscription:
        """Forget the locked subscription's scheduled plan change."""

    def use_retention_discount(self) -> Subscription:
        """One renewal invoice took the retention discount: one fewer
        ``discount_renewals`` (the percent is cleared with the last one)."""


@runtime_checkable
class KeepsPlanChanges(Protocol):
    """What a :class:`SubscriptionLock` may add: keeping each plan change
    made now with its proration invoice. Without it a plan change whose
    payment is only confirmed later cannot be finished, and the amount paid
    becomes account credit."""

    def record_plan_change(self, change: PlanChange) -> None:
        """Keep what a plan change made now is, with its proration invoice
        (issued through this lock)."""

    def get_plan_change(self, invoice_id: str) -> PlanChange | None:
        """The plan change recorded with one of the subscription's
        invoices, or ``None``."""


@runtime_checkable
class NumbersAtCommit(Protocol):
    """What a :class:`SubscriptionLock` may add: an invoice numbered as the
    lock's transaction ends. Where every invoice takes its number from one
    counter held until commit (the SQLAlchemy store), the counter is then
    held for the end of the transaction alone, and renewals running at
    once wait on one another only that long."""

    def issue_invoice_numbered_at_commit(self, invoice: Invoice) -> Invoice:
        """Store a new invoice of this subscription, as
        :meth:`SubscriptionLock.issue_invoice` does for one with ``number``
        left empty, and give it the next number of the series when the
        ``with`` block ends. The invoice returned has no number yet: read
        it again in a later transaction for that."""


@runtime_checkable
class ChargeStore(Protocol):
    """Where money moves: a lock per subscription and the attempt log."""

    def lock_subscription(
        self, customer_id: str, subscription_id: str
    ) -> AbstractContextManager[SubscriptionLock | None]:
        """Hold the customer's subscription for the ``with`` block; the
        context value is ``None`` if it is not this customer's.

        The hold must be one that every worker and host of the portal
        respects — a database lock, never one kept in the process. A
        billing adapter mounted in a
        :class:`~flask_customer_portal.contrib.composite.CompositeStorage`
        takes none itself: the composite holds the local store's
        :meth:`ProviderLockStore.lock_provider_subscription` around it."""

    def subscriptions_due(self, now: datetime, *, limit: int = 100) -> Sequence[Subscription]:
        """Active subscriptions whose current period ended at or before
        ``now``, oldest first: renewals to charge and period-end
        cancellations to finish. ``on_hold`` ones are never due."""

    def subscriptions_to_resume(self, now: datetime, *, limit: int = 100) -> Sequence[Subscription]:
        """``paused`` subscriptions whose ``resumes_at`` is at or before
        ``now``, earliest first."""

    def plan_changes_to_settle(
        self, *, limit: int = 100, customer_id: str | None = None
    ) -> Sequence[PlanChange]:
        """Recorded plan changes (:meth:`KeepsPlanChanges.record_plan_change`)
        whose proration invoice is still ``open``, oldest first; only the
        customer's with ``customer_id``. ``flask portal renew-due`` settles
        them, and a customer's visit settles theirs. Optional: without it,
        only a visit or a renewal of the subscription settles them."""


@runtime_checkable
class DueClaimStore(Protocol):
    """Renewals run from cron on several hosts at once: each runner walks
    the due subscriptions in ``(current_period_end, id)`` order, a page at
    a time, and claims each one instead of waiting for it. Optional: a
    store without it renews what
    :meth:`ChargeStore.subscriptions_due` lists, each subscription under
    :meth:`ChargeStore.lock_subscription`."""

    def subscriptions_due_after(
        self, now: datetime, *, after: tuple[datetime, str] | None, limit: int = 100
    ) -> Sequence[Subscription]:
        """As :meth:`ChargeStore.subscriptions_due`, in ``(current_period_end,
        id)`` order, only those after ``after`` (the ``(current_period_end,
        id)`` of the last one of the page before): a page of the walk, read
        without locking anything."""

    def claim_due_subscription(
        self, customer_id: str, subscription_id: str, now: datetime
    ) -> AbstractContextManager[SubscriptionLock | None]:
        """:meth:`ChargeStore.lock_subscription` for a subscription still due
        at ``now`` that no one else holds; the context value is ``None``,
        at once, when it is held (another runner renews it, a customer pays
        for it) or no longer due."""

    def claims_in_parallel(self) -> bool:
        """Whether locks of different subscriptions are held at the same
        time (one row each), rather than one at a time (a database-wide
        write lock, as on SQLite). Where they are, a renewal issues its
        invoice in a transaction of its own before it charges, so that the
        invoice-number counter is never held across a payment."""

    def subscriptions_to_resume_after(
        self, now: datetime, *, after: tuple[datetime, str] | None, limit: int = 100
    ) -> Sequence[Subscription]:
        """As :meth:`ChargeStore.subscriptions_to_resume`, in ``(resumes_at,
        id)`` order, only those after ``after``: a keyset page of the
        paused subscriptions to resume."""

    def plan_changes_to_settle_after(
        self, *, after: tuple[datetime, str] | None, limit: int = 100
    ) -> Sequence[PlanChange]:
        """As :meth:`ChargeStore.plan_changes_to_settle`, in ``(created_at,
        invoice_id)`` order, only those after ``after``: a keyset page of
        the plan changes to settle."""

    def share_due(self) -> AbstractContextManager[DueShare | None]:
        """For one run: a way to split the walk's pages with the runs going
        on at the same time, so that each subscription is tried by one of
        them instead of all; ``None`` where the database cannot (each run
        then tries every one, and its claim decides)."""


class DueShare(Protocol):
    """The subscriptions one renewal run has taken for itself
    (:meth:`DueClaimStore.share_due`). Taking one holds no row and no
    transaction: the renewal still claims it; other runs only leave it
    alone. A run that dies lets go of what it took."""

    def take(self, subscription_ids: Sequence[str]) -> set[str]:
        """Of ``subscription_ids``, those no other run holds, now held by
        this one; never waits."""

    def release(self) -> None:
        """Let go of everything taken."""


class InvoiceChargeLock(Protocol):
    """What charging one invoice needs while its lock is held: the attempt
    log, marking it paid and the audit log, all in the lock's transaction.
    A :class:`SubscriptionLock` is one; so is an :class:`InvoiceLock`."""

    def attempts(self, invoice_id: str) -> Sequence[ChargeAttempt]:
        """Every charge attempt on the invoice, in order."""

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        """Record an attempt, or its outcome (same invoice and number)."""

    def mark_invoice_paid(
        self, invoice_id: str, *, paid_at: datetime, payment_reference: str, payment_method_id: str | None
    ) -> Invoice:
        """``open → paid``. Raises :class:`StateConflict` for any other state."""

    def record_event(self, event: AuditEvent) -> None:
        """Append to the audit log in the same transaction."""


class InvoiceLock(InvoiceChargeLock, Protocol):
    """One invoice that belongs to no subscription, held exclusively while
    it is paid. Made by :meth:`InvoiceLockStore.lock_invoice`; committed
    when the ``with`` block ends normally, rolled back if it raises."""

    @property
    def invoice(self) -> Invoice:
        """The invoice as it is now, re-read under the lock, with lines."""


@runtime_checkable
class InvoiceLockStore(Protocol):
    """A store that can hold one of its own invoices still while it is
    paid directly (an invoice of no subscription, such as a one-off
    charge). The hold must be one every worker and host respects: a
    database row lock, never one kept in the process."""

    def lock_invoice(self, customer_id: str, invoice_id: str) -> AbstractContextManager[InvoiceLock | None]:
        """Hold the customer's invoice for the ``with`` block; the context
        value is ``None`` if it is not this customer's invoice."""


class ProviderSubscriptionLock(Protocol):
    """A subscription that lives at a payment company, held in the
    merchant's database while money moves for it.

    Made by :meth:`ProviderLockStore.lock_provider_subscription`.
    Everything written through it is committed together when the ``with``
    block ends normally and rolled back if it raises; until then no other
    caller — another thread, another worker, another server on the same
    database — can lock the same customer's subscription.
    """

    def attempts(self) -> Sequence[ArrearsAttempt]:
        """Every attempt at the subscription's arrears, oldest first."""

    def save_attempt(self, attempt: ArrearsAttempt) -> None:
        """Record an attempt, or its outcome (same subscription and number;
        its idempotency key never changes)."""

    def record_event(self, event: AuditEvent) -> None:
        """Append to the audit log in the same transaction."""


@runtime_checkable
class ProviderLockStore(Protocol):
    """A lock, in the merchant's database, for subscriptions that live at a
    payment company, whose API has no lock of its own. It holds across
    processes: the reactivation of a subscription the provider bills itself
    (:class:`~flask_customer_portal.billing.renewal.SubscriptionBiller`) runs
    under it, and so does a composite store's money path
    (:meth:`~flask_customer_portal.contrib.composite.CompositeStorage.lock_subscription`)."""

    def lock_provider_subscription(
        self, customer_id: str, subscription_id: str
    ) -> AbstractContextManager[ProviderSubscriptionLock]:
        """Hold the portal customer's subscription ``subscription_id`` (the
        provider's id) for the ``with`` block; a second caller waits until
        the block ends. The caller has checked that the subscription is the
        customer's: the lock itself knows nothing of it."""


@runtime_checkable
class PlanStore(Protocol):
    """The merchant's plan catalogue and plan changes set for period end."""

    def list_plans(self, product_name: str) -> Sequence[Plan]:
        """The active plans of a product, by ``position`` then id."""

    def get_plan(self, plan_id: str) -> Plan | None:
        """A plan by id, active or not, or ``None``."""

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
        """Set (or, with ``plan_id=None``, clear) the plan the subscription
        moves to when its current period ends. ``None`` if not this
        customer's; raises :class:`StateConflict` unless it is ``active``,
        not set to end, with its period still ahead (and, to clear, a
        change scheduled)."""


@runtime_checkable
class BillingDetailsStore(Protocol):
    """The name, address and tax ID invoices are made out to."""

    def get_billing_details(self, customer_id: str) -> BillingDetails | None:
        """The customer's current billing details, or ``None`` if they saved none."""

    def save_billing_details(
        self, customer_id: str, details: BillingDetails, *, event: AuditEvent | None = None
    ) -> BillingDetails | None:
        """Replace the customer's billing details (``updated_at`` defaults to
        now). Invoices issued from then on carry a copy; invoices already
        issued keep theirs. ``None`` if there is no such customer."""

    def add_invoice_billing_details(
        self, customer_id: str, invoice_id: str, details: BillingDetails, *, event: AuditEvent | None = None
    ) -> Invoice | None:
        """Give an open invoice that has no billing details a copy of
        ``details``, atomically: of two concurrent calls only one succeeds.
        ``None`` if the invoice is not this customer's; raises
        :class:`StateConflict` if it already has billing details (they are
        never replaced) or is no longer open (a paid, void or refunded
        invoice keeps what it was issued with; see
        :func:`~flask_customer_portal.billing.periods.invoice_takes_billing_details`).
        Decide and write in one step, so an invoice paid meanwhile is
        refused."""


@runtime_checkable
class CreditNoteStore(Protocol):
    """Where the merchant's back office records refunds and credit notes of
    the portal's own invoices (the portal itself only reads them, through
    :meth:`BillingStore.get_invoice`)."""

    def add_credit_note(self, credit_note: CreditNote, *, event: AuditEvent | None = None) -> CreditNote:
        """Record a credit note of a paid invoice of the same customer and
        currency, and add its amount and refunded part to the invoice's
        :attr:`~Invoice.amount_credited` and :attr:`~Invoice.amount_refunded`
        in the same transaction; the invoice becomes ``refunded`` when its
        refunds reach its total. Exactly once: the same credit note again
        (same id) changes nothing and returns the one recorded. Raises
        :class:`StateConflict` when the invoice is not this customer's, not
        paid, in another currency, or when its credit notes would take off
        more than its total, even when two are recorded at once; raises
        ``ValueError`` for amounts that do not add up."""


@runtime_checkable
class MailQueue(Protocol):
    """A transaction that takes emails: a :class:`SubscriptionLock` or
    :class:`ProviderSubscriptionLock` that has this method writes the
    emails a billing change causes in that change's own transaction, so
    they are written with it or not at all. Optional: with a lock without
    it, the portal writes them right after the lock's block ends."""

    def enqueue_mail(self, mail: OutboxMail) -> None:
        """Put ``mail`` in the outbox in this transaction."""


@runtime_checkable
class MailOutboxStore(Protocol):
    """The mail outbox: every email the portal sends is written here in the
    transaction of the change that causes it, and delivered after commit by
    a sender that claims rows with a lease (:mod:`flask_customer_portal.outbox`).

    Optional: a store without it sends mail as before, from the process
    that made the change, once, with no retry."""

    def enqueue_mail(
        self,
        mails: Sequence[OutboxMail],
        *,
        link: LinkRecord | None = None,
        events: Sequence[AuditEvent] = (),
    ) -> None:
        """Write ``mails``, the one-time ``link`` they carry and ``events``
        in one transaction: all of them or none."""

    def claim_mail(
        self,
        now: datetime,
        *,
        owner: str,
        lease: timedelta,
        limit: int = 1,
        mail_ids: Sequence[str] | None = None,
        due_by: datetime | None = None,
    ) -> Sequence[OutboxMail]:
        """Claim up to ``limit`` pending rows (of ``mail_ids`` only, if
        given) that are due at ``due_by`` (default ``now``) and not claimed
        by a lease still running at ``now``, for
        ``owner`` until ``now + lease``, counting one more attempt on each;
        oldest due first. Of concurrent callers each row goes to exactly
        one, decided by the database (a conditional ``UPDATE``), never by a
        read before the write. A row named in ``mail_ids`` that was never
        tried is due at once: its writer hands it over as it commits, and
        another host's clock may be behind."""

    def compose_mail(
        self,
        mail: OutboxMail,
        *,
        owner: str,
        link: LinkRecord | None = None,
        events: Sequence[AuditEvent] = (),
    ) -> bool:
        """Give the claimed request row ``mail.id`` its message (kind,
        recipient, customer, subject, bodies, headers, expiry: ``mail``'s),
        together with ``link`` and ``events``, in one transaction. ``False``,
        with nothing written, if ``owner`` no longer holds the row."""

    def discard_mail(self, mail_id: str, *, owner: str) -> bool:
        """Delete the claimed request row that turned out to need no email
        (a login link asked for an address that is no customer's)."""

    def release_mail(
        self,
        mail_id: str,
        *,
        owner: str,
        now: datetime,
        status: MailStatus,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Record the outcome of ``owner``'s attempt and end its claim:
        ``sent`` (at ``now``; the bodies, which may carry a sign-in link,
        are cleared), ``pending`` again until ``next_attempt_at`` with
        ``error``, or ``failed`` with ``error``. ``False``, with nothing
        written, if the row is no longer ``owner``'s (its lease ran out and
        another sender claimed it) or no longer pending."""

    def mail_counts(self, now: datetime) -> MailCounts:
        """How many rows are pending (and due), failed and sent."""

    def list_mail(self, *, status: MailStatus, limit: int = 50) -> Sequence[OutboxMail]:
        """Rows in ``status``, most recent first (``flask portal mail-status``)."""


@runtime_checkable
class PortalStorage(
    CustomerStore,
    BillingStore,
    LicenseKeyStore,
    AccessStore,
    ChargeStore,
    PlanStore,
    BillingDetailsStore,
    ProviderLockStore,
    MailOutboxStore,
    Protocol,
):
    """Everything the portal reads and writes, in one object."""
