"""Changing plan: choose → preview → confirm, and withdrawing a change set
for the period's end.

The preview carries a signed quote
(:mod:`flask_customer_portal.billing.quotes`): the confirmation charges
exactly what the preview showed, or nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import datetime
from typing import Any

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_babel import get_locale

from ..auth import get_current_customer
from ..billing.lifecycle import rules_for
from ..billing.outcomes import PaymentOutcome
from ..billing.plan_change import (
    PERIOD_END,
    change_plan_now,
    offered_plans,
    plan_change_blocked,
    plan_changes_supported,
    schedule_plan_change,
    timing_for,
    withdraw_scheduled_change,
)
from ..billing.promotions import (
    FOREVER_RENEWALS,
    CodeRefusal,
    apply_to_proration,
    check_code,
    later_renewals,
    refusal_message,
)
from ..billing.proration import Proration, prorate
from ..billing.provider_plans import (
    PlanChangeUnconfirmed,
    change_at_provider,
    in_catalogue_terms,
    plan_change_codes,
    preview_at_provider,
    preview_at_provider_with_code,
    provider_plan_changes_supported,
)
from ..billing.provider_promotions import check_provider_code
from ..billing.quotes import QUOTE_MAX_AGE, QuotedChange, make_quote, read_quote
from ..billing.renewal import ProviderError
from ..billing.settlement import SettlementOutcome, settle_plan_changes
from ..capabilities import ProviderPromotionCode
from ..clock import utcnow
from ..errors import SubscriptionNotFound
from ..formatting import decline_text, format_date
from ..forms import ConfirmForm
from ..i18n import gettext as _
from ..money import Money, format_money
from ..state import PortalState, get_state
from ..storage import Customer, Plan, PromotionCode, StateConflict, Subscription
from ._base import blueprint, current_customer_or_401, customer_required, notify, plausible_id
from ._flows import finish_flow

__all__ = ["QUOTE_MAX_AGE", "settle_on_visit"]


def _offered(state: PortalState) -> bool:
    """Whether the plan pages are offered: the portal changes plans itself,
    or the payment company does."""
    return plan_changes_supported(state) or provider_plan_changes_supported(state)


def _secret() -> str | bytes:
    return current_app.secret_key or ""


logger = logging.getLogger("flask_customer_portal")


#: A number of seats as typed: ASCII digits only (``"²"`` is a digit to
#: ``str.isdigit`` but not to ``int``).
_SEATS_RE = re.compile(r"[0-9]{1,9}")


def settle_on_visit(state: PortalState, customer: Customer, subscription: Subscription) -> Subscription:
    """Settle the subscription's plan-change payments that were left
    unconfirmed (see :mod:`flask_customer_portal.billing.settlement`) when the
    customer opens its pages, and say what came of them. The subscription
    as it is afterwards. A provider that cannot be reached leaves them for
    the next visit; the page is shown all the same."""
    try:
        settled = settle_plan_changes(state, customer, subscription)
    except ProviderError:
        logger.warning("Payment provider error while settling plan changes of %s", subscription.id)
        return subscription
    for item in settled:
        if item.outcome is SettlementOutcome.CHANGED:
            notify(
                _(
                    "Your payment for the plan change came through: you are now on %(plan)s.",
                    plan=item.subscription.plan_name,
                )
            )
        elif item.outcome is SettlementOutcome.CREDITED:
            notify(
                _(
                    "Your payment for a plan change came through after your subscription had changed, "
                    "so the plan did not change. %(amount)s is kept as account credit "
                    "for your next invoices.",
                    amount=_money(state, item.invoice.total_money),
                )
            )
        elif item.outcome is SettlementOutcome.VOIDED:
            notify(
                _(
                    "Your last plan change did not go through and nothing was charged. "
                    "You can change plan again."
                )
            )
        elif item.outcome is SettlementOutcome.FLAGGED:
            notify(_amount_mismatch())
    if not settled:
        return subscription
    return state.storage.get_subscription(customer.id, subscription.id) or subscription


def _date(state: PortalState, customer: Customer, moment: datetime) -> str:
    locale = str(get_locale() or state.config.default_locale)
    return format_date(moment, locale, customer.timezone or state.config.default_timezone)


def _subscription_or_404(state: PortalState, customer: Customer, subscription_id: str) -> Subscription:
    if not plausible_id(subscription_id):
        abort(404)
    subscription = state.storage.get_subscription(customer.id, subscription_id)
    if subscription is None:
        abort(404)
    return subscription


def _blocked_message(code: str) -> str:
    messages = {
        "on_hold": _("This subscription is on hold. Pay the failed renewal first, then you can change plan."),
        "cancelled": _("This subscription has ended, so its plan cannot be changed."),
        "ending": _("This subscription is set to end. Keep it first, then you can change plan."),
        "paused": _("This subscription is paused. Resume it first, then you can change plan."),
        "renewing": _("This subscription is renewing right now. Try again in a few minutes."),
        "pending_change": _(
            "The payment for your last plan change is still being confirmed. Try again in a few minutes."
        ),
        "superseded": _(
            "This confirmation was settled before, so nothing more was charged. "
            "Check your plan and your billing history."
        ),
        "promotion_used": _(
            "This promotion code has been used in the meantime, so nothing was charged and your plan "
            "did not change. Change plan again without it."
        ),
        "credited": _(
            "The payment for this plan change came through after your subscription had changed, so the "
            "plan did not change. The amount is kept as account credit for your next invoices."
        ),
    }
    return messages.get(code, _("The plan of this subscription cannot be changed here."))


def _page(status: int = 200, **context: Any) -> Any:
    return render_template("customer_portal/change_plan.html", **context), status


def _choose_page(
    subscription: Subscription,
    plans: tuple[Plan, ...],
    *,
    selected: str | None,
    quantity: str,
    errors: dict[str, str] | None = None,
    status: int = 200,
    promotion_code: str = "",
) -> Any:
    return _page(
        status,
        step="choose",
        promotions=plan_change_codes(get_state()) is not None,
        promotion_code=promotion_code,
        subscription=subscription,
        plans=plans,
        selected=selected,
        quantity=quantity,
        errors=errors or {},
        yearly_savings=yearly_savings(plans),
    )


def _plan_stem(name: str) -> str:
    """A plan's name without its billing period: "Pro (yearly)" and "Pro
    (monthly)" are both "pro"."""
    stem = re.sub(r"\([^)]*\)", " ", name.casefold())
    stem = re.sub(r"\b(monthly|yearly|annual|annually|month|year)\b", " ", stem)
    return " ".join(stem.split())


