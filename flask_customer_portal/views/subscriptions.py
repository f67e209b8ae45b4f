"""Subscriptions: the list, one subscription, cancelling one and keeping
one that was set to end.

Cancelling starts with the reason step of :mod:`.cancel_flow`, whose
confirmation page posts here with ``confirm=yes`` and the reason. A POST
without ``confirm=yes`` (older integrations post here directly) shows what
will happen; the reason is optional on both. Whether a
cancellation ends the subscription now or at the end of the paid period is
the merchant's choice (``CUSTOMER_PORTAL_CANCEL_MODES``, or
``CUSTOMER_PORTAL_CANCEL_AT_PERIOD_END``), or the customer's where the
merchant allows both (the confirmation's ``when`` field); an ``on_hold``
subscription always ends now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort, redirect, render_template, request, url_for
from flask_babel import get_locale

from ..billing import lifecycle
from ..billing.lifecycle import SubscriptionView, cancel_choices, describe, ends_at_period_end, rules_for
from ..billing.pausing import can_pause, may_pause, pause_choices, pause_subscription, unpause
from ..billing.periods import add_interval
from ..billing.promotions import CodeRefusal, refusal_message
from ..billing.subscription_codes import (
    apply_subscription_code,
    has_discount,
    may_take_code,
    subscription_codes_supported,
)
from ..billing.upcoming import retention_discount, upcoming_renewal
from ..clock import utcnow
from ..errors import SubscriptionNotFound
from ..formatting import format_date
from ..forms import ConfirmForm
from ..forms.cancel_flow import CancellationReasonForm, PauseForm
from ..i18n import gettext as _
from ..offers import cancellation_reasons
from ..state import PortalState, get_state
from ..storage import Customer, StateConflict, Subscription, SubscriptionStatus
from ._base import blueprint, current_customer_or_401, customer_required, notify, plausible_id
from ._flows import finish_flow
from .plans import settle_on_visit

__all__: list[str] = []


def _check_id(subscription_id: str) -> None:
    if not plausible_id(subscription_id):
        abort(404)


def _subscription_or_404(state: PortalState, customer: Customer, subscription_id: str) -> Subscription:
    _check_id(subscription_id)
    subscription = state.storage.get_subscription(customer.id, subscription_id)
    if subscription is None:
        abort(404)
    return subscription


def _date(state: PortalState, customer: Customer, moment: datetime) -> str:
    locale = str(get_locale() or state.config.default_locale)
    return format_date(moment, locale, customer.timezone or state.config.default_timezone)


def refund_policy(state: PortalState) -> str | None:
    """The merchant's refund policy in the language of this request (else
    the default language), or ``None``."""
    policy = state.config.refund_policy
    if policy is None or isinstance(policy, str):
        return policy
    texts = dict(policy)
    return texts.get(str(get_locale() or "")) or texts.get(state.config.default_locale)


def cancel_confirmation(
    state: PortalState, subscription: Subscription, now: datetime, chosen: str | None = None
) -> dict[str, Any]:
    """What the confirmation page shows about when the subscription ends:
    the choices (two when the merchant allows both and they differ), the
    one chosen, and the merchant's refund policy."""
    choices = cancel_choices(state, subscription, now)
    return {
        "cancel_choices": choices,
        "cancel_when": chosen if chosen in choices else None,
        "at_period_end": ends_at_period_end(
            state, subscription, now, choices[0] if len(choices) == 1 else None
        ),
        "refund_policy": refund_policy(state),
    }


def _detail_page(
    view: SubscriptionView,
    *,
    problem: str | None = None,
    status: int = 200,
    pause_error: str | None = None,
    code_error: str | None = None,
    promotion_code: str = "",
) -> Any:
    state = get_state()
    rules = rules_for(current_customer_or_401(), view.subscription)
    now = utcnow()
    pause_months = pause_choices(
        state.config,
        view.subscription,
        now,
        may_pause=rules.may_pause,
        pausable_store=state.capabilities.pause,
    )
    page = render_template(
        "customer_portal/subscription.html",
        view=view,
        subscription=view.subscription,
        problem=problem,
        rules=rules,
        pause_months=pause_months,
        # The date each choice would resume on, as pausing now computes it,
        # so the customer sees when it starts again before choosing.
        pause_resume_dates={n: add_interval(now, "month", n) for n in pause_months},
        pause_error=pause_error,
        upcoming=upcoming_renewal(view.subscription, now),
        discount=retention_discount(view.subscription),
        code_form=_code_form(state, view.subscription, now),
        code_error=code_error,
        promotion_code=promotion_code,
    )
    return page, status


def _code_form(state: PortalState, subscription: Subscription, now: datetime) -> str | None:
    """Whether the page offers the promotion-code field: ``"field"``, or
    ``"has_discount"`` to say why not, or ``None``."""
    if not subscription_codes_supported(state) or not may_take_code(subscription, now):
        return None
    return "has_discount" if has_discount(subscription) else "field"


