"""The payment method of a subscription: change it, and pay the arrears of
an ``on_hold`` subscription with it (reactivation), or remove a saved one.

Money moves only in :func:`flask_customer_portal.billing.reactivation.reactivate_subscription`,
under a lock and with idempotency keys; this module decides what to pay
with and what the customer sees. Card numbers and security codes go to the
payment provider and nowhere else: not into the page sent back, not into
a log line, not into the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from flask import abort, redirect, render_template, request, url_for

from ..billing import payment_methods as saved_methods
from ..billing.collect import ProviderError
from ..billing.lifecycle import describe
from ..billing.outcomes import PaymentOutcome
from ..billing.payment_methods import add_payment_method, change_payment_method
from ..billing.reactivation import (
    ReactivationResult,
    amount_due_now,
    arrears_in_flight,
    reactivate_subscription,
)
from ..clock import utcnow
from ..errors import SubscriptionNotFound
from ..formatting import format_payment_method
from ..forms import ConfirmForm
from ..forms.payment import NEW_CARD, NewCard, NewToken, PaymentMethodForm, SavedMethod, card_expired
from ..i18n import gettext as _
from ..i18n import ngettext
from ..money import Money
from ..payments import TEST_CARDS, CardElementProvider, MethodDeclined, NewMethodPageProvider
from ..ratelimit import retry_after
from ..state import PortalState, get_state
from ..storage import (
    Customer,
    Invoice,
    InvoiceStatus,
    PaymentMethod,
    PaymentMethodInUse,
    StateConflict,
    Subscription,
    SubscriptionStatus,
)
from ..urls import external_url
from ._base import blueprint, current_customer_or_401, customer_required, notify, plausible_id, when
from ._flows import finish_flow
from .plans import settle_on_visit

__all__ = [
    "TEST_CARD_HINTS",
    "Problem",
    "Render",
    "attach_new_card",
    "card_element",
    "checked_choice",
    "chosen_method",
    "expired_methods",
    "new_card",
    "new_card_context",
    "new_method_page",
    "payment_method",
    "posted_payment_form",
    "raw_cards_allowed",
    "reactivated",
    "refuse_new_card",
    "remove_payment_method",
    "safe_redirect_target",
    "shown_amount",
    "unreachable",
]

logger = logging.getLogger("flask_customer_portal")

#: Invoices read per query when a whole billing history is read.
_INVOICES_SCANNED = 100
#: What the edit form says it does: the POST is refused if the
#: subscription changed state since the page was shown.
INTENT_REACTIVATE = "reactivate"
INTENT_CHANGE = "change"
#: The test cards shown in test mode, with what each does.
TEST_CARD_HINTS = tuple(
    (number, outcome)
    for number, outcome in (
        ("4242424242424242", "succeeds"),
        ("4000000000000002", "generic_decline"),
        ("4000000000009995", "insufficient_funds"),
    )
    if number in TEST_CARDS
)


def _subscription_or_404(state: PortalState, customer: Customer, subscription_id: str) -> Subscription:
    if not plausible_id(subscription_id):
        abort(404)
    subscription = state.storage.get_subscription(customer.id, subscription_id)
    if subscription is None:
        abort(404)
    return subscription


def raw_cards_allowed(state: PortalState) -> bool:
    """Raw card numbers are for a provider that takes them, in test mode only."""
    return bool(state.payments.accepts_raw_cards) and state.config.mode == "test"


def amount_field(value: Money | None) -> str:
    """The amount due as the payment form carries it (``"<minor units>
    <currency>"``), so that the charge takes exactly what the page showed."""
    return "" if value is None else f"{value.amount} {value.currency}"


def shown_amount() -> Money | bool | None:
    """The amount the submitted form showed: a :class:`Money`, ``None`` if
    the form carried none, ``False`` if it carried something else."""
    raw = request.form.get("amount_due")
    if raw is None or raw == "":
        return None
    amount, _space, currency = raw.strip().partition(" ")
    if not (amount.isascii() and amount.isdigit() and len(amount) <= 18):
        return False
    try:
        return Money(int(amount), currency)
    except ValueError:
        return False


def _last_paid_invoice(state: PortalState, customer: Customer, subscription: Subscription) -> Invoice | None:
    page = state.storage.list_invoices(customer.id, page=1, per_page=_INVOICES_SCANNED)
    paid = [i for i in page.items if i.subscription_id == subscription.id and i.status is InvoiceStatus.PAID]
    return max(paid, key=lambda i: i.paid_at or i.issued_at, default=None)


class Render(Protocol):
    """Renders a payment page again with the submitted form: the page's
    body and status."""

    def __call__(
        self, form: PaymentMethodForm | None = None, *, problem: Problem | None = None, status: int = 200
    ) -> tuple[str, int]: ...


@dataclass(frozen=True, slots=True)
class Problem:
    """What went wrong with the last try, shown at the top of the page."""

    message: str
    decline_reason: str | None = None
    """A decline code, shown beside the method that was declined."""
    method_id: str | None = None
    """The saved method the decline is about."""


# --- the page ------------------------------------------------------------------------


def checked_choice(form: PaymentMethodForm, methods: Sequence[PaymentMethod], problem: Problem | None) -> str:
    """The payment choice shown checked: the form's, if it is one of
    ``methods`` or a new card, and not the card just declined; else none."""
    selected = (form.payment_method.data or "").strip()
    if selected != NEW_CARD and selected not in {m.id for m in methods}:
        return ""
    if problem is not None and problem.method_id == selected:
        return ""  # the card that was declined a moment ago
    return selected


def _render(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    form: PaymentMethodForm | None = None,
    *,
    problem: Problem | None = None,
    status: int = 200,
) -> Any:
    now = utcnow()
    view = describe(subscription, now)
    methods = list(state.storage.list_payment_methods(customer.id))
    raw_cards = raw_cards_allowed(state)
    current = subscription.payment_method
    if form is None:
        form = PaymentMethodForm(formdata=None, methods=methods, raw_cards=raw_cards, now=now)
        # On hold, the current card is the one that just failed: nothing is
        # chosen for the customer, they pick the card to pay with.
        usable = (
            current is not None
            and not view.on_hold
            and not card_expired(current.exp_month, current.exp_year, now)
        )
        form.payment_method.data = current.id if usable and current is not None else None
    selected = checked_choice(form, methods, problem)
    due = amount_due_now(state, customer, subscription) if view.on_hold else None
    return (
        render_template(
            "customer_portal/payment_method.html",
            customer=customer,
            subscription=subscription,
            view=view,
            form=form,
            methods=methods,
            expired=expired_methods(methods, now),
            selected=selected,
            new_method_page=new_method_page(state) is not None,
            **new_card_context(state),
            open_invoices=due.invoices if due is not None else (),
            new_invoice=due.new_invoice if due is not None else None,
            amount_due=due.total if due is not None else None,
            amount_field=amount_field(due.total if due is not None else None),
            intent=INTENT_REACTIVATE if view.on_hold else INTENT_CHANGE,
            problem=problem,
        ),
        status,
    )


def _cannot_change() -> Problem:
    return Problem(_("This subscription is cancelled, so its payment method cannot be changed."))


def _amount_changed() -> Problem:
    return Problem(
        _(
            "The amount due changed since this page was shown, so nothing was charged. "
            "Check the new amount, then confirm again."
        )
    )


def unreachable() -> Problem:
    return Problem(_("We could not reach the payment processor. Nothing was charged. Try again."))


@blueprint.route("/subscriptions/<subscription_id>/payment-method", methods=["GET", "POST"])
@customer_required
def payment_method(subscription_id: str) -> Any:
    """Show the subscription's payment method with the form to change it;
    for an ``on_hold`` subscription, confirming pays what is due with the
    chosen method and makes it ``active`` again."""
    state = get_state()
    customer = current_customer_or_401()
    subscription = _subscription_or_404(state, customer, subscription_id)
    if request.method == "GET":
        return _render(state, customer, settle_on_visit(state, customer, subscription))

    methods = state.storage.list_payment_methods(customer.id)
    form, valid = posted_payment_form(state, customer, methods)
    view = describe(subscription, utcnow())
    if not view.is_current:
        return _render(state, customer, subscription, form, problem=_cannot_change(), status=409)
    intent = request.form.get("intent")
    if intent == INTENT_REACTIVATE and subscription.status is SubscriptionStatus.ACTIVE:
        # Paid already: a double click, a second tab or the back button.
        return redirect(url_for(".reactivated", subscription_id=subscription.id), code=303)
    if intent == INTENT_CHANGE and subscription.status is SubscriptionStatus.ON_HOLD:
        # The page said "change", not "pay": never charge without showing the amount first.
        problem = Problem(
            _(
                "This subscription's last payment failed in the meantime. "
                "Check the amount due, then confirm again."
            )
        )
        return _render(state, customer, subscription, form, problem=problem, status=409)
    if subscription.status is SubscriptionStatus.ON_HOLD and intent != INTENT_REACTIVATE:
        # Paying is never implied: only the form's "pay" intent charges.
        problem = Problem(
            _("Nothing was charged. To pay what is due, choose a card and press the pay button.")
        )
        return _render(state, customer, subscription, form, problem=problem, status=422)
    render = partial(_render, state, customer, subscription)
    method_page = new_method_page(state)
    if method_page is not None and request.form.get("payment_method") == NEW_CARD:
        refused = refuse_new_card(state, customer, form, len(methods), render)
        if refused is not None:
            return refused
        return _to_new_method_page(state, customer, subscription, form, method_page)
    if not valid:
        return _render(state, customer, subscription, form, status=422)

    method = chosen_method(state, customer, form, len(methods), render)
    if not isinstance(method, PaymentMethod):
        return method
    if subscription.status is SubscriptionStatus.ON_HOLD:
        return _reactivate(state, customer, subscription, form, method)
    return _change(state, customer, subscription, method)


def new_card_context(state: PortalState) -> dict[str, Any]:
    """What ``_payment_new_card.html`` is rendered with: the raw card
    fields and the test cards (test mode, a provider that takes them), or
    the provider's own card element (e.g. Stripe Elements)."""
    raw_cards = raw_cards_allowed(state)
    return {
        "raw_cards": raw_cards,
        "test_cards": TEST_CARD_HINTS if raw_cards and not state.config.is_live else (),
        "card_element": card_element(state),
        "payment_provider": state.payments,
    }


def expired_methods(methods: Sequence[PaymentMethod], now: datetime) -> set[str]:
    """The ids of the saved methods that have expired at ``now``."""
    return {m.id for m in methods if card_expired(m.exp_month, m.exp_year, now)}


def card_element(state: PortalState) -> str | None:
    """The template of the provider's own card element, if it has one."""
    if not state.provider_capabilities.card_element:
        return None
    return cast(CardElementProvider, state.payments).card_element_template


def new_method_page(state: PortalState) -> Callable[..., str] | None:
    """The provider's own page for entering a new payment method, if it has
    one instead of a card element (Dodo Payments): its
    ``new_method_page(subscription_id=, return_url=)`` gives the address."""
    features = state.provider_capabilities
    if raw_cards_allowed(state) or features.card_element or not features.new_method_page:
        return None
    return cast(NewMethodPageProvider, state.payments).new_method_page


def _to_new_method_page(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    form: PaymentMethodForm,
    new_method_page: Callable[..., str],
) -> Any:
    """Send the customer to the provider's page for a new method; it comes
    back to this subscription's payment-method page.

    The provider charges an ``on_hold`` subscription's arrears on that page,
    so while a payment of them is in flight (or paid and not applied yet)
    the customer is told so and stays here, instead of paying twice."""
    if subscription.status is SubscriptionStatus.ON_HOLD:
        try:
            waiting = arrears_in_flight(state, customer, subscription.id)
        except SubscriptionNotFound:
            abort(404)
        except StateConflict:
            fresh = _subscription_or_404(state, customer, subscription.id)
            return _render(state, customer, fresh, form, problem=_cannot_change(), status=409)
        except ProviderError:
            logger.exception(
                "Payment provider failed while checking the arrears of subscription %s", subscription.id
            )
            return _render(state, customer, subscription, form, problem=unreachable(), status=502)
        if waiting is not None:
            return _reactivation_answer(state, customer, form, None, waiting)
    return_url = external_url(state, "payment_method", subscription_id=subscription.id)
    try:
        link = new_method_page(subscription_id=subscription.id, return_url=return_url)
    except Exception as exc:
        logger.error(
            "Payment provider raised %s while making a new-method page for customer %s",
            type(exc).__name__,
            customer.id,
        )
        return _render(state, customer, subscription, form, problem=unreachable(), status=502)
    if urlsplit(link).scheme != "https":
        logger.error("Payment provider gave a new-method page that is not https; refused")
        return _render(state, customer, subscription, form, problem=unreachable(), status=502)
    return redirect(link, code=303)


def refuse_new_card(
    state: PortalState,
    customer: Customer,
    form: PaymentMethodForm,
    saved: int,
    render: Render,
) -> Any | None:
    """The page (made by ``render``) refusing a new card, or ``None`` if the
    customer may add one now (which counts against their hourly allowance).
    Runs before anything reaches the provider: card testers try many
    numbers, and each attempt is a verification call the merchant pays for."""
    if saved >= state.config.max_saved_cards:
        form.forget_card()
        form.payment_method.errors = [
            ngettext(
                "You already have %(num)d saved card, the most an account can keep. "
                "Remove it if you no longer use it, then add the new one.",
                "You already have %(num)d saved cards, the most an account can keep. "
                "Remove a card you no longer use, then add the new one.",
                saved,
            )
        ]
        return render(form, problem=Problem(_("The card was not added.")), status=422)
    retry_at = state.customer_limits.hit_card_attach(customer.id)
    if retry_at is not None:
        form.forget_card()
        logger.warning(
            "Customer portal refused a new card for customer %s: over the card attach limit", customer.id
        )
        problem = Problem(
            _(
                "You have tried to add too many cards recently, so we cannot take another one now. "
                "Pay with a saved card, or add the card after %(time)s.",
                time=when(state, customer, retry_at),
            )
        )
        body, status = render(form, problem=problem, status=429)
        return body, status, retry_after(retry_at, utcnow())
    return None


def posted_payment_form(
    state: PortalState, customer: Customer, methods: Sequence[PaymentMethod]
) -> tuple[PaymentMethodForm, bool]:
    """The submitted payment-method form, offering ``methods``, and whether
    it is valid. Raw card details the portal must not take, or a failed CSRF
    check, end the request with a 400."""
    raw_cards = raw_cards_allowed(state)
    if not raw_cards and ("card_number" in request.form or "cvc" in request.form):
        # Card details must go to the provider's own card element; this
        # server refuses to even look at them.
        logger.warning(
            "Customer portal refused raw card details for customer %s: the payment provider "
            "does not take them, or the portal is in live mode",
            customer.id,
        )
        abort(400)
    form = PaymentMethodForm(methods=methods, raw_cards=raw_cards, now=utcnow())
    valid = form.validate()
    if form.csrf_failed:
        abort(400)
    return form, valid


def chosen_method(
    state: PortalState,
    customer: Customer,
    form: PaymentMethodForm,
    saved: int,
    render: Render,
) -> PaymentMethod | Any:
    """The method a valid form chose: a saved one, or the new card once
    it is saved (``saved`` is how many the customer has); or the page (made
    by ``render``) refusing the new card."""
    choice = form.choice
    if isinstance(choice, SavedMethod):
        return choice.method
    attached = new_card(state, customer, form, choice, saved, render)
    if isinstance(attached, PaymentMethod):
        # The card is saved now: show it as a saved card if anything follows.
        form.forget_card()
        form.payment_method.data = attached.id
    return attached


def new_card(
    state: PortalState,
    customer: Customer,
    form: PaymentMethodForm,
    choice: NewCard | NewToken,
    saved: int,
    render: Render,
) -> PaymentMethod | Any:
    """The new card, checked against the customer's limits (``saved`` is
    how many cards they have) and saved; or the page (made by ``render``)
    refusing it."""
    refused = refuse_new_card(state, customer, form, saved, render)
    if refused is not None:
        return refused
    return attach_new_card(state, customer, form, choice, render)


def attach_new_card(
    state: PortalState,
    customer: Customer,
    form: PaymentMethodForm,
    choice: NewCard | NewToken,
    render: Render,
) -> PaymentMethod | Any:
    """The new card, saved; or the page (made by ``render``) to answer with
    if it was refused."""
    try:
        if isinstance(choice, NewCard):
            result = add_payment_method(state, customer, card=choice.card, now=utcnow())
        else:
            result = add_payment_method(state, customer, token=choice.token, now=utcnow())
    except ProviderError:
        form.forget_card()
        return render(form, problem=unreachable(), status=502)
    if isinstance(result, MethodDeclined):
        reason = str(result.reason)
        form.forget_card()
        # Said once, at the top of the page: not again beside the field.
        return render(
            form,
            problem=Problem(_("The card was not added. Nothing was charged."), decline_reason=reason),
            status=422,
        )
    return result


def safe_redirect_target(state: PortalState, url: str | None) -> bool:
    """A bank's confirmation page: https, or anything http(s) from the test provider."""
    if not url:
        return False
    parts = urlsplit(url)
    if not parts.netloc:
        return False
    return parts.scheme == "https" or (bool(state.payments.is_test) and parts.scheme == "http")


def _reactivate(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    form: PaymentMethodForm,
    method: PaymentMethod,
) -> Any:
    shown = shown_amount()
    if shown is False:
        return _render(state, customer, subscription, form, problem=_amount_changed(), status=409)
    try:
        result = reactivate_subscription(
            state, customer, subscription.id, method, expected=shown if isinstance(shown, Money) else None
        )
    except SubscriptionNotFound:
        abort(404)
    except StateConflict:
        fresh = _subscription_or_404(state, customer, subscription.id)
        return _render(state, customer, fresh, form, problem=_cannot_change(), status=409)
    except ProviderError:
        # Charging wrote nothing of this try: the subscription is still on hold.
        logger.exception(
            "Reactivation of subscription %s for customer %s failed in the payment provider",
            subscription.id,
            customer.id,
        )
        return _render(state, customer, subscription, form, problem=unreachable(), status=502)
    return _reactivation_answer(state, customer, form, method, result)


def _reactivation_answer(
    state: PortalState,
    customer: Customer,
    form: PaymentMethodForm,
    method: PaymentMethod | None,
    result: ReactivationResult,
) -> Any:
    subscription = result.subscription
    outcome = result.outcome
    if result.active:
        done = finish_flow("payment_method_update", subscription.id)
        return done or redirect(url_for(".reactivated", subscription_id=subscription.id), code=303)
    if outcome is PaymentOutcome.DECLINED:
        reason = result.decline_reason or "generic_decline"
        if method is not None:
            message = _(
                "%(card)s was declined, so nothing was charged. "
                "Your subscription is still on hold: choose another card or add a new one.",
                card=format_payment_method(method),
            )
        else:
            message = _(
                "The payment was declined, so nothing was charged. "
                "Your subscription is still on hold: choose another card or add a new one."
            )
        problem = Problem(message, decline_reason=reason, method_id=method.id if method is not None else None)
        return _render(state, customer, subscription, form, problem=problem, status=422)
    if outcome is PaymentOutcome.AMOUNT_CHANGED:
        return _render(state, customer, subscription, form, problem=_amount_changed(), status=409)
    if outcome is PaymentOutcome.AMOUNT_MISMATCH:
        problem = Problem(
            _(
                "Your bank reported a payment of another amount than the amount due. You will not be "
                "charged again for it: the shop has been told and will sort it out. Until then your "
                "subscription stays on hold."
            )
        )
        return _render(state, customer, subscription, form, problem=problem, status=409)
    if outcome is PaymentOutcome.PENDING:
        problem = Problem(
            _("We are confirming your payment with the bank. Do not pay again: check back in a few minutes.")
        )
        return _render(state, customer, subscription, form, problem=problem, status=202)
    if outcome is PaymentOutcome.REQUIRES_ACTION:
        if safe_redirect_target(state, result.redirect_url):
            return redirect(str(result.redirect_url), code=303)
        logger.error(
            "Payment provider asked to send customer %s to a confirmation page that is not https; refused",
            customer.id,
        )
    return _render(state, customer, subscription, form, problem=unreachable(), status=502)


def _change(state: PortalState, customer: Customer, subscription: Subscription, method: PaymentMethod) -> Any:
    """Charge future renewals of an active subscription to ``method``."""
    try:
        result = change_payment_method(state, customer, subscription, method, now=utcnow())
    except SubscriptionNotFound:
        abort(404)
    if result.changed:
        message = _(
            "%(product)s is now charged to %(card)s.",
            product=result.subscription.product_name,
            card=format_payment_method(method),
        )
    else:
        message = _(
            "Nothing changed: %(card)s already pays for this subscription.",
            card=format_payment_method(method),
        )
    notify(message)
    back = url_for(".subscription", subscription_id=subscription.id)
    return finish_flow("payment_method_update", subscription.id) or redirect(back, code=303)


# --- after a reactivation -------------------------------------------------------------


@blueprint.route("/subscriptions/<subscription_id>/reactivated")
@customer_required
def reactivated(subscription_id: str) -> Any:
    """The confirmation page. Only reads: a refresh or the back button
    never pays again."""
    state = get_state()
    customer = current_customer_or_401()
    subscription = _subscription_or_404(state, customer, subscription_id)
    if subscription.status is not SubscriptionStatus.ACTIVE:
        return redirect(url_for(".payment_method", subscription_id=subscription.id), code=303)
    view = describe(subscription, utcnow())
    return render_template(
        "customer_portal/reactivated.html",
        customer=customer,
        subscription=subscription,
        view=view,
        invoice=_last_paid_invoice(state, customer, subscription),
    )


# --- removing a saved method ------------------------------------------------------------


def _back_to(state: PortalState, customer: Customer, subscription_id: str | None) -> str:
    if (
        subscription_id
        and plausible_id(subscription_id)
        and state.storage.get_subscription(customer.id, subscription_id) is not None
    ):
        return url_for(".payment_method", subscription_id=subscription_id)
    return url_for(".payment_methods")


@blueprint.route("/payment-methods/<payment_method_id>/remove", methods=["POST"])
@customer_required
def remove_payment_method(payment_method_id: str) -> Any:
    """Forget a saved method that no current subscription uses."""
    state = get_state()
    customer = current_customer_or_401()
    if not ConfirmForm().validate():
        abort(400)
    if not plausible_id(payment_method_id):
        abort(404)
    method = state.storage.get_payment_method(customer.id, payment_method_id)
    if method is None:
        abort(404)
    back = _back_to(state, customer, request.form.get("subscription_id"))
    try:
        removed = saved_methods.remove_payment_method(state, customer, method, now=utcnow())
    except PaymentMethodInUse:
        notify(
            _(
                "%(card)s is used by a subscription, so it cannot be removed. "
                "Give the subscription another card first.",
                card=format_payment_method(method),
            )
        )
        return redirect(back, code=303)
    if not removed:
        abort(404)
    notify(_("%(card)s was removed.", card=format_payment_method(method)))
    return redirect(back, code=303)