def yearly_savings(plans: tuple[Plan, ...]) -> dict[str, Money]:
    """What each yearly plan saves over twelve months of its monthly twin
    (same product, currency, pricing per seat or not, and name but for the
    period), by plan id; plans without such a twin, or saving nothing, are
    left out."""
    monthly = {
        (p.product_name, p.price.currency, p.per_seat, _plan_stem(p.name)): p
        for p in plans
        if p.interval == "month" and p.interval_count == 1
    }
    savings: dict[str, Money] = {}
    for plan in plans:
        if not (plan.interval == "year" and plan.interval_count == 1):
            continue
        twin = monthly.get((plan.product_name, plan.price.currency, plan.per_seat, _plan_stem(plan.name)))
        if twin is None:
            continue
        saved = twin.price.amount * 12 - plan.price.amount
        if saved > 0:
            savings[plan.id] = Money(saved, plan.price.currency)
    return savings


@blueprint.route("/subscriptions/<subscription_id>/plan", methods=["GET", "POST"])
@customer_required
def change_plan(subscription_id: str) -> Any:
    """GET: the plans to choose from. POST: the preview (``step=preview``)
    or the change itself (``step=confirm``, with the preview's quote)."""
    state = get_state()
    customer = current_customer_or_401()
    if request.method == "POST" and not ConfirmForm().validate():
        abort(400)
    subscription = _subscription_or_404(state, customer, subscription_id)
    rules = rules_for(customer, subscription)
    if not rules.may_change_plan or not _offered(state):
        abort(403)
    if provider_plan_changes_supported(state):
        subscription = in_catalogue_terms(state, subscription)
    if request.method == "GET":
        subscription = settle_on_visit(state, customer, subscription)
    now = utcnow()
    blocked = plan_change_blocked(subscription, now)
    if blocked is not None:
        return _page(409, step="blocked", subscription=subscription, problem=_blocked_message(blocked))
    plans = tuple(offered_plans(state, subscription, rules))

    if request.method == "GET":
        wanted = request.args.get("plan", "")
        selected = wanted if any(p.id == wanted for p in plans) else None
        return _choose_page(subscription, plans, selected=selected, quantity=str(subscription.quantity))

    plan_id = request.form.get("plan", "")
    raw_quantity = request.form.get("quantity", "").strip()
    plan = next((p for p in plans if p.id == plan_id), None)
    if plan is None:
        known = plausible_id(plan_id) and state.storage.get_plan(plan_id)
        if known and known.product_name == subscription.product_name and not rules.allows_plan(plan_id):
            abort(403)
        return _choose_page(
            subscription,
            plans,
            selected=None,
            quantity=raw_quantity,
            errors={"plan": _("Choose one of the plans listed.")},
            status=422,
        )
    quantity = 1
    if plan.per_seat:
        if (
            not _SEATS_RE.fullmatch(raw_quantity)
            or not plan.min_quantity <= int(raw_quantity) <= plan.max_quantity
        ):
            return _choose_page(
                subscription,
                plans,
                selected=plan.id,
                quantity=raw_quantity,
                errors={
                    "quantity": _(
                        "Enter a number of seats from %(min)d to %(max)d.",
                        min=plan.min_quantity,
                        max=plan.max_quantity,
                    )
                },
                status=422,
            )
        quantity = int(raw_quantity)
    if (plan.id, quantity) == (subscription.plan_id, subscription.quantity):
        if request.form.get("step") == "confirm":
            # The same confirmation again (a double click, another tab): done already.
            notify(_("You are now on %(plan)s.", plan=subscription.plan_name))
            return redirect(url_for(".subscription", subscription_id=subscription.id), code=303)
        return _choose_page(
            subscription,
            plans,
            selected=plan.id,
            quantity=str(quantity),
            errors={"plan": _("This is your current plan. Choose another plan or number of seats.")},
            status=422,
        )

    when = timing_for(state, subscription, plan, quantity)
    if when == PERIOD_END and provider_plan_changes_supported(state):
        # The payment company changes plans now only; a change the merchant
        # wants at the period's end is not made early.
        return _choose_page(
            subscription,
            plans,
            selected=plan.id,
            quantity=raw_quantity,
            errors={
                "plan": _(
                    "This change can only start at the end of your billing period. Choose another plan."
                )
            },
            status=422,
        )
    if request.form.get("step") != "confirm":
        promotion = None
        raw_code = request.form.get("promotion_code", "").strip()[:40]
        codes = plan_change_codes(state) if raw_code else None
        if codes == "provider":
            provider_check = check_provider_code(state, customer, plan, raw_code, now=now)
            found = provider_check.found
            coded: tuple[Proration, int] | CodeRefusal = provider_check.refusal or CodeRefusal.INVALID
            if found is not None and when != PERIOD_END:
                try:
                    coded = preview_at_provider_with_code(
                        state, customer, subscription, plan, quantity, now.replace(microsecond=0), found
                    )
                except SubscriptionNotFound:
                    abort(404)
            elif found is not None:
                coded = CodeRefusal.NOT_FOR_PLAN
            if isinstance(coded, CodeRefusal):
                return _choose_page(
                    subscription,
                    plans,
                    selected=plan.id,
                    quantity=raw_quantity,
                    errors={"promotion_code": refusal_message(coded)},
                    status=422,
                    promotion_code=raw_code,
                )
            return _preview(
                subscription, plan, quantity, when, now, provider_code=found, provider_figures=coded
            )
        if codes == "local":
            check = check_code(state, customer, plan, raw_code, now=now)
            if check.code is None or when == PERIOD_END:
                refusal = check.refusal or CodeRefusal.NOT_FOR_PLAN
                return _choose_page(
                    subscription,
                    plans,
                    selected=plan.id,
                    quantity=raw_quantity,
                    errors={"promotion_code": refusal_message(refusal)},
                    status=422,
                    promotion_code=raw_code,
                )
            promotion = check.code
        return _preview(subscription, plan, quantity, when, now, promotion=promotion)
    if when == PERIOD_END:
        return _schedule(state, customer, subscription, plan, quantity, now)
    quoted = read_quote(
        state, customer, _secret(), request.form.get("quote", ""), subscription, plan, quantity, now=now
    )
    if quoted is None:
        return _preview(
            subscription,
            plan,
            quantity,
            when,
            now,
            problem=_("The prices were worked out again. Check them and confirm."),
            status=409,
        )
    promotion = None
    if quoted.promotion_code is not None and plan_change_codes(state) == "provider":
        again = check_provider_code(state, customer, plan, quoted.promotion_code, now=now, count=False)
        if again.found is None:
            return _preview(
                subscription,
                plan,
                quantity,
                when,
                now,
                problem=refusal_message(again.refusal or CodeRefusal.INVALID),
                status=409,
            )
        return _change_now(state, customer, subscription, plan, quantity, quoted, provider_code=again.found)
    if quoted.promotion_code is not None:
        check = check_code(state, customer, plan, quoted.promotion_code, now=now, count=False)
        if check.code is None:
            return _preview(
                subscription,
                plan,
                quantity,
                when,
                now,
                problem=refusal_message(check.refusal or CodeRefusal.INVALID),
                status=409,
            )
        promotion = check.code
    return _change_now(state, customer, subscription, plan, quantity, quoted, promotion)


