"""The records the portal shows: frozen dataclasses, their states, and the
errors a store raises for a change it refuses.

Stores (:mod:`flask_customer_portal.storage`) return these and nothing else;
every name is also importable from :mod:`flask_customer_portal.storage` and,
for the ones the host app needs, from :mod:`flask_customer_portal`.

All amounts are integers in minor units with an ISO 4217 currency; all
datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from .money import Money

__all__ = [
    "ERASED_EMAIL_DOMAIN",
    "RENEWING_STATUSES",
    "ArrearsAttempt",
    "AuditEvent",
    "BillingDetails",
    "ChargeAttempt",
    "ChargeAttemptStatus",
    "CreditNote",
    "CreditNoteReason",
    "Customer",
    "EmailInUse",
    "ErasureReport",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
    "LicenseKey",
    "LicenseKeyInstance",
    "LicenseKeyStatus",
    "LinkPurpose",
    "LinkRecord",
    "LinkUse",
    "MailCounts",
    "MailStatus",
    "OutboxMail",
    "Page",
    "PaymentMethod",
    "PaymentMethodInUse",
    "Plan",
    "PlanChange",
    "PortalSessionRecord",
    "PromotionCode",
    "PromotionDuration",
    "PromotionRedemption",
    "PruneReport",
    "StateConflict",
    "StorageError",
    "Subscription",
    "SubscriptionStatus",
    "TaxIdScheme",
    "WebhookClaim",
]

T = TypeVar("T")


class SubscriptionStatus(str, enum.Enum):
    """Where a subscription is in its life: ``trialing`` until its trial
    ends, ``active``, ``paused``, ``on_hold`` after a failed renewal, or
    ``cancelled``."""

    ACTIVE = "active"
    #: In a free trial that ends at ``current_period_end``: nothing has
    #: been charged; the first period is charged when the trial ends (then
    #: ``active``, or ``on_hold`` if that payment fails).
    TRIALING = "trialing"
    #: A renewal payment failed. Never renews by itself; a new payment
    #: method pays the arrears and makes it ``active`` again.
    ON_HOLD = "on_hold"
    CANCELLED = "cancelled"
    #: The customer paused it: not renewed or charged until ``resumes_at``
    #: (or until they resume it), then ``active`` with its period moved on
    #: by the paused time.
    PAUSED = "paused"

    def __str__(self) -> str:
        return self.value


#: The statuses that run to the end of their period and are then renewed
#: (a trial's end charges its first period): the ones ``renew-due`` takes,
#: and the ones that may be set to end at period end.
RENEWING_STATUSES = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING})


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


class WebhookClaim(str, enum.Enum):
    """What :meth:`AccessStore.claim_webhook_event` found for one delivery
    of a payment company's webhook event."""

    #: This delivery handles the event: nobody had it, or the delivery that
    #: had it stopped without finishing and its lease ran out.
    CLAIMED = "claimed"
    #: The event was handled before: answer 2xx and do nothing.
    HANDLED = "handled"
    #: Another delivery is handling the event right now: answer an error,
    #: so that the provider delivers it again later.
    IN_PROGRESS = "in_progress"

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
    #: The provider took money, but not the invoice's amount or currency:
    #: the invoice stays open and is never charged again by the portal
    #: (see :data:`~flask_customer_portal.signals.charge_amount_mismatch`).
    AMOUNT_MISMATCH = "amount_mismatch"

    def __str__(self) -> str:
        return self.value