def _cannot_cancel(state: PortalState, customer: Customer, view: SubscriptionView) -> str:
    if view.ends_at is not None:
        return _(
            "This subscription is already set to end on %(date)s.", date=_date(state, customer, view.ends_at)
        )
    if view.ended_at is not None:
        return _("This subscription already ended on %(date)s.", date=_date(state, customer, view.ended_at))
    return _("This subscription cannot be cancelled right now. Reload the page and try again.")


def _cannot_undo(state: PortalState, customer: Customer, view: SubscriptionView) -> str:
    if view.ended_at is not None:
        return _(
            "It is too late to keep this subscription: it ended on %(date)s.",
            date=_date(state, customer, view.ended_at),
        )
    return _("This subscription is not set to end, so there is nothing to undo.")


# --- pages ----------------------------------------------------------------


@blueprint.route("/subscriptions")
@customer_required
def subscriptions() -> Any:
    state = get_state()
    customer = current_customer_or_401()
    now = utcnow()
    views = [describe(s, now) for s in state.storage.list_subscriptions(customer.id)]
    current = [v for v in views if v.is_current]
    # Newest ending first; one whose end date just passed joins the others.
    past = sorted((v for v in views if not v.is_current), key=lambda v: v.ended_at or now, reverse=True)
    return render_template("customer_portal/subscriptions.html", current=current, past=past)


@blueprint.route("/subscriptions/<subscription_id>")
@customer_required
def subscription(subscription_id: str) -> Any:
    state = get_state()
    customer = current_customer_or_401()
    found = settle_on_visit(state, customer, _subscription_or_404(state, customer, subscription_id))
    return _detail_page(describe(found, utcnow()))


@blueprint.route("/subscriptions/<subscription_id>/cancel", methods=["POST"])
@customer_required
def cancel_subscription(subscription_id: str) -> Any:
    """Without ``confirm=yes``: the page that says what will happen. With
    it: cancel, tell the customer (page notice and email) and the merchant
    (signal, audit log)."""
    state = get_state()
    customer = current_customer_or_401()
    form = CancellationReasonForm(reasons=cancellation_reasons(state.config), require_reason=False)
    form_valid = form.validate()
    if form.csrf_failed:
        abort(400)
    subscription = _subscription_or_404(state, customer, subscription_id)
    if not rules_for(customer, subscription).may_cancel:
        abort(403)
    now = utcnow()
    view = describe(subscription, now)
    if not view.can_cancel:
        return _detail_page(view, problem=_cannot_cancel(state, customer, view), status=409)
    if not form_valid:
        page = render_template("customer_portal/cancel_reason.html", subscription=subscription, form=form)
        return page, 422
    reason = form.cancellation_reason()
    choices = cancel_choices(state, subscription, now)
    when = request.form.get("when")
    if request.form.get("confirm") != "yes" or (len(choices) > 1 and when not in choices):
        # Ending now or at the period's end is the customer's to say where
        # both are allowed: never assumed.
        missing = request.form.get("confirm") == "yes"
        page = render_template(
            "customer_portal/cancel_subscription.html",
            view=view,
            subscription=subscription,
            reason=reason,
            offer=None,
            cancel_when_error=_("Choose when the subscription ends.") if missing else None,
            **cancel_confirmation(state, subscription, now, when),
        )
        return (page, 422) if missing else page
    mode = when if len(choices) > 1 else None
    if mode is None and when is not None and when not in choices:
        abort(400)  # a mode the merchant does not allow, or one that no longer applies

    try:
        result = lifecycle.cancel(state, customer, subscription, reason=reason, now=now, mode=mode)
    except SubscriptionNotFound:
        abort(404)
    if not result.done:
        return _detail_page(result.view, problem=_cannot_cancel(state, customer, result.view), status=409)
    cancelled = result.subscription
    at_period_end = cancelled.status is not SubscriptionStatus.CANCELLED
    if at_period_end:
        notify(
            _(
                "Your %(product)s subscription will end on %(date)s. You keep access until then.",
                product=cancelled.product_name,
                date=_date(state, customer, cancelled.current_period_end),
            )
        )
    else:
        notify(_("Your %(product)s subscription is cancelled.", product=cancelled.product_name))
    done = finish_flow("cancel", cancelled.id)
    return done or redirect(url_for(".subscription", subscription_id=cancelled.id), code=303)