def _preview(
    subscription: Subscription,
    plan: Plan,
    quantity: int,
    when: str,
    now: datetime,
    *,
    problem: str | None = None,
    status: int = 200,
    priced_at: datetime | None = None,
    quote_token: str | None = None,
    promotion: PromotionCode | None = None,
    provider_code: ProviderPromotionCode | None = None,
    provider_figures: tuple[Proration, int] | None = None,
) -> Any:
    priced_at = priced_at or now.replace(microsecond=0)
    state = get_state()
    at_provider = provider_plan_changes_supported(state)
    if at_provider:
        # The payment company's own figures: they are what it will charge.
        promotion, off = None, 0
        customer = current_customer_or_401()
        try:
            if provider_code is not None and provider_figures is None:
                coded = preview_at_provider_with_code(
                    state, customer, subscription, plan, quantity, priced_at, provider_code
                )
                provider_figures = None if isinstance(coded, CodeRefusal) else coded
            if provider_code is not None and provider_figures is not None:
                promotion = provider_code.code
                proration, off = provider_figures
            else:
                proration = preview_at_provider(state, customer, subscription, plan, quantity, priced_at)
        except StateConflict:
            return _page(409, step="blocked", subscription=subscription, problem=_blocked_message(""))
        except SubscriptionNotFound:
            abort(404)
    else:
        proration, off = apply_to_proration(prorate(subscription, plan, quantity, priced_at), promotion)
    return _page(
        status,
        step="preview",
        subscription=subscription,
        plan=plan,
        quantity=quantity,
        when=when,
        new_terms=replace(
            subscription,
            price=plan.amount_for(quantity),
            interval=plan.interval,
            interval_count=plan.interval_count,
        ),
        proration=proration,
        promotion=promotion if off else None,
        promotion_off=proration.money(off),
        promotion_renewals=(
            later_renewals(promotion) if promotion and off and not subscription.discount_renewals else 0
        ),
        forever_renewals=FOREVER_RENEWALS,
        quote=quote_token
        or make_quote(
            _secret(),
            subscription,
            plan,
            quantity,
            priced_at,
            promotion,
            proration=proration if at_provider else None,
        ),
        problem=problem,
    )