#: The domain of the placeholder address an erased customer's email is
#: replaced with. ``.invalid`` is reserved (RFC 2606, RFC 6761): nothing is
#: ever delivered there, and the portal's forms refuse such addresses.
ERASED_EMAIL_DOMAIN = "erased.invalid"


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

    @property
    def is_erased(self) -> bool:
        """The customer's personal data was erased
        (:meth:`~flask_customer_portal.CustomerPortal.erase_customer`): the
        record stays for the invoices that name it, but nobody signs in as it."""
        return self.email.endswith("@" + ERASED_EMAIL_DOMAIN)


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
    is_default: bool = False
    """The customer's default method: the one the portal offers first and,
    at a provider that has the notion (Stripe's
    ``invoice_settings.default_payment_method``), the one it charges when
    nothing else is named. At most one of a customer's methods is the default."""


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
    plan_id: str | None = None
    """The :class:`Plan` of the catalogue the subscription is on; ``None``
    for one sold outside the catalogue (it cannot change plan)."""
    quantity: int = 1
    """Seats of a per-seat plan (1 otherwise). ``price`` is already the
    price of the whole quantity: what each period costs."""
    scheduled_plan_id: str | None = None
    """A plan change that takes effect when the current period ends."""
    scheduled_quantity: int | None = None
    credit: int = 0
    """Minor units of ``price.currency`` owed to the customer (unused time of
    a downgrade); taken off the next renewal invoices until used up."""
    paused_at: datetime | None = None
    """When a ``paused`` subscription was paused."""
    resumes_at: datetime | None = None
    """When a ``paused`` subscription becomes ``active`` again by itself."""
    discount_percent: int = 0
    """A retention discount: percent taken off each of the next
    ``discount_renewals`` renewal invoices."""
    discount_renewals: int = 0
    """How many more renewal invoices get ``discount_percent`` off."""

    @property
    def is_current(self) -> bool:
        """Still running (trialing, active, paused or on hold), as opposed to past."""
        return self.status is not SubscriptionStatus.CANCELLED


@dataclass(frozen=True, slots=True)
class Plan:
    """One way the merchant sells a product: a price per interval.

    A subscription may move between the active plans of its product in its
    own currency (see :doc:`/plans`). For a per-seat plan ``price`` is the
    price of one seat and the customer picks a quantity between
    ``min_quantity`` and ``max_quantity``.
    """

    id: str
    product_name: str
    name: str
    price: Money
    interval: str
    """``day``, ``week``, ``month`` or ``year``."""
    interval_count: int = 1
    per_seat: bool = False
    min_quantity: int = 1
    max_quantity: int = 1
    active: bool = True
    """Inactive plans keep their subscribers but are offered to nobody."""
    position: int = 0
    """Order in the list of plans, lowest first."""

    def amount_for(self, quantity: int) -> Money:
        """What one period costs for ``quantity`` seats (1 unless per seat)."""
        return Money(self.price.amount * (quantity if self.per_seat else 1), self.price.currency)


class TaxIdScheme(str, enum.Enum):
    """Which kind of number a customer's tax ID is (see
    :mod:`flask_customer_portal.tax_ids`)."""

    #: A VAT number of an EU member state, with its country prefix (``DE…``, ``EL…``).
    EU_VAT = "eu_vat"
    #: Indonesia's Nomor Pokok Wajib Pajak: 15 digits, or 16 since 2024.
    ID_NPWP = "id_npwp"
    #: A VAT registration number of the United Kingdom (``GB…``).
    GB_VAT = "gb_vat"
    #: Australian Business Number (11 digits).
    AU_ABN = "au_abn"
    # The values are Stripe's names of the same kinds of number, so the
    # Stripe back end passes them through as they are.
    #: Swiss VAT number (``CHE-123.456.789 MWST``).
    CH_VAT = "ch_vat"
    #: Norwegian VAT number (``123456789MVA``).
    NO_VAT = "no_vat"
    #: New Zealand GST number (the IRD number).
    NZ_GST = "nz_gst"
    #: Indian GSTIN (15 characters).
    IN_GST = "in_gst"
    #: Singapore Unique Entity Number.
    SG_UEN = "sg_uen"
    #: Singapore GST registration number.
    SG_GST = "sg_gst"
    #: Canadian Business Number (9 digits).
    CA_BN = "ca_bn"
    #: United States Employer Identification Number.
    US_EIN = "us_ein"
    #: Brazilian company number (CNPJ).
    BR_CNPJ = "br_cnpj"
    #: Brazilian individual taxpayer number (CPF).
    BR_CPF = "br_cpf"
    #: Mexican RFC.
    MX_RFC = "mx_rfc"
    #: Japanese Corporate Number (13 digits).
    JP_CN = "jp_cn"
    #: South Korean Business Registration Number.
    KR_BRN = "kr_brn"
    #: South African VAT number (10 digits, starting with 4).
    ZA_VAT = "za_vat"
    #: United Arab Emirates Tax Registration Number (15 digits).
    AE_TRN = "ae_trn"
    #: Saudi Arabian VAT number (15 digits).
    SA_VAT = "sa_vat"
    #: Turkish tax number (VKN, 10 digits).
    TR_TIN = "tr_tin"
    #: Chilean RUT.
    CL_TIN = "cl_tin"
    #: Colombian NIT.
    CO_NIT = "co_nit"
    #: Argentinian CUIT.
    AR_CUIT = "ar_cuit"
    #: Icelandic VAT number (VSK).
    IS_VAT = "is_vat"
    #: Russian INN.
    RU_INN = "ru_inn"
    #: Taiwanese VAT number (the Unified Business Number).
    TW_VAT = "tw_vat"
    #: Israeli VAT number (the company number).
    IL_VAT = "il_vat"
    #: Thai VAT number (the tax identification number, 13 digits).
    TH_VAT = "th_vat"
    #: Peruvian RUC.
    PE_RUC = "pe_ruc"
    #: Hong Kong Business Registration number (8 digits).
    HK_BR = "hk_br"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class BillingDetails:
    """Who an invoice is made out to: the name and address a business
    files, and its tax ID.

    Stored per customer; an invoice keeps a copy of the details as they
    were when it was issued (:attr:`Invoice.billing_details`).
    """

    name: str
    """Legal or company name."""
    line1: str
    country: str
    """ISO 3166-1 alpha-2, upper case (``"ID"``, ``"DE"``)."""
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    region: str | None = None
    """State, province or county, where addresses name one."""
    tax_id: str | None = None
    """Compact form, as :func:`flask_customer_portal.tax_ids.validate_tax_id` returns it."""
    tax_id_scheme: TaxIdScheme | None = None
    """Set exactly when ``tax_id`` is."""
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    description: str
    quantity: int
    unit_amount: int
    amount: int


