"""Subscriptions: the list, one subscription, cancelling one and keeping
one that was set to end.

Cancelling starts with the reason step of :mod:`.cancel_flow`, whose
confirmation page posts here with ``confirm=yes`` and the reason. A POST
without ``confirm=yes`` (older integrations post here directly) shows what
will happen; the reason is optional on both. Whether a
cancellation ends the subscription now or at the end of the paid period is
the merchant's choice (``CUSTOMER_PORTAL_CANCEL_AT_PERIOD_END``); an
``on_hold`` subscription always ends now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_babel import get_locale

from .. import signals
from ..auth import utcnow
from ..extension import PortalState, get_state
from ..formatting import format_date
from ..forms import ConfirmForm
from ..forms_cancel_flow import CancellationReasonForm
from ..i18n import gettext as _
from ..mail import MailDeliveryError, render_message
from ..pausing import pause_choices
from ..retention import cancellation_reasons
from ..rules import rules_for
from ..storage import AuditEvent, Customer, StateConflict, Subscription, SubscriptionStatus
from ._base import blueprint, current_customer_or_401, customer_required, notify, plausible_id
from ._flows import finish_flow
from .plans import settle_on_visit

__all__ = ["SubscriptionView", "describe"]

logger = logging.getLogger("flask_customer_portal")


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """A subscription as the customer sees it at one moment.

    A subscription set to end at period end stays ``active`` in storage
    until ``flask portal renew-due`` finishes it. Once its date has passed it
    is shown as ended, however late that job runs, and can no longer be
    kept.
    """

    subscription: Subscription
    status: SubscriptionStatus
    """The status to show (``cancelled`` once a set end date has passed)."""
    renews_at: datetime | None = None
    """Next renewal, for an active subscription that is not set to end."""
    ends_at: datetime | None = None
    """When a subscription that is set to end will end (still ahead)."""
    ended_at: datetime | None = None
    """When a past subscription ended."""
    unpaid_since: datetime | None = None
    """For an ``on_hold`` subscription: when the renewal that failed was due."""
    resumes_at: datetime | None = None
    """For a ``paused`` subscription: when it becomes active again."""

    @property
    def is_current(self) -> bool:
        return self.ended_at is None

    @property
    def paused(self) -> bool:
        return self.status is SubscriptionStatus.PAUSED

    @property
    def can_cancel(self) -> bool:
        return self.is_current and self.ends_at is None

    @property
    def can_undo(self) -> bool:
        return self.ends_at is not None

    @property
    def on_hold(self) -> bool:
        return self.status is SubscriptionStatus.ON_HOLD


def describe(subscription: Subscription, now: datetime) -> SubscriptionView:
    """What the customer should see for ``subscription`` at ``now``."""
    if subscription.status is SubscriptionStatus.CANCELLED:
        ended = subscription.ended_at or subscription.cancelled_at or subscription.current_period_end
        return SubscriptionView(subscription, SubscriptionStatus.CANCELLED, ended_at=ended)
    if subscription.status is SubscriptionStatus.ON_HOLD:
        return SubscriptionView(
            subscription, SubscriptionStatus.ON_HOLD, unpaid_since=subscription.current_period_end
        )
    if subscription.status is SubscriptionStatus.PAUSED:
        return SubscriptionView(subscription, SubscriptionStatus.PAUSED, resumes_at=subscription.resumes_at)
    if subscription.cancel_at_period_end:
        if subscription.current_period_end > now:
            return SubscriptionView(
                subscription, SubscriptionStatus.ACTIVE, ends_at=subscription.current_period_end
            )
        return SubscriptionView(
            subscription, SubscriptionStatus.CANCELLED, ended_at=subscription.current_period_end
        )
    return SubscriptionView(
        subscription, SubscriptionStatus.ACTIVE, renews_at=subscription.current_period_end
    )


def _ends_at_period_end(state: PortalState, subscription: Subscription, now: datetime) -> bool:
    """Whether cancelling now would keep the subscription until its period
    ends (the store's rule: only an active one whose period is still ahead)."""
    return (
        state.config.cancel_at_period_end
        and subscription.status is SubscriptionStatus.ACTIVE
        and subscription.current_period_end > now
    )


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


def _detail_page(
    view: SubscriptionView, *, problem: str | None = None, status: int = 200, pause_error: str | None = None
) -> Any:
    state = get_state()
    rules = rules_for(current_customer_or_401(), view.subscription)
    page = render_template(
        "customer_portal/subscription.html",
        view=view,
        subscription=view.subscription,
        problem=problem,
        rules=rules,
        pause_months=pause_choices(
            state.config, view.subscription, utcnow(), may_pause=rules.may_pause, storage=state.storage
        ),
        pause_error=pause_error,
    )
    return page, status


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


def _conflict(
    state: PortalState,
    customer: Customer,
    subscription_id: str,
    explain: Callable[[PortalState, Customer, SubscriptionView], str],
) -> Any:
    """The subscription's page as it is now, with why the change was refused."""
    subscription = _subscription_or_404(state, customer, subscription_id)
    view = describe(subscription, utcnow())
    return _detail_page(view, problem=explain(state, customer, view), status=409)


def _send_email(state: PortalState, customer: Customer, name: str, **context: Any) -> None:
    """Render now (in the customer's language), deliver on the worker thread:
    a slow or failing mail server never undoes or delays the change."""
    message = render_message(state, name, to=customer.email, customer=customer, **context)

    def deliver() -> None:
        try:
            state.mailer.send(message)
        except MailDeliveryError as exc:
            logger.error("Could not send the %s email to customer %s: %s", name, customer.id, exc)

    state.run_in_background(current_app._get_current_object(), deliver)  # type: ignore[attr-defined]


def _subscription_url(state: PortalState, subscription: Subscription) -> str:
    """Absolute link for emails, from the configured base URL only."""
    return f"{state.config.portal_url}/subscriptions/{quote(subscription.id, safe='')}"


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
    if request.form.get("confirm") != "yes":
        return render_template(
            "customer_portal/cancel_subscription.html",
            view=view,
            subscription=subscription,
            at_period_end=_ends_at_period_end(state, subscription, now),
            reason=reason,
            offer=None,
        )

    ends_later = _ends_at_period_end(state, subscription, now)
    details = {"at_period_end": "true" if ends_later else "false"}
    if reason is not None:
        details["reason"] = reason.code
        if reason.text:
            details["reason_text"] = reason.text
    try:
        cancelled = state.storage.cancel_subscription(
            customer.id,
            subscription.id,
            at_period_end=state.config.cancel_at_period_end,
            now=now,
            event=AuditEvent(
                customer_id=customer.id,
                action="subscription.cancelled",
                occurred_at=now,
                subject_id=subscription.id,
                details=details,
            ),
        )
    except StateConflict:
        return _conflict(state, customer, subscription.id, _cannot_cancel)
    if cancelled is None:
        abort(404)
    at_period_end = cancelled.status is not SubscriptionStatus.CANCELLED
    signals.subscription_cancelled.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        customer=customer,
        subscription=cancelled,
        at_period_end=at_period_end,
        reason=None if reason is None else reason.code,
        reason_text=None if reason is None else reason.text,
    )
    _send_email(
        state,
        customer,
        "subscription_cancelled",
        subscription=cancelled,
        at_period_end=at_period_end,
        link=_subscription_url(state, cancelled),
    )
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
    now = utcnow()
    try:
        kept = state.storage.undo_cancellation(
            customer.id,
            subscription_id,
            now=now,
            event=AuditEvent(
                customer_id=customer.id,
                action="subscription.cancellation_undone",
                occurred_at=now,
                subject_id=subscription_id,
            ),
        )
    except StateConflict:
        return _conflict(state, customer, subscription_id, _cannot_undo)
    if kept is None:
        abort(404)
    signals.cancellation_undone.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        customer=customer,
        subscription=kept,
    )
    _send_email(
        state, customer, "cancellation_undone", subscription=kept, link=_subscription_url(state, kept)
    )
    notify(
        _(
            "Your %(product)s subscription will continue. It renews on %(date)s.",
            product=kept.product_name,
            date=_date(state, customer, kept.current_period_end),
        )
    )
    return redirect(url_for(".subscription", subscription_id=kept.id), code=303)