def _schedule(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    plan: Plan,
    quantity: int,
    now: datetime,
) -> Any:
    try:
        scheduled = schedule_plan_change(state, customer, subscription, plan, quantity, now=now)
    except StateConflict:
        return _page(409, step="blocked", subscription=subscription, problem=_blocked_message(""))
    except SubscriptionNotFound:
        abort(404)
    notify(
        _(
            "Your plan changes to %(plan)s on %(date)s. Until then nothing changes.",
            plan=plan.name,
            date=_date(state, customer, scheduled.current_period_end),
        )
    )
    done = finish_flow("plan_change", subscription.id)
    return done or redirect(url_for(".subscription", subscription_id=subscription.id), code=303)


def _change_now(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    plan: Plan,
    quantity: int,
    quoted: QuotedChange,
    promotion: PromotionCode | None = None,
    provider_code: ProviderPromotionCode | None = None,
) -> Any:
    priced_at = quoted.priced_at

    def again(problem: str, status: int) -> Any:
        """The same preview, same quote: pressing confirm again retries the
        same change (and the same charge)."""
        return _preview(
            subscription,
            plan,
            quantity,
            "now",
            priced_at,
            priced_at=priced_at,
            quote_token=request.form.get("quote"),
            problem=problem,
            status=status,
            promotion=promotion,
            provider_code=provider_code,
        )

    try:
        if provider_plan_changes_supported(state):
            result = change_at_provider(
                state,
                customer,
                subscription.id,
                plan,
                quantity,
                change_id=quoted.change_id,
                quote=quoted.shown,
                priced_at=priced_at,
                promotion=provider_code,
            )
        else:
            result = change_plan_now(
                state,
                customer,
                subscription.id,
                plan,
                quantity,
                change_id=quoted.change_id,
                priced_at=priced_at,
                quote=quoted.shown,
                promotion=promotion,
            )
    except SubscriptionNotFound:
        abort(404)
    except StateConflict as exc:
        return _page(409, step="blocked", subscription=subscription, problem=_blocked_message(str(exc)))
    except PlanChangeUnconfirmed:
        logger.warning(
            "No answer from the payment company to the plan change of %s", subscription.id, exc_info=True
        )
        return again(
            _(
                "The payment company did not answer in time, so we cannot tell yet whether your plan "
                "changed. You will not be charged twice: confirm again to finish the change, or check "
                "your subscription in a few minutes."
            ),
            503,
        )
    except ProviderError:
        logger.warning("Payment provider error during a plan change of %s", subscription.id)
        return again(_("We could not reach the payment provider. Nothing was charged. Try again."), 503)
    outcome = result.outcome
    if outcome in (PaymentOutcome.PAID, PaymentOutcome.ALREADY_PAID):
        changed = result.subscription
        if result.invoice is not None:
            notify(
                _(
                    "You are now on %(plan)s. We charged %(amount)s; the invoice is in your billing history.",
                    plan=changed.plan_name,
                    amount=_money(state, result.invoice.total_money),
                )
            )
        else:
            notify(_("You are now on %(plan)s.", plan=changed.plan_name))
        done = finish_flow("plan_change", changed.id)
        return done or redirect(url_for(".subscription", subscription_id=changed.id), code=303)
    if outcome is PaymentOutcome.AMOUNT_CHANGED:
        fresh = state.storage.get_plan(plan.id) or plan
        return _preview(
            subscription,
            fresh,
            quantity,
            "now",
            utcnow(),
            problem=_(
                "The price changed since you saw it, so nothing was charged. "
                "Check the new amount and confirm again."
            ),
            status=409,
        )
    if outcome is PaymentOutcome.AMOUNT_MISMATCH:
        return _page(409, step="blocked", subscription=subscription, problem=_amount_mismatch())
    if outcome is PaymentOutcome.PENDING or outcome is PaymentOutcome.REQUIRES_ACTION:
        return again(
            _(
                "We have not had an answer about the payment yet. Your plan has not changed. "
                "Press the button again in a minute to check; you will not be charged twice."
            ),
            202,
        )
    # Declined or failed (now, or by an earlier submit of this confirmation):
    # nothing changed; a new try starts with a new preview.
    failed = outcome is PaymentOutcome.FAILED
    return _preview(
        subscription,
        plan,
        quantity,
        "now",
        utcnow(),
        problem=_not_paid() if failed else _declined(result.decline_reason),
        status=402,
    )


