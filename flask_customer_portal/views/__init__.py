"""The ``portal`` blueprint: one module per area, one thin function per page.

Rules every route follows: lookups are scoped to the signed-in customer (a
foreign id is a 404), changes are POSTs with a CSRF token, a GET never
changes state, and every response carries the portal's security headers.
"""

from __future__ import annotations

from . import (  # noqa: F401  # importing a module registers its routes
    access,
    account_payment_methods,
    back_link,
    billing_details,
    cancel_flow,
    dashboard,
    error_pages,
    exports,
    invoices,
    languages,
    license_activations,
    license_keys,
    payment_methods,
    plans,
    profile,
    sessions,
    subscriptions,
)
from ._base import add_security_headers, blueprint, current_customer_or_401, customer_required, notify

__all__ = [
    "access",
    "add_security_headers",
    "blueprint",
    "current_customer_or_401",
    "customer_required",
    "dashboard",
    "invoices",
    "license_keys",
    "notify",
    "payment_methods",
    "profile",
    "sessions",
    "subscriptions",
]
