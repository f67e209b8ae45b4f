"""Where the demo shop's billing records live, chosen by ``PORTAL_BACKEND``.

* ``local`` (the default): the shop's own tables, the test payment provider.
* ``dodo``: Dodo Payments. Customers, links and sessions stay in the shop's
  database; subscriptions, payments, saved cards and licence keys come from
  Dodo. Set ``DODO_PAYMENTS_API_KEY``, ``DODO_PAYMENTS_ENVIRONMENT``
  (``test_mode``, the default, or ``live_mode``) or ``DODO_PAYMENTS_BASE_URL``,
  and ``DODO_PAYMENTS_WEBHOOK_KEY`` to receive Dodo's webhooks at
  ``/webhooks/dodo``. The shop's customer ids must be Dodo's ``cus_…`` ids.
* ``stripe``: Stripe. Customers, links, sessions and licence keys stay in the
  shop's database; subscriptions, invoices and saved cards come from Stripe.
  Set ``STRIPE_SECRET_KEY`` and ``STRIPE_PUBLISHABLE_KEY``, and
  ``STRIPE_WEBHOOK_SECRET`` to receive Stripe's webhooks at
  ``/webhooks/stripe``. ``STRIPE_API_BASE`` sends every request to another
  server, e.g. ``http://127.0.0.1:8420`` for localstripe (which also serves
  the page's Stripe.js). The shop's customer ids must be Stripe's ``cus_…`` ids.
  ``STRIPE_CACHE_REDIS_URL`` (``redis://…``) keeps a customer's Stripe reads
  in Redis through Flask-Caching (``pip install Flask-Caching``), shared by
  every worker and host, for ``CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS``;
  Stripe's webhooks forget them.

Each back end is a function that takes the app and its SQLAlchemy object
and returns the keyword arguments for ``CustomerPortal.init_app``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_customer_portal import ConfigurationError

__all__ = ["BACKENDS", "portal_backend"]


def _setting(app: Flask, key: str, default: str | None = None) -> str | None:
    value = app.config.get(key)
    return str(value) if value else default


def _local(app: Flask, db: SQLAlchemy) -> dict[str, Any]:
    return {}


def _dodo(app: Flask, db: SQLAlchemy) -> dict[str, Any]:
    from flask_customer_portal.contrib.dodo import (
        DodoBilling,
        DodoCompositeStorage,
        DodoPaymentProvider,
        dodo_webhook_view,
    )
    from flask_customer_portal.contrib.sqla import SQLAlchemyStorage

    api_key = _setting(app, "DODO_PAYMENTS_API_KEY")
    if not api_key:
        raise ConfigurationError("DODO_PAYMENTS_API_KEY", "PORTAL_BACKEND=dodo needs a Dodo Payments API key")
    environment = _setting(app, "DODO_PAYMENTS_ENVIRONMENT", "test_mode") or "test_mode"
    try:
        billing = DodoBilling.from_api_key(
            api_key, environment=environment, base_url=_setting(app, "DODO_PAYMENTS_BASE_URL")
        )
    except ValueError as exc:
        raise ConfigurationError("DODO_PAYMENTS_ENVIRONMENT", str(exc)) from exc
    webhook_key = _setting(app, "DODO_PAYMENTS_WEBHOOK_KEY")
    if webhook_key:
        app.add_url_rule("/webhooks/dodo", view_func=dodo_webhook_view(webhook_key), methods=["POST"])
    return {
        "storage": DodoCompositeStorage(SQLAlchemyStorage(db), billing=billing),
        "payments": DodoPaymentProvider(billing),
    }


def _stripe(app: Flask, db: SQLAlchemy) -> dict[str, Any]:
    import stripe

    from flask_customer_portal.contrib.composite import CompositeStorage
    from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
    from flask_customer_portal.contrib.stripe import (
        STRIPE_JS,
        StripeBillingStore,
        StripePaymentProvider,
        stripe_webhook_blueprint,
    )

    secret_key = _setting(app, "STRIPE_SECRET_KEY")
    if not secret_key:
        raise ConfigurationError(
            "STRIPE_SECRET_KEY", "PORTAL_BACKEND=stripe needs a Stripe secret key (sk_…)"
        )
    publishable_key = _setting(app, "STRIPE_PUBLISHABLE_KEY")
    if not publishable_key:
        raise ConfigurationError(
            "STRIPE_PUBLISHABLE_KEY", "PORTAL_BACKEND=stripe needs a Stripe publishable key (pk_…)"
        )
    api_base = (_setting(app, "STRIPE_API_BASE") or "").rstrip("/")
    client = stripe.StripeClient(secret_key, base_addresses={"api": api_base} if api_base else None)
    webhook_secret = _setting(app, "STRIPE_WEBHOOK_SECRET")
    if webhook_secret:
        app.register_blueprint(stripe_webhook_blueprint(webhook_secret, url="/webhooks/stripe"))
    cache = _stripe_cache(app)
    billing = StripeBillingStore(client) if cache is None else StripeBillingStore(client, cache=cache)
    return {
        "storage": CompositeStorage(SQLAlchemyStorage(db), billing=billing),
        "payments": StripePaymentProvider(
            client,
            publishable_key=publishable_key,
            js_url=f"{api_base}/js.stripe.com/v3/" if api_base else f"{STRIPE_JS}/v3/",
        ),
    }


def _stripe_cache(app: Flask) -> Any:
    """A Flask-Caching ``Cache`` on ``STRIPE_CACHE_REDIS_URL``, or ``None``."""
    url = _setting(app, "STRIPE_CACHE_REDIS_URL")
    if not url:
        return None
    try:
        from flask_caching import Cache
    except ImportError as exc:
        raise ConfigurationError(
            "STRIPE_CACHE_REDIS_URL", "needs Flask-Caching (pip install Flask-Caching)"
        ) from exc
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError("STRIPE_CACHE_REDIS_URL", "must be a redis://, rediss:// or unix:// URL")
    cache = Cache(
        config={
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": url,
            # The shop's other cached values never meet the portal's.
            "CACHE_KEY_PREFIX": "example_app.portal:",
        }
    )
    cache.init_app(app)
    return cache


#: The back ends by ``PORTAL_BACKEND`` name.
BACKENDS: dict[str, Callable[[Flask, SQLAlchemy], dict[str, Any]]] = {
    "local": _local,
    "dodo": _dodo,
    "stripe": _stripe,
}


def portal_backend(app: Flask, db: SQLAlchemy) -> dict[str, Any]:
    """``CustomerPortal.init_app`` arguments for the app's ``PORTAL_BACKEND``."""
    name = (_setting(app, "PORTAL_BACKEND", "local") or "local").strip().lower()
    if name not in BACKENDS:
        raise ConfigurationError(
            "PORTAL_BACKEND", f"must be one of {', '.join(sorted(BACKENDS))}, not {name!r}"
        )
    return BACKENDS[name](app, db)