def _money(state: PortalState, value: Money) -> str:
    return format_money(value, str(get_locale() or state.config.default_locale))


def _amount_mismatch() -> str:
    return _(
        "Your bank reported a payment of another amount than the amount due, so your plan has not "
        "changed. You will not be charged again for it: the shop has been told and will sort it out."
    )


def _not_paid() -> str:
    return _(
        "The payment did not go through, so your plan has not changed. "
        "Nothing was charged: check the amount and confirm again."
    )


def _declined(reason: str | None) -> str:
    detail = decline_text(reason)
    return _("The payment did not go through, so your plan has not changed. %(reason)s", reason=detail)


@blueprint.route("/subscriptions/<subscription_id>/plan/cancel-scheduled", methods=["POST"])
@customer_required
def cancel_scheduled_change(subscription_id: str) -> Any:
    """Withdraw a plan change set for the period's end."""
    state = get_state()
    customer = current_customer_or_401()
    if not ConfirmForm().validate():
        abort(400)
    subscription = _subscription_or_404(state, customer, subscription_id)
    if not rules_for(customer, subscription).may_change_plan or not _offered(state):
        abort(403)
    now = utcnow()
    try:
        kept = withdraw_scheduled_change(state, customer, subscription, now=now)
    except StateConflict:
        notify(_("There is no plan change to cancel."))
        return redirect(url_for(".subscription", subscription_id=subscription.id), code=303)
    except SubscriptionNotFound:
        abort(404)
    notify(_("The plan change is cancelled. You stay on %(plan)s.", plan=kept.plan_name))
    return redirect(url_for(".subscription", subscription_id=kept.id), code=303)


@blueprint.context_processor
def _plan_helpers() -> dict[str, Any]:
    """For the subscription page: whether to offer a plan change (the back
    end can change plans, the rules allow it and the subscription's state
    does), and the name of a plan scheduled for the period's end."""

    def plan_change_allowed(subscription: Subscription) -> bool:
        customer = get_current_customer()
        return (
            customer is not None
            and _offered(get_state())
            and rules_for(customer, subscription).may_change_plan
            and plan_change_blocked(subscription, utcnow()) is None
        )

    def scheduled_plan_name(subscription: Subscription) -> str:
        if subscription.scheduled_plan_id is None:
            return ""
        plan = get_state().storage.get_plan(subscription.scheduled_plan_id)
        return plan.name if plan is not None else subscription.scheduled_plan_id

    return {"plan_change_allowed": plan_change_allowed, "scheduled_plan_name": scheduled_plan_name}
