"""Dodo's :class:`~flask_customer_portal.payments.PaymentProvider`: no
charges or cards of its own; arrears are paid by giving the subscription a
saved payment method, which Dodo then charges."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from dodopayments import APIConnectionError, APIError, APIStatusError

from ...money import Money
from ...payments import (
    AttachResult,
    CardDetails,
    ChargeDeclined,
    ChargeFailed,
    ChargeRequiresAction,
    ChargeResult,
    ChargeSucceeded,
    ChargeUnknown,
    DeclineReason,
    MethodDeclined,
)
from ._convert import decline_reason
from .store import PAGE_SIZE, DodoBilling

logger = logging.getLogger("flask_customer_portal")

#: The header that carries the portal's idempotency key of a money request.
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: How far Dodo's clock may be behind the portal's when a payment made by a
#: call is looked for by the time of the call.
_CLOCK_ALLOWANCE = timedelta(minutes=5)


class DodoPaymentProvider:
    """The portal's :class:`~flask_customer_portal.payments.PaymentProvider`
    for Dodo Payments.

    Dodo collects card details on its own payment page and bills
    subscriptions itself, so this provider takes no card data
    (``accepts_raw_cards`` is false, :meth:`attach_card` and
    :meth:`attach_token` refuse) and makes no charges of its own
    (:meth:`charge` answers :class:`~flask_customer_portal.payments.ChargeFailed`).
    What it does do is :meth:`pay_arrears`: give an ``on_hold`` subscription
    a saved payment method through ``update_payment_method``, after which
    Dodo charges what is owed and reactivates the subscription.
    """

    accepts_raw_cards = False
    #: The portal hands reactivations to :meth:`pay_arrears`.
    bills_subscriptions = True
    #: The setting :func:`~flask_customer_portal.production.check_provider_mode` names.
    mode_setting = "DODO_PAYMENTS_ENVIRONMENT"

    def __init__(self, billing: DodoBilling) -> None:
        self.billing = billing
        #: Dodo's test environment moves no real money; ``init_app`` refuses
        #: it in live mode, and the live environment in test mode.
        self.is_test = billing.environment == "test_mode"

    def __repr__(self) -> str:
        return f"DodoPaymentProvider({self.billing!r})"

    def new_method_page(self, *, subscription_id: str, return_url: str) -> str:
        """Where the customer enters a new payment method for the
        subscription: Dodo's payment page, which comes back to
        ``return_url``. For an ``on_hold`` subscription Dodo then charges
        what is owed with it. The portal's payment-method page sends
        "a new card" here (see :doc:`/providers`)."""
        return self.billing.new_method_link(subscription_id, return_url=return_url)

    def attach_card(self, customer_id: str, card: CardDetails) -> AttachResult:
        logger.error("Dodo Payments takes card details on its own payment page only; refused")
        return MethodDeclined(DeclineReason.GENERIC)

    def attach_token(self, customer_id: str, token: str) -> AttachResult:
        logger.error("Dodo Payments has no card element tokens; new methods are added on Dodo's payment page")
        return MethodDeclined(DeclineReason.GENERIC)

    def charge(
        self,
        *,
        customer_id: str,
        provider_token: str,
        amount: Money,
        idempotency_key: str,
        invoice_id: str,
        description: str,
    ) -> ChargeResult:
        return ChargeFailed("Dodo Payments bills its subscriptions itself", retryable=False)

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        return None

    def pay_arrears(
        self,
        *,
        subscription_id: str,
        provider_token: str,
        idempotency_key: str | None = None,
        return_url: str | None = None,
    ) -> ChargeResult:
        """Set the saved method ``provider_token`` on the subscription;
        Dodo charges the arrears with it. The answer says what came of that
        charge: :class:`ChargeSucceeded`, :class:`ChargeDeclined`,
        :class:`ChargeRequiresAction` (Dodo's payment page, e.g. 3-D Secure),
        :class:`ChargeUnknown` (still processing, or no answer: Dodo's
        webhook will tell) or :class:`ChargeFailed` (refused, nothing charged).
        The caller must still check the subscription's status.

        ``idempotency_key`` is sent as the ``Idempotency-Key`` header. The
        request is made once, without the SDK's automatic retries: a retry
        of a request whose answer was lost could charge a second time, so
        no answer is :class:`ChargeUnknown`, for the caller to reconcile
        with :meth:`find_arrears_charge`."""
        client = self.billing.client
        if client.max_retries:
            client = client.with_options(max_retries=0)
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else None
        try:
            answer = client.subscriptions.update_payment_method(
                subscription_id,
                payment_method={"type": "existing", "payment_method_id": provider_token},
                extra_headers=headers,
            )
        except APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (408, 429):
                logger.error("Dodo Payments answered HTTP %s to update_payment_method", exc.status_code)
                return ChargeUnknown(subscription_id)
            logger.warning("Dodo Payments refused update_payment_method (HTTP %s)", exc.status_code)
            return ChargeFailed(f"Dodo Payments refused the payment method (HTTP {exc.status_code})", False)
        except APIConnectionError as exc:
            logger.error("No answer from Dodo Payments to update_payment_method: %s", type(exc).__name__)
            return ChargeUnknown(subscription_id)
        except APIError:
            logger.error("Unreadable answer from Dodo Payments to update_payment_method")
            return ChargeUnknown(subscription_id)
        if answer.payment_link:
            return ChargeRequiresAction(answer.payment_id or subscription_id, str(answer.payment_link))
        if not answer.payment_id:
            # Nothing was owed, or Dodo charges later: the subscription says.
            return ChargeUnknown(subscription_id)
        payment = self._payment(answer.payment_id)
        if payment is None:
            return ChargeUnknown(answer.payment_id)
        return _outcome(payment)

    def find_arrears_charge(
        self, *, subscription_id: str, reference: str | None = None, since: datetime | None = None
    ) -> ChargeResult | None:
        """What came of an earlier :meth:`pay_arrears` whose outcome was
        open: the payment ``reference`` if given (``None`` unless it is one
        of this subscription's), else the newest payment of the subscription
        made at or after ``since`` (with five minutes' allowance for the
        clocks), as :meth:`pay_arrears` would answer. ``None`` if Dodo has
        no such payment: then the earlier call charged nothing."""
        billing = self.billing
        if reference is None:
            options: dict[str, Any] = {"subscription_id": subscription_id, "page_size": PAGE_SIZE}
            if since is not None:
                options["created_at_gte"] = since - _CLOCK_ALLOWANCE
            found = billing._call("payments.list", lambda: billing.client.payments.list(**options))
            mine = [p for p in found.items or () if p.subscription_id == subscription_id]
            if not mine:
                return None
            reference = max(mine, key=lambda p: p.created_at).payment_id
        # A payment that could not be read raises (DodoUnavailable): only
        # Dodo's "not found" means that nothing was charged.
        wanted = reference
        payment = billing._or_none("payments.retrieve", lambda: billing.client.payments.retrieve(wanted))
        if payment is None or payment.subscription_id != subscription_id:
            return None
        return _outcome(payment)

    def _payment(self, payment_id: str) -> Any | None:
        try:
            return self.billing.client.payments.retrieve(payment_id)
        except APIError as exc:
            logger.warning("Could not read Dodo payment %s: %s", payment_id, type(exc).__name__)
            return None


def _outcome(payment: Any) -> ChargeResult:
    """A Dodo payment as the portal's charge result."""
    status = payment.status
    if status == "succeeded":
        return ChargeSucceeded(payment.payment_id, Money(payment.total_amount, payment.currency))
    if status in ("failed", "cancelled"):
        return ChargeDeclined(decline_reason(payment.error_code), payment.payment_id)
    if status == "requires_customer_action" and payment.payment_link:
        return ChargeRequiresAction(payment.payment_id, str(payment.payment_link))
    return ChargeUnknown(payment.payment_id)
