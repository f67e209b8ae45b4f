"""Throttling of staff sign-in: failed passwords per account and per client.

A staff password opens every customer's portal (the staff area makes sign-in
links), so guessing it must not be cheap. Only failures count: after
``STAFF_SIGN_IN_LIMIT_PER_ACCOUNT`` (default ``"5 per 15 minutes"``) failures
for one address, or ``STAFF_SIGN_IN_LIMIT_PER_CLIENT`` (``"20 per 15
minutes"``) from one client address, sign-in is refused with a 429 **before
the password is checked**, so even the right password waits. Unknown
addresses are counted exactly like known ones, so the answer does not tell
who has an account. A successful sign-in clears its account's failures.

The counters live where the portal keeps its own
(``CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI``), so several workers share them
with a shared store, under a namespace of their own.
"""

from __future__ import annotations

import hashlib
import math
import time

from flask import Flask, current_app
from limits import RateLimitItem, parse, storage, strategies

from flask_customer_portal import ConfigurationError

from . import portal

__all__ = ["StaffSignInLimits", "init_staff_limits", "staff_limits"]

_EXTENSION_KEY = "shop_staff_sign_in_limits"
DEFAULTS = {
    "STAFF_SIGN_IN_LIMIT_PER_ACCOUNT": "5 per 15 minutes",
    "STAFF_SIGN_IN_LIMIT_PER_CLIENT": "20 per 15 minutes",
}


class StaffSignInLimits:
    def __init__(self, *, per_account: str, per_client: str, storage_uri: str, namespace: str) -> None:
        self._namespace = namespace
        self._storage = storage.storage_from_string(storage_uri)
        self._limiter = strategies.MovingWindowRateLimiter(self._storage)
        self._per_account: RateLimitItem = parse(per_account)
        self._per_client: RateLimitItem = parse(per_client)

    @staticmethod
    def _account(email: str) -> str:
        return hashlib.sha256(email.strip().casefold().encode()).hexdigest()

    def _keys(self, email: str, client: str) -> list[tuple[RateLimitItem, str, str]]:
        return [
            (self._per_account, "staff-account", self._account(email)),
            (self._per_client, "staff-client", client),
        ]

    def retry_after(self, *, email: str, client: str) -> int | None:
        """Seconds until this address may try again from this client, or
        ``None`` if it may try now. Counts nothing."""
        waits = []
        for item, kind, key in self._keys(email, client):
            if not self._limiter.test(item, self._namespace, kind, key):
                reset_at = self._limiter.get_window_stats(item, self._namespace, kind, key).reset_time
                waits.append(max(1, math.ceil(reset_at - time.time())))
        return max(waits) if waits else None

    def failed(self, *, email: str, client: str) -> None:
        """Count a failed sign-in against the address and the client."""
        for item, kind, key in self._keys(email, client):
            self._limiter.hit(item, self._namespace, kind, key)

    def succeeded(self, *, email: str) -> None:
        """The account's owner signed in: forget its failures."""
        self._limiter.clear(self._per_account, self._namespace, "staff-account", self._account(email))


def init_staff_limits(app: Flask) -> None:
    for key, default in DEFAULTS.items():
        app.config.setdefault(key, default)
        try:
            parse(app.config[key])
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(key, f'must be a rate such as "{default}"') from exc
    config = portal.get_state(app).config
    app.extensions[_EXTENSION_KEY] = StaffSignInLimits(
        per_account=app.config["STAFF_SIGN_IN_LIMIT_PER_ACCOUNT"],
        per_client=app.config["STAFF_SIGN_IN_LIMIT_PER_CLIENT"],
        storage_uri=config.rate_limit_storage_uri,
        namespace=f"shop-staff:{config.mode}:{config.business_id}",
    )


def staff_limits() -> StaffSignInLimits:
    limits: StaffSignInLimits = current_app.extensions[_EXTENSION_KEY]
    return limits
