"""Dodo Payments as the portal's billing back end (see :mod:`.store`)."""

from .store import (
    ENVIRONMENTS,
    IDEMPOTENCY_HEADER,
    SUBSCRIPTION_STATUSES,
    DodoBilling,
    DodoCompositeStorage,
    DodoPaymentProvider,
    DodoPlanChange,
    DodoRefused,
    DodoUnavailable,
    DodoWebhookEvent,
    InvalidDodoWebhook,
    ProrationMode,
    decline_reason,
    dodo_webhook_view,
    verify_dodo_webhook,
)

__all__ = [
    "ENVIRONMENTS",
    "IDEMPOTENCY_HEADER",
    "SUBSCRIPTION_STATUSES",
    "DodoBilling",
    "DodoCompositeStorage",
    "DodoPaymentProvider",
    "DodoPlanChange",
    "DodoRefused",
    "DodoUnavailable",
    "DodoWebhookEvent",
    "InvalidDodoWebhook",
    "ProrationMode",
    "decline_reason",
    "dodo_webhook_view",
    "verify_dodo_webhook",
]
