"""Stripe as the portal's billing back end (``pip install flask-customer-portal[stripe]``).

:class:`StripeBillingStore` reads a customer's subscriptions, invoices and
cards from Stripe and makes the portal's billing changes there;
:class:`StripePaymentProvider` attaches cards made by Stripe Elements and
pays open Stripe invoices. Customers, sign-in, sessions, the audit log and
licence keys stay in the local store: mount both with
:class:`~flask_customer_portal.contrib.composite.CompositeStorage`::

    client = stripe.StripeClient(os.environ["STRIPE_SECRET_KEY"])
    CustomerPortal(
        app,
        storage=CompositeStorage(SQLAlchemyStorage(db), billing=StripeBillingStore(client)),
        payments=StripePaymentProvider(client, publishable_key=os.environ["STRIPE_PUBLISHABLE_KEY"]),
    )
    app.register_blueprint(stripe_webhook_blueprint(os.environ["STRIPE_WEBHOOK_SECRET"]))

Nothing is mirrored: pages read Stripe, so what the customer sees is what
Stripe has. A customer's reads are made once per request and, with a cache
(``_cache.py``; ``CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS``), reused between
page views until a webhook about the customer, or a change the customer
makes, drops them (see :func:`stripe_webhook_blueprint`); forms and the
money path always read Stripe. Every id the portal shows is
Stripe's own (``sub_…``, ``in_…``, ``pm_…``); customer ids are Stripe's
``cus_…`` ids (map them with the composite's ``customer_ids``).

Import everything from this package; inside it, ``store.py`` holds the
billing store and the money path's view of a subscription, ``provider.py`` the payment provider,
``webhooks.py`` the webhook blueprint, ``_cache.py`` the reuse of a
customer's reads and ``_convert.py`` what they share (Stripe's statuses,
times and ids as the portal's).

The money path
    The portal pays an ``on_hold`` subscription's arrears through
    :func:`~flask_customer_portal.billing.renewal.reactivate_subscription`, which
    works on a :class:`~flask_customer_portal.storage.SubscriptionLock`.
    Here that lock is :class:`StripeSubscriptionLock`: its open invoices are
    the subscription's open Stripe invoices, and a charge is
    ``Invoice.pay(invoice, payment_method=…)`` with the portal's
    idempotency key ``invoice:<in_…>:attempt:<n>`` — Stripe answers a
    repeated key with the first outcome and never pays an invoice twice.
    Stripe has no locks, and the store takes none in its process: the
    :class:`~flask_customer_portal.contrib.composite.CompositeStorage` holds
    the database's lock on the subscription for the whole payment, which
    holds across workers and servers (and refuses the payment when its
    local store has no such lock). Were two ever to pay the same invoice at
    once, both would send the same key for the same attempt, and Stripe's
    idempotency makes that one payment. The
    attempt log lives in the invoice's metadata (``portal_attempt_<n>``),
    audit events in the local store. Stripe renews subscriptions itself:
    :meth:`StripeBillingStore.subscriptions_due` is always empty, and a
    period's dates are Stripe's (the lock ignores new period dates).
"""

from __future__ import annotations

from ._cache import MemoryReadCache, ReadCache
from ._convert import invoice_status, subscription_status
from .provider import STRIPE_JS, StripePaymentProvider
from .store import MAX_INVOICES, StripeBillingStore, StripeSubscriptionLock
from .webhooks import WEBHOOK_EVENTS, stripe_webhook_blueprint

__all__ = [
    "MAX_INVOICES",
    "STRIPE_JS",
    "WEBHOOK_EVENTS",
    "MemoryReadCache",
    "ReadCache",
    "StripeBillingStore",
    "StripePaymentProvider",
    "StripeSubscriptionLock",
    "invoice_status",
    "stripe_webhook_blueprint",
    "subscription_status",
]
