"""The ``portal`` blueprint: one module per area, one thin function per page.

Rules every route follows: lookups are scoped to the signed-in customer (a
foreign id is a 404), changes are POSTs with a CSRF token, a GET never
changes state, and every response carries the portal's security headers.
"""

from __future__ import annotations

from . import access, dashboard, invoices, license_keys, payment_methods, profile, subscriptions
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
    "subscriptions",
]
