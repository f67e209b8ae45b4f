"""What a store can do beyond what every store does, as types.

Every store reads and changes customers, subscriptions, invoices, payment
methods, licence keys and sessions. Some features need more: pausing needs
a store that can pause, plan changes need plans and the subscription lock,
and so on. A store has a feature when it has the methods of that feature's
protocol below; :func:`capabilities_of` asks once, when the portal is
registered, and the answer is kept in the portal's state
(``state.capabilities``). The portal offers no action its store cannot do.

A store that serves some subscriptions from elsewhere (the
:class:`~flask_customer_portal.contrib.composite.CompositeStorage`) declares
its capabilities itself with a ``portal_capabilities()`` method."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Generic, Protocol, runtime_checkable

from .payments import (
    BillsSubscriptions,
    CardElementProvider,
    ContentSecurityPolicyProvider,
    NewMethodPageProvider,
)
from .records import StateConflict

if TYPE_CHECKING:
    from .money import Money
    from .records import AuditEvent, PaymentMethod, PromotionCode, Subscription

__all__ = [
    "Capabilities",
    "ChangesPlans",
    "ChangesPlansAtProvider",
    "ChargesSubscriptions",
    "ClaimsDueSubscriptions",
    "ClaimsWebhookEvents",
    "CreatesCustomers",
    "DeclaresCapabilities",
    "ErasesCustomers",
    "GrantsRetentionDiscounts",
    "KeepsDefaultPaymentMethod",
    "LinksInvoicePdfs",
    "LocksInvoices",
    "LocksProviderSubscriptions",
    "PausesSubscriptions",
    "ProviderCapabilities",
    "ProviderPlanChangeDeclined",
    "ProviderPlanPreview",
    "ProviderPromotionCode",
    "ProviderPromotionCodeRefused",
    "PrunesExpiredRecords",
    "PrunesWebhookEvents",
    "QueuesMail",
    "SettlesPlanChanges",
    "StartsPortalSessions",
    "TakesProviderPlanChangeCodes",
    "TakesProviderPromotionCodes",
    "capabilities_of",
    "implements",
    "provider_capabilities_of",
]


@runtime_checkable
class PausesSubscriptions(Protocol):
    def pause_subscription(self, *args: object, **kwargs: object) -> object: ...
    def unpause_subscription(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class GrantsRetentionDiscounts(Protocol):
    def set_retention_discount(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class ChargesSubscriptions(Protocol):
    """The portal's own money path: the subscription lock and the due lists."""

    def lock_subscription(self, *args: object, **kwargs: object) -> object: ...
    def subscriptions_due(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class ClaimsDueSubscriptions(Protocol):
    """Renewal runners on several hosts share the work
    (:class:`~flask_customer_portal.storage.DueClaimStore`)."""

    def subscriptions_due_after(self, *args: object, **kwargs: object) -> object: ...
    def claim_due_subscription(self, *args: object, **kwargs: object) -> object: ...
    def claims_in_parallel(self, *args: object, **kwargs: object) -> object: ...
    def share_due(self, *args: object, **kwargs: object) -> object: ...
    def subscriptions_to_resume_after(self, *args: object, **kwargs: object) -> object: ...
    def plan_changes_to_settle_after(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class ChangesPlans(Protocol):
    def list_plans(self, *args: object, **kwargs: object) -> object: ...
    def get_plan(self, *args: object, **kwargs: object) -> object: ...
    def schedule_plan_change(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class SettlesPlanChanges(Protocol):
    def plan_changes_to_settle(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class ClaimsWebhookEvents(Protocol):
    def claim_webhook_event(self, *args: object, **kwargs: object) -> object: ...
    def finish_webhook_event(self, *args: object, **kwargs: object) -> object: ...
    def release_webhook_event(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class CreatesCustomers(Protocol):
    def add_customer(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class ErasesCustomers(Protocol):
    def erase_customer(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class PrunesExpiredRecords(Protocol):
    def prune_expired(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class QueuesMail(Protocol):
    """The mail outbox (:class:`~flask_customer_portal.storage.MailOutboxStore`)."""

    def enqueue_mail(self, *args: object, **kwargs: object) -> object: ...
    def claim_mail(self, *args: object, **kwargs: object) -> object: ...
    def compose_mail(self, *args: object, **kwargs: object) -> object: ...
    def discard_mail(self, *args: object, **kwargs: object) -> object: ...
    def release_mail(self, *args: object, **kwargs: object) -> object: ...
    def mail_counts(self, *args: object, **kwargs: object) -> object: ...
    def list_mail(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class StartsPortalSessions(Protocol):
    def start_portal_session(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class LocksProviderSubscriptions(Protocol):
    """A lock in the merchant's database for subscriptions that live at a
    payment company (:class:`~flask_customer_portal.storage.ProviderLockStore`):
    it holds across processes and hosts."""

    def lock_provider_subscription(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class LocksInvoices(Protocol):
    """Holds one invoice of no subscription still while it is paid from its
    page (:class:`~flask_customer_portal.storage.InvoiceLockStore`)."""

    def lock_invoice(self, *args: object, **kwargs: object) -> object: ...


@runtime_checkable
class LinksInvoicePdfs(Protocol):
    """A billing back end that issues its own invoice PDFs (Stripe's
    ``invoice_pdf``): the portal's PDF link goes there."""

    def invoice_pdf_url(self, customer_id: str, invoice_id: str) -> str | None: ...


@runtime_checkable
class PrunesWebhookEvents(Protocol):
    """Forgets the webhook events kept to ignore repeated deliveries."""

    def prune_webhook_events(self, received_before: datetime) -> int: ...


@runtime_checkable
class KeepsDefaultPaymentMethod(Protocol):
    """Keeps one of a customer's saved methods as their default
    (:attr:`~flask_customer_portal.storage.PaymentMethod.is_default`)."""

    def set_default_payment_method(
        self, customer_id: str, payment_method_id: str, *, event: AuditEvent | None = None
    ) -> PaymentMethod | None:
        """Make the method the customer's default and no other of theirs;
        the method as saved, or ``None`` if it is not this customer's."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store can do beyond the core. Each flag names a feature; the
    protocol next to it lists the methods that feature needs."""

    pause: bool = False
    """Pause and unpause subscriptions (:class:`PausesSubscriptions`)."""
    retention_discount: bool = False
    """Grant a retention discount (:class:`GrantsRetentionDiscounts`)."""
    charge: bool = False
    """Run the portal's own money path (:class:`ChargesSubscriptions`)."""
    plans: bool = False
    """A plan catalogue and changes set for a period's end (:class:`ChangesPlans`)."""
    plan_settlement: bool = False
    """Settle plan changes whose payment had an unknown outcome (:class:`SettlesPlanChanges`)."""
    webhook_claims: bool = False
    """Claim webhook deliveries once across processes (:class:`ClaimsWebhookEvents`)."""
    add_customer: bool = False
    """Create customers (:class:`CreatesCustomers`)."""
    erase: bool = False
    """Erase a customer's personal data (:class:`ErasesCustomers`)."""
    prune: bool = False
    """Delete expired links, sessions and old audit events (:class:`PrunesExpiredRecords`)."""
    start_session_at_once: bool = False
    """Use a link and start a session in one transaction (:class:`StartsPortalSessions`)."""
    provider_lock: bool = False
    """Lock a payment company's subscription across processes for the money
    path over it (:class:`LocksProviderSubscriptions`); without it that money
    path is refused."""
    invoice_pdf_links: bool = False
    """Link to invoice PDFs the billing back end issues (:class:`LinksInvoicePdfs`)."""
    webhook_pruning: bool = False
    """Forget old webhook events (:class:`PrunesWebhookEvents`)."""
    mail_outbox: bool = False
    """Write emails with the change that causes them and deliver them after
    commit, with retries (:class:`QueuesMail`)."""
    due_claims: bool = False
    """Renew from several runners at once, each claiming what it renews
    (:class:`ClaimsDueSubscriptions`)."""
    default_payment_method: bool = False
    """Keep a customer's default payment method (:class:`KeepsDefaultPaymentMethod`)."""
    invoice_lock: bool = False
    """Pay an invoice of no subscription from its page, under the invoice's
    own lock (:class:`LocksInvoices`)."""
    provider_plan_change: bool = False
    """Change plans now at the payment company, with its own proration
    preview (:class:`ChangesPlansAtProvider`), under the portal's lock of the
    subscription (``provider_lock``)."""
    provider_plan_change_codes: bool = False
    """Take the payment company's own promotion codes at a plan change
    (:class:`TakesProviderPlanChangeCodes`)."""
    provider_promotion_codes: bool = False
    """Take the payment company's own promotion codes on a subscription too,
    outside a plan change (:class:`TakesProviderPromotionCodes`)."""

    @property
    def plan_change(self) -> bool:
        """Change plans now: the plan catalogue and the portal's money path."""
        return self.charge and self.plans

    @classmethod
    def everything(cls) -> Capabilities:
        """A store that can do all of it."""
        return cls(**{field.name: True for field in fields(cls)})


@runtime_checkable
class DeclaresCapabilities(Protocol):
    """A store that says what it can do itself."""

    def portal_capabilities(self) -> Capabilities: ...


@dataclass(frozen=True, slots=True)
class ProviderPlanPreview:
    """What the payment company says a plan change comes to now, in its
    own figures (minor units, the subscription's currency)."""

    due_now: Money
    """Charged now: the prorated difference after credits (never below zero)."""
    unused: Money
    """Credit for the unused time of the current plan."""
    new_charge: Money
    """The new plan's price for the rest of the period."""
    effective_at: datetime
    """The second the figures were worked out for."""
    from_plan_id: str | None = None
    """The plan the subscription is on as the company has it now (read
    from it, not from a cache)."""
    from_quantity: int = 1
    discount: Money | None = None
    """What a promotion code took off ``due_now`` (``None`` without one)."""


class ProviderPlanChangeDeclined(StateConflict):
    """The company kept the old plan because the change's payment failed."""

    def __init__(self, message: str, decline_reason: str | None = None) -> None:
        super().__init__(message)
        #: A :class:`~flask_customer_portal.payments.DeclineReason` value, if known.
        self.decline_reason = decline_reason


@runtime_checkable
class ChangesPlansAtProvider(Protocol):
    """A payment company's billing store that changes a subscription's plan
    itself and previews what that costs. ``plan_id`` is the company's id of
    the new plan (a Dodo product, a Stripe price); the portal calls both
    methods under its lock of the subscription
    (:class:`LocksProviderSubscriptions`)."""

    def preview_provider_plan_change(
        self, customer_id: str, subscription_id: str, *, plan_id: str, quantity: int, at: datetime
    ) -> ProviderPlanPreview | None:
        """What the change would charge now (``None``: not the customer's
        subscription). Charges nothing."""

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
        """Change the plan now, charging the saved payment method what
        :meth:`preview_provider_plan_change` said; the company refuses the
        change if the charge fails (:class:`ProviderPlanChangeDeclined`). A repeat with
        the same ``idempotency_key`` changes and charges nothing more."""


@dataclass(frozen=True, slots=True)
class ProviderPromotionCode:
    """A payment company's promotion code, found by what the customer typed."""

    id: str
    """The company's id of the code (Stripe's ``promo_…``)."""
    code: PromotionCode
    """Its terms, as the portal shows them. The company applies its own
    (and its own restrictions) when the code is used."""


class ProviderPromotionCodeRefused(StateConflict):
    """The company would not apply the code (one of its restrictions:
    used up, expired, for another customer, for first purchases only, a
    minimum amount …), or the subscription has a discount already
    (``has_discount``). Nothing was charged or changed."""

    def __init__(self, message: str, *, has_discount: bool = False) -> None:
        super().__init__(message)
        self.has_discount = has_discount


@runtime_checkable
class TakesProviderPlanChangeCodes(Protocol):
    """A payment company's billing store that takes the company's own
    promotion codes at a plan change: the customer enters a code, and the
    company checks it, applies it with the change and counts its use. The
    portal calls the methods that change anything under its lock of the
    subscription (:class:`LocksProviderSubscriptions`). Dodo Payments takes
    codes only this way; Stripe also on a subscription
    (:class:`TakesProviderPromotionCodes`)."""

    def find_provider_promotion_code(self, customer_id: str, code: str) -> ProviderPromotionCode | None:
        """The active code ``code`` (any case) this customer may be offered,
        or ``None``. Changes nothing."""

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
        """As :meth:`ChangesPlansAtProvider.preview_provider_plan_change`,
        with the code's discount (``discount``). Raises
        :class:`ProviderPromotionCodeRefused`."""

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
        """As :meth:`ChangesPlansAtProvider.make_provider_plan_change`, the
        code applied to the subscription in the same call. Raises
        :class:`ProviderPromotionCodeRefused` and
        :class:`ProviderPlanChangeDeclined`, changing nothing."""


@runtime_checkable
class TakesProviderPromotionCodes(TakesProviderPlanChangeCodes, Protocol):
    """A payment company's billing store that takes the company's own
    promotion codes at a plan change (:class:`TakesProviderPlanChangeCodes`)
    and on a subscription, outside a plan change."""

    def apply_provider_promotion_code(
        self, customer_id: str, subscription_id: str, *, promotion_code_id: str, idempotency_key: str
    ) -> Subscription | None:
        """Make the code the subscription's discount on its next invoices
        (``None``: not the customer's subscription). Raises
        :class:`ProviderPromotionCodeRefused`; a repeat with the same
        ``idempotency_key`` changes nothing more."""


def implements(storage: object, protocol: type) -> bool:
    """Whether ``storage`` has every method of ``protocol``, callable (an
    attribute set to ``None`` does not count, as ``isinstance`` would),
    those it has from the protocols it extends too."""
    members = {
        name
        for base in protocol.__mro__
        if base not in (object, Protocol, Generic)
        for name in vars(base)
        if not name.startswith("_")
    }
    return all(callable(getattr(storage, name, None)) for name in members)


def capabilities_of(storage: object) -> Capabilities:
    """What ``storage`` can do: its own declaration, or the protocols it
    implements."""
    if isinstance(storage, DeclaresCapabilities):
        return storage.portal_capabilities()
    charge = implements(storage, ChargesSubscriptions)
    return Capabilities(
        pause=implements(storage, PausesSubscriptions),
        retention_discount=implements(storage, GrantsRetentionDiscounts),
        charge=charge,
        plans=implements(storage, ChangesPlans),
        plan_settlement=charge and implements(storage, SettlesPlanChanges),
        webhook_claims=implements(storage, ClaimsWebhookEvents),
        add_customer=implements(storage, CreatesCustomers),
        erase=implements(storage, ErasesCustomers),
        prune=implements(storage, PrunesExpiredRecords),
        start_session_at_once=implements(storage, StartsPortalSessions),
        provider_lock=implements(storage, LocksProviderSubscriptions),
        invoice_pdf_links=implements(storage, LinksInvoicePdfs),
        webhook_pruning=implements(storage, PrunesWebhookEvents),
        mail_outbox=implements(storage, QueuesMail),
        due_claims=charge and implements(storage, ClaimsDueSubscriptions),
        default_payment_method=implements(storage, KeepsDefaultPaymentMethod),
        invoice_lock=implements(storage, LocksInvoices),
        provider_plan_change=implements(storage, ChangesPlansAtProvider)
        and implements(storage, LocksProviderSubscriptions),
        provider_plan_change_codes=implements(storage, TakesProviderPlanChangeCodes)
        and implements(storage, LocksProviderSubscriptions),
        provider_promotion_codes=implements(storage, TakesProviderPromotionCodes)
        and implements(storage, LocksProviderSubscriptions),
    )


@dataclass(frozen=True, slots=True)
class ProviderCapabilities:
    """What the payment provider does beyond
    :class:`~flask_customer_portal.payments.PaymentProvider`, found once when
    the portal is registered (``state.provider_capabilities``)."""

    card_element: bool = False
    """New cards go through its card element
    (:class:`~flask_customer_portal.payments.CardElementProvider`)."""
    new_method_page: bool = False
    """New methods are taken on its own page
    (:class:`~flask_customer_portal.payments.NewMethodPageProvider`)."""
    content_security_policy: bool = False
    """Its card element needs sources in the page's policy
    (:class:`~flask_customer_portal.payments.ContentSecurityPolicyProvider`)."""
    bills_subscriptions: bool = False
    """It renews subscriptions itself and owns their plans
    (:class:`~flask_customer_portal.payments.BillsSubscriptions`); the portal
    pays their arrears through it
    (:class:`~flask_customer_portal.payments.SubscriptionBiller`)."""


def provider_capabilities_of(payments: object) -> ProviderCapabilities:
    """What ``payments`` does beyond the core, from the protocols it implements."""
    return ProviderCapabilities(
        card_element=isinstance(payments, CardElementProvider) and bool(payments.card_element_template),
        new_method_page=isinstance(payments, NewMethodPageProvider),
        content_security_policy=isinstance(payments, ContentSecurityPolicyProvider),
        bills_subscriptions=isinstance(payments, BillsSubscriptions) and bool(payments.bills_subscriptions),
    )
