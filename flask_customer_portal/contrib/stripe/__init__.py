"""Stripe as the portal's billing back end (see :mod:`.store`)."""

from .store import (
    MAX_INVOICES,
    STRIPE_JS,
    WEBHOOK_EVENTS,
    StripeBillingStore,
    StripePaymentProvider,
    StripeSubscriptionLock,
    invoice_status,
    stripe_webhook_blueprint,
    subscription_status,
)

__all__ = [
    "MAX_INVOICES",
    "STRIPE_JS",
    "WEBHOOK_EVENTS",
    "StripeBillingStore",
    "StripePaymentProvider",
    "StripeSubscriptionLock",
    "invoice_status",
    "stripe_webhook_blueprint",
    "subscription_status",
]
