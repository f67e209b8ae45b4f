"""The overview page: what needs the customer's attention first, then a
card per area. A fixed handful of queries, however much history the
customer has."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from flask import render_template

from ..billing.invoice_payment import payable
from ..billing.lifecycle import SubscriptionView, describe
from ..clock import utcnow
from ..i18n import ngettext
from ..state import get_state
from ..storage import SubscriptionStatus
from ._base import blueprint, current_customer_or_401, customer_required
from ._flows import link_return_url

#: Newest invoices read for the overview: the latest is shown, and the open
#: ones among them are offered for payment.
_INVOICES_SHOWN = 10


def _period_end(view: SubscriptionView) -> datetime:
    return view.subscription.current_period_end


def _figures(views: list[SubscriptionView]) -> list[str]:
    """What the customer has, by state ("1 active · 1 paused"): a paused or
    trialing subscription is current, so it is never summed up as "0 active"."""
    n = Counter(v.status for v in views if v.is_current)
    active, trial = n[SubscriptionStatus.ACTIVE], n[SubscriptionStatus.TRIALING]
    paused, on_hold = n[SubscriptionStatus.PAUSED], n[SubscriptionStatus.ON_HOLD]
    figures = (
        ngettext("%(num)d active", "%(num)d active", active) if active else "",
        ngettext("%(num)d in trial", "%(num)d in trial", trial) if trial else "",
        ngettext("%(num)d paused", "%(num)d paused", paused) if paused else "",
        ngettext("%(num)d on hold", "%(num)d on hold", on_hold) if on_hold else "",
    )
    return [text for text in figures if text]


# --- pages ----------------------------------------------------------------


@blueprint.route("/")
@customer_required
def dashboard() -> Any:
    state = get_state()
    customer = current_customer_or_401()
    now = utcnow()
    subscriptions = state.storage.list_subscriptions(customer.id)
    views = [describe(s, now) for s in subscriptions]
    needs_attention = [v for v in views if v.on_hold]
    ending = sorted((v for v in views if v.ends_at is not None), key=_period_end)
    renewing = sorted((v for v in views if v.renews_at is not None), key=_period_end)
    paused = sorted((v for v in views if v.paused), key=lambda v: v.resumes_at or now)
    # The newest few: an open invoice to pay shows among what needs attention.
    latest_invoices = state.storage.list_invoices(customer.id, page=1, per_page=_INVOICES_SHOWN)
    to_pay = payable(state, customer, latest_invoices.items, subscriptions)
    return render_template(
        "customer_portal/dashboard.html",
        customer=customer,
        needs_attention=needs_attention,
        subscription_figures=_figures(views),
        current_count=sum(1 for v in views if v.is_current),
        has_subscriptions=bool(views),
        next_renewal=renewing[0] if renewing else None,
        ending=ending,
        paused=paused,
        return_url=link_return_url(),
        latest_invoice=latest_invoices.items[0] if latest_invoices.items else None,
        invoice_count=latest_invoices.total,
        invoices_to_pay=[i for i in latest_invoices.items if i.id in to_pay],
        license_key_count=state.storage.count_license_keys(customer.id),
    )