class CreditNoteReason(str, enum.Enum):
    """Why a credit note was issued (Stripe's reasons, by the same names)."""

    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    ORDER_CHANGE = "order_change"
    PRODUCT_UNSATISFACTORY = "product_unsatisfactory"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class CreditNote:
    """A document that reduces what a paid invoice charged: the whole of it
    or part, refunded to the payment method or credited to the account.
    Issued once and never changed; a further correction is another credit
    note. Money in the invoice's currency, in minor units."""

    id: str
    number: str
    """Its own number, from a series of its own (``CN-000001``)."""
    invoice_id: str
    customer_id: str
    currency: str
    amount: int
    """What it takes off the invoice, tax included; more than zero."""
    refunded: int
    """The part of :attr:`amount` paid back to the payment method (the rest
    is credit on the account); from zero to :attr:`amount`."""
    issued_at: datetime
    reason: CreditNoteReason | None = None
    memo: str | None = None
    """A note for the customer, in the merchant's words (a payment company's
    free-text reason lands here)."""
    lines: tuple[InvoiceLine, ...] = ()
    """What it credits, line by line; when given, they add up to :attr:`amount`."""

    @property
    def amount_money(self) -> Money:
        return Money(self.amount, self.currency)

    @property
    def refunded_money(self) -> Money:
        return Money(self.refunded, self.currency)


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
    billing_details: BillingDetails | None = None
    """The customer's billing details as they were when the invoice was
    issued (or when the customer added them to it); ``None`` if it has none.
    Never changed once set."""
    amount_refunded: int = 0
    """Paid back to the payment method so far, in minor units (lists carry it too)."""
    amount_credited: int = 0
    """The sum of its credit notes' amounts, refunded or credited."""
    credit_notes: tuple[CreditNote, ...] = ()
    """Its credit notes, oldest first; filled by :meth:`BillingStore.get_invoice`, empty in lists."""

    @property
    def total_money(self) -> Money:
        return Money(self.total, self.currency)

    @property
    def refunded_money(self) -> Money:
        return Money(self.amount_refunded, self.currency)

    @property
    def fully_refunded(self) -> bool:
        """All of it was paid back (status ``refunded``, or refunds that add up to the total)."""
        return self.status is InvoiceStatus.REFUNDED or (0 < self.total <= self.amount_refunded)

    @property
    def partially_refunded(self) -> bool:
        """Part of it was paid back, not all."""
        return self.amount_refunded > 0 and not self.fully_refunded

    @property
    def display_status(self) -> str:
        """The status as the customer reads it: ``refunded`` once refunds
        reach the total, ``partially_refunded`` before, else :attr:`status`."""
        if self.fully_refunded:
            return InvoiceStatus.REFUNDED.value
        return "partially_refunded" if self.partially_refunded else self.status.value

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
class LicenseKeyInstance:
    """One activation of a licence key: a device or installation using it.

    Deactivating one frees its seat (the key's ``activations`` goes down by
    one); the record stays, with ``deactivated_at`` set, as history.
    """

    id: str
    license_key_id: str
    customer_id: str
    name: str
    """What the customer recognises it by, e.g. the device name."""
    created_at: datetime
    deactivated_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.deactivated_at is None


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
class ArrearsAttempt:
    """One try at having a provider that bills its subscriptions itself
    (Dodo Payments) charge an ``on_hold`` subscription's arrears, recorded
    under :meth:`ProviderLockStore.lock_provider_subscription` before the
    provider is asked, so that no other submit asks again while its outcome
    is open (``unknown`` or ``requires_action``).

    ``idempotency_key`` is derived from what is paid — the subscription, the
    period end its arrears are for and the attempt number
    (``arrears:<subscription id>:<period end>:attempt:<n>``) — never from
    the request. ``customer_id`` is the portal's customer id,
    ``subscription_id`` and ``payment_method_id`` the provider's ids.
    """

    customer_id: str
    subscription_id: str
    attempt: int
    idempotency_key: str
    status: ChargeAttemptStatus
    created_at: datetime
    payment_method_id: str | None = None
    decline_reason: str | None = None
    provider_reference: str | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PlanChange:
    """What a plan change made now was, kept with its proration invoice
    (issued under the same lock) so that a payment whose answer was lost can
    finish the change later, exactly as the customer confirmed it, whoever
    settles it (see :doc:`/plans`).

    The ``from_*`` fields say what the subscription was when the change was
    priced; the change is only made as recorded while it still is.
    """

    invoice_id: str
    customer_id: str
    subscription_id: str
    plan_id: str
    quantity: int
    unit_price: int
    """The plan's price per period (and per seat) the customer was shown,
    in minor units of the invoice's currency."""
    period_start: datetime
    period_end: datetime
    """The subscription's period after the change."""
    credit_after: int
    """The subscription's account credit after the change."""
    from_plan_id: str | None
    from_quantity: int
    from_period_end: datetime
    from_credit: int
    priced_at: datetime
    created_at: datetime


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
class LinkUse:
    """The link a sign-in uses up, for
    :meth:`AccessStore.start_portal_session`."""

    token_hash: str
    purpose: LinkPurpose


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
    public_id: str | None = None
    """A random id that names the session in the customer's session list
    (the record's ``id`` is a hash of the cookie's secret and never shown)."""
    location: str | None = None
    """The merchant's session locator's answer at sign-in ("Jakarta,
    Indonesia"); never the IP address, which is not stored at all."""


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
class PruneReport:
    """What :meth:`AccessStore.prune_expired` removed, in rows."""

    links: int = 0
    sessions: int = 0
    webhook_events: int = 0
    mail: int = 0
    """Outbox rows sent before the retention period."""

    @property
    def total(self) -> int:
        return self.links + self.sessions + self.webhook_events + self.mail


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What :meth:`CustomerStore.erase_customer` did to one customer's
    records, in rows. ``payment_methods_kept`` are the ones issued records
    name (their token removed); ``license_keys_deleted`` went with their
    activations; ``audit_events_scrubbed`` kept their event but lost
    details; ``invoices_kept`` are unchanged."""

    customer_id: str
    sessions_deleted: int = 0
    links_deleted: int = 0
    billing_details_deleted: int = 0
    payment_methods_deleted: int = 0
    payment_methods_kept: int = 0
    license_keys_deleted: int = 0
    audit_events_scrubbed: int = 0
    invoices_kept: int = 0
    mail_deleted: int = 0
    """Outbox rows addressed to the customer, sent or not."""


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


# --- the mail outbox ------------------------------------------------------------


class MailStatus(str, enum.Enum):
    """Where an email in the outbox is: waiting (for its first try or a
    retry), handed to the mail server, or given up on."""

    PENDING = "pending"
    SENT = "sent"
    #: Every attempt failed, or the server refused it for good: the row
    #: stays, and the ``mail_failed`` signal was sent.
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class OutboxMail:
    """One email in the outbox (:class:`~flask_customer_portal.storage.MailOutboxStore`):
    written with the change that causes it, delivered after that change is
    committed.

    ``headers`` holds a ``Message-ID`` made once per row, so that a
    message sent again after a crash is recognisably the same one. A row
    with ``composed`` false is a request whose message is made when it is
    delivered (a login link asked for on the static page: the address is
    all that is known then); its ``locale`` is the language of the browser
    that asked."""

    id: str
    kind: str
    """The email's template name, e.g. ``login_link``, ``invoice_paid``."""
    to: str
    subject: str
    text: str
    html: str
    created_at: datetime
    customer_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    status: MailStatus = MailStatus.PENDING
    attempts: int = 0
    """Attempts started (counted when a sender claims the row)."""
    next_attempt_at: datetime | None = None
    """When the row is next due; ``None``: at once."""
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    expires_at: datetime | None = None
    """After this the message is worth nothing (its link has expired): it
    is given up on instead of sent."""
    composed: bool = True
    locale: str | None = None

    @property
    def message_id(self) -> str | None:
        return self.headers.get("Message-ID")


