"""Dodo Payments as the portal's billing back end.

Subscriptions, payments (the portal's invoices), saved payment methods and
licence keys live at Dodo Payments; the portal reads them through the
official ``dodopayments`` SDK every time it shows them, so a page is never
older than Dodo's own records. Customers, sign-in links, sessions and the
audit log stay in the merchant's database::

    from flask_customer_portal.contrib.dodo import DodoBilling, DodoCompositeStorage, DodoPaymentProvider

    billing = DodoBilling.from_api_key(os.environ["DODO_PAYMENTS_API_KEY"], environment="live_mode")
    CustomerPortal(
        app,
        storage=DodoCompositeStorage(SQLAlchemyStorage(db), billing=billing),
        payments=DodoPaymentProvider(billing),
    )

Dodo bills its subscriptions itself: it renews them, retries failed
renewals and, when an ``on_hold`` subscription gets a payment method, charges
the arrears and makes it ``active`` again. The portal never charges a Dodo
subscription on its own: :class:`DodoPaymentProvider` refuses
:meth:`~DodoPaymentProvider.charge` and pays arrears through
``update_payment_method`` instead (:meth:`~DodoPaymentProvider.pay_arrears`).

Import everything from this package; inside it, ``store.py`` holds the
billing store (and the composite store whose licence keys come from Dodo),
``provider.py`` the payment provider, ``webhooks.py`` the webhook view
and ``_convert.py`` what they share (Dodo's statuses and records as the
portal's).

Install with ``pip install "flask-customer-portal[dodo]"``.
"""

from ._convert import SUBSCRIPTION_STATUSES, decline_reason
from .provider import IDEMPOTENCY_HEADER, DodoPaymentProvider
from .store import (
    ENVIRONMENTS,
    DodoBilling,
    DodoCompositeStorage,
    DodoPlanChange,
    DodoReadUnavailable,
    DodoRefused,
    DodoUnavailable,
    ProrationMode,
)
from .webhooks import DodoWebhookEvent, InvalidDodoWebhook, dodo_webhook_view, verify_dodo_webhook

__all__ = [
    "ENVIRONMENTS",
    "IDEMPOTENCY_HEADER",
    "SUBSCRIPTION_STATUSES",
    "DodoBilling",
    "DodoCompositeStorage",
    "DodoPaymentProvider",
    "DodoPlanChange",
    "DodoReadUnavailable",
    "DodoRefused",
    "DodoUnavailable",
    "DodoWebhookEvent",
    "InvalidDodoWebhook",
    "ProrationMode",
    "decline_reason",
    "dodo_webhook_view",
    "verify_dodo_webhook",
]