@blueprint.route("/subscriptions/<subscription_id>/resume", methods=["POST"])
@customer_required
def undo_cancellation(subscription_id: str) -> Any:
    """Keep a subscription that was set to end, while its end is ahead."""
    state = get_state()
    customer = current_customer_or_401()
    if not ConfirmForm().validate():
        abort(400)
    _check_id(subscription_id)
    try:
        result = lifecycle.undo_cancellation(state, customer, subscription_id, now=utcnow())
    except SubscriptionNotFound:
        abort(404)
    if not result.done:
        return _detail_page(result.view, problem=_cannot_undo(state, customer, result.view), status=409)
    kept = result.subscription
    notify(
        _(
            "Your %(product)s subscription will continue. It renews on %(date)s.",
            product=kept.product_name,
            date=_date(state, customer, kept.current_period_end),
        )
    )
    return redirect(url_for(".subscription", subscription_id=kept.id), code=303)


@blueprint.route("/subscriptions/<subscription_id>/pause", methods=["POST"], endpoint="pause_subscription")
@customer_required
def pause_subscription_view(subscription_id: str) -> Any:
    """Pause for the months chosen (1 to ``CUSTOMER_PORTAL_MAX_PAUSE_MONTHS``)."""
    state = get_state()
    customer = current_customer_or_401()
    form = PauseForm(max_months=state.config.max_pause_months)
    form_valid = form.validate()
    if form.csrf_failed:
        abort(400)
    subscription = _subscription_or_404(state, customer, subscription_id)
    if not may_pause(state, rules_for(customer, subscription)):
        abort(403)
    now = utcnow()
    if not can_pause(subscription, now):
        return _detail_page(
            describe(subscription, now),
            problem=_("This subscription cannot be paused right now."),
            status=409,
        )
    if not form_valid:
        return _detail_page(describe(subscription, now), pause_error=form.months.errors[0], status=422)
    try:
        paused = pause_subscription(state, customer, subscription.id, months=form.months_value, now=now)
    except StateConflict:
        return _detail_page(
            describe(_subscription_or_404(state, customer, subscription_id), utcnow()),
            problem=_("This subscription cannot be paused right now."),
            status=409,
        )
    except SubscriptionNotFound:
        abort(404)
    notify(
        _(
            "Your %(product)s subscription is paused. It starts again on %(date)s.",
            product=paused.product_name,
            date=_date(state, customer, paused.resumes_at or now),
        )
    )
    return redirect(url_for(".subscription", subscription_id=paused.id), code=303)


@blueprint.route("/subscriptions/<subscription_id>/unpause", methods=["POST"])
@customer_required
def unpause_subscription(subscription_id: str) -> Any:
    """End a pause now: active again, the period moved on by the paused time."""
    state = get_state()
    customer = current_customer_or_401()
    if not ConfirmForm().validate():
        abort(400)
    subscription = _subscription_or_404(state, customer, subscription_id)
    try:
        resumed = unpause(state, customer, subscription, now=utcnow())
    except StateConflict:
        return _detail_page(
            describe(_subscription_or_404(state, customer, subscription_id), utcnow()),
            problem=_("This subscription is not paused, so there is nothing to resume."),
            status=409,
        )
    except SubscriptionNotFound:
        abort(404)
    notify(
        _(
            "Your %(product)s subscription is active again. It renews on %(date)s.",
            product=resumed.product_name,
            date=_date(state, customer, resumed.current_period_end),
        )
    )
    return redirect(url_for(".subscription", subscription_id=resumed.id), code=303)


@blueprint.route(
    "/subscriptions/<subscription_id>/promotion-code", methods=["POST"], endpoint="apply_promotion_code"
)
@customer_required
def apply_promotion_code(subscription_id: str) -> Any:
    """Make a promotion code the subscription's discount on its next renewals."""
    state = get_state()
    customer = current_customer_or_401()
    if not ConfirmForm().validate():
        abort(400)
    if not subscription_codes_supported(state):
        abort(404)
    subscription = _subscription_or_404(state, customer, subscription_id)
    now = utcnow()
    raw_code = request.form.get("promotion_code", "").strip()[:40]
    if not raw_code:
        return _detail_page(describe(subscription, now), code_error=_("Enter a promotion code."), status=422)
    try:
        result = apply_subscription_code(state, customer, subscription, raw_code, now=now)
    except SubscriptionNotFound:
        abort(404)
    if result.conflict or result.refusal is CodeRefusal.HAS_DISCOUNT:
        # Not about the code: the page no longer offers the field.
        problem = (
            refusal_message(CodeRefusal.HAS_DISCOUNT)
            if result.refusal is CodeRefusal.HAS_DISCOUNT
            else _("A promotion code cannot be added to this subscription now.")
        )
        return _detail_page(describe(result.subscription, now), problem=problem, status=409)
    if result.code is None:
        return _detail_page(
            describe(result.subscription, now),
            code_error=refusal_message(result.refusal or CodeRefusal.INVALID),
            promotion_code=raw_code,
            status=422,
        )
    notify(
        _(
            "Promotion code %(code)s added. Its discount is taken off when the subscription renews.",
            code=result.code.key,
        )
    )
    return redirect(url_for(".subscription", subscription_id=result.subscription.id), code=303)