@dataclass(frozen=True, slots=True)
class MailCounts:
    """How the outbox stands (``flask portal mail-status``)."""

    pending: int = 0
    due: int = 0
    """Pending rows due now and not claimed by a sender."""
    failed: int = 0
    sent: int = 0
    oldest_due_at: datetime | None = None
    """When the longest-waiting due row became due."""


class PromotionDuration(str, enum.Enum):
    """How many billing periods a promotion code's discount lasts."""

    ONCE = "once"
    #: ``duration_periods`` periods.
    REPEATING = "repeating"
    FOREVER = "forever"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class PromotionCode:
    """A code a customer may enter for a discount (see :doc:`/promotions`).

    Exactly one of ``percent_off`` (1-100) and ``amount_off`` is set; an
    amount applies only to prices in its currency. Codes are compared
    without regard to case (``welcome10`` is ``WELCOME10``).
    """

    code: str
    percent_off: int | None = None
    amount_off: Money | None = None
    duration: PromotionDuration = PromotionDuration.ONCE
    duration_periods: int = 1
    """For ``repeating``: how many billing periods get the discount."""
    expires_at: datetime | None = None
    """From this moment on the code is refused."""
    plan_ids: frozenset[str] = frozenset()
    """The plans the code applies to; empty for every plan."""
    max_redemptions: int | None = None
    """How many customers may use it in all; ``None`` for no limit. Each
    customer may use a code once."""
    active: bool = True

    def __post_init__(self) -> None:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("a promotion code takes either percent_off or amount_off")
        if self.percent_off is not None and not 1 <= self.percent_off <= 100:
            raise ValueError(f"percent_off is 1-100, got {self.percent_off}")
        if self.amount_off is not None and self.amount_off.amount <= 0:
            raise ValueError("amount_off must be more than zero")
        if self.duration_periods < 1:
            raise ValueError("duration_periods must be 1 or more")
        if self.max_redemptions is not None and self.max_redemptions < 1:
            raise ValueError("max_redemptions must be 1 or more")

    @property
    def key(self) -> str:
        """The code as stored and compared: stripped and upper case."""
        return normalise_code(self.code)


def normalise_code(code: str) -> str:
    """A code as stored and compared: without surrounding spaces, upper case."""
    return code.strip().upper()


@dataclass(frozen=True, slots=True)
class PromotionRedemption:
    """One customer's use of a promotion code (at most one per code)."""

    code: str
    """The code's :attr:`PromotionCode.key`."""
    customer_id: str
    subscription_id: str
    redeemed_at: datetime
    invoice_id: str | None = None
