"""The overview page."""

from __future__ import annotations

from typing import Any

from flask import render_template, session

from ..extension import get_state
from ..storage import SubscriptionStatus
from ._base import blueprint, current_customer_or_401, customer_required

# --- pages ----------------------------------------------------------------


@blueprint.route("/")
@customer_required
def dashboard() -> Any:
    state = get_state()
    customer = current_customer_or_401()
    subscriptions = state.storage.list_subscriptions(customer.id)
    needs_attention = [s for s in subscriptions if s.status is SubscriptionStatus.ON_HOLD]
    active = [s for s in subscriptions if s.status is SubscriptionStatus.ACTIVE]
    renewals = sorted((s for s in active if not s.cancel_at_period_end), key=lambda s: s.current_period_end)
    latest_invoices = state.storage.list_invoices(customer.id, page=1, per_page=1)
    license_keys = state.storage.list_license_keys(customer.id)
    return render_template(
        "customer_portal/dashboard.html",
        customer=customer,
        needs_attention=needs_attention,
        active_subscriptions=active,
        next_renewal=renewals[0] if renewals else None,
        latest_invoice=latest_invoices.items[0] if latest_invoices.items else None,
        invoice_count=latest_invoices.total,
        license_key_count=len(license_keys),
        return_url=session.get("_customer_portal_return_url"),
    )
