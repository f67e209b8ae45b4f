"""Cancelling with a reason, retention offers, pausing and resuming.

The flow: the subscription's page → ``cancel_flow`` (GET: why are you
cancelling?; POST: the reason is checked, the merchant's retention offer
function is asked, and the confirmation page shows its offer, if any) →
either ``accept_retention_offer`` (POST) or the final confirmation, the
``cancel_subscription`` POST of :mod:`.subscriptions`, carrying the reason.

Pausing (``pause_subscription``) and resuming early
(``unpause_subscription``) are single POSTs from the subscription's page.
Per-customer rules are enforced on every POST, not only by hiding buttons:
``may_cancel`` for the flow and the offers, ``may_pause`` (and
``CUSTOMER_PORTAL_ALLOW_PAUSE``) for pausing. Resuming is always allowed,
so that no rule can leave a customer stuck in a pause.
"""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, url_for

from ..billing.lifecycle import describe, rules_for
from ..billing.periods import add_months
from ..billing.retention import accept_offer, discounted_price, offer_for
from ..clock import utcnow
from ..errors import SubscriptionNotFound
from ..forms.cancel_flow import CancellationReasonForm
from ..i18n import gettext as _
from ..offers import (
    CancellationReason,
    DiscountOffer,
    PauseOffer,
    PlanOffer,
    RetentionOffer,
    cancellation_reasons,
)
from ..state import PortalState, get_state
from ..storage import Customer, StateConflict, Subscription
from ._base import blueprint, current_customer_or_401, customer_required, notify
from ._flows import finish_flow
from .subscriptions import _cannot_cancel, _date, _detail_page, _subscription_or_404, cancel_confirmation

__all__ = ["reason_form", "render_confirmation"]


def reason_form(state: PortalState, *, require_reason: bool) -> CancellationReasonForm:
    """The reason form of this request, with the configured reasons."""
    return CancellationReasonForm(reasons=cancellation_reasons(state.config), require_reason=require_reason)


def render_confirmation(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    reason: CancellationReason | None,
    *,
    offer: RetentionOffer | None = None,
) -> str:
    """The last step: what cancelling will do, the merchant's offer (if
    any), and the button that cancels, carrying the reason."""
    now = utcnow()
    extra: dict[str, Any] = {}
    if isinstance(offer, PauseOffer):
        extra = {"offer_kind": "pause", "offer_resumes_at": add_months(now, offer.months)}
    elif isinstance(offer, DiscountOffer):
        extra = {"offer_kind": "discount", "offer_price": discounted_price(subscription, offer.percent)}
    elif isinstance(offer, PlanOffer):
        extra = {"offer_kind": "plan"}
    return render_template(
        "customer_portal/cancel_subscription.html",
        view=describe(subscription, now),
        subscription=subscription,
        reason=reason,
        **cancel_confirmation(state, subscription, now),
        offer=offer,
        **extra,
    )


def _cancellable(state: PortalState, customer: Customer, subscription_id: str) -> tuple[Subscription, Any]:
    """The subscription, and the response to send instead of going on
    (a 403 when the rules forbid cancelling, a 409 when it cannot be)."""
    subscription = _subscription_or_404(state, customer, subscription_id)
    if not rules_for(customer, subscription).may_cancel:
        abort(403)
    view = describe(subscription, utcnow())
    if not view.can_cancel:
        return subscription, _detail_page(view, problem=_cannot_cancel(state, customer, view), status=409)
    return subscription, None


@blueprint.route("/subscriptions/<subscription_id>/cancel/reason", methods=["GET", "POST"])
@customer_required
def cancel_flow(subscription_id: str) -> Any:
    """Ask why; then the confirmation, with the merchant's offer if any."""
    state = get_state()
    customer = current_customer_or_401()
    subscription, refused = _cancellable(state, customer, subscription_id)
    if refused is not None:
        return refused
    form = reason_form(state, require_reason=True)
    if form.is_submitted():
        if form.validate():
            reason = form.cancellation_reason()
            if reason is None:  # pragma: no cover - required by the form
                abort(400)
            offer = offer_for(state, customer, subscription, reason, now=utcnow())
            return render_confirmation(state, customer, subscription, reason, offer=offer)
        if form.csrf_failed:
            abort(400)
        return render_reason_page(subscription, form), 422
    return render_reason_page(subscription, form)


def render_reason_page(subscription: Subscription, form: CancellationReasonForm) -> str:
    return render_template("customer_portal/cancel_reason.html", subscription=subscription, form=form)


@blueprint.route("/subscriptions/<subscription_id>/cancel/offer", methods=["POST"])
@customer_required
def accept_retention_offer(subscription_id: str) -> Any:
    """Take the offer instead of cancelling. The form names only the
    reason: the offer is asked for again and applied as it is now."""
    state = get_state()
    customer = current_customer_or_401()
    form = reason_form(state, require_reason=True)
    form_valid = form.validate()
    if form.csrf_failed:
        abort(400)
    subscription, refused = _cancellable(state, customer, subscription_id)
    if refused is not None:
        return refused
    if not form_valid:
        return render_reason_page(subscription, form), 422
    reason = form.cancellation_reason()
    if reason is None:  # pragma: no cover - required by the form
        abort(400)
    try:
        accepted = accept_offer(state, customer, subscription, reason, now=utcnow())
    except (StateConflict, SubscriptionNotFound):
        accepted = None
        subscription = _subscription_or_404(state, customer, subscription_id)
    if accepted is None:
        return _detail_page(
            describe(subscription, utcnow()),
            problem=_("This offer is no longer available. Nothing was changed."),
            status=409,
        )
    applied = accepted.subscription
    if isinstance(accepted.offer, PauseOffer):
        message = _(
            "Your %(product)s subscription is paused. It starts again on %(date)s.",
            product=applied.product_name,
            date=_date(state, customer, applied.resumes_at or utcnow()),
        )
    else:
        message = _(
            "Thank you for staying. Your next renewals are %(percent)d%% off.",
            percent=accepted.offer.percent,
        )
    notify(message)
    # A deep link for cancelling is done: the customer decided (to stay).
    done = finish_flow("cancel", applied.id)
    return done or redirect(url_for(".subscription", subscription_id=applied.id), code=303)
