"""Rate limits on login-email requests, per address and per client.

Built on the ``limits`` library that powers Flask-Limiter, used directly so
that the portal's limits apply only to its own form, never add default limits
or headers to the host's routes, and keep their counters per app.
"""

from __future__ import annotations

import hashlib

from flask import Request
from limits import RateLimitItem, parse, storage, strategies

__all__ = ["LoginRateLimits", "client_ip"]


def client_ip(request: Request, trusted_proxies: int) -> str:
    """The client's address: ``X-Forwarded-For`` is believed only for the
    configured number of proxies in front of the app, counted from the right
    (the same rule as Werkzeug's ``ProxyFix``)."""
    if trusted_proxies > 0:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= trusted_proxies:
            return forwarded[-trusted_proxies][:64]
    return (request.remote_addr or "unknown")[:64]


class LoginRateLimits:
    def __init__(self, *, per_address: str, per_client: str, storage_uri: str, namespace: str) -> None:
        #: Keeps counters of different businesses apart in a shared store
        #: (one Redis for several apps).
        self._namespace = namespace
        self._storage = storage.storage_from_string(storage_uri)
        self._limiter = strategies.MovingWindowRateLimiter(self._storage)
        self._per_address: RateLimitItem = parse(per_address)
        self._per_client: RateLimitItem = parse(per_client)

    def hit(self, *, email: str, client: str) -> bool:
        """Count one request; ``False`` once either limit is exceeded."""
        address_key = hashlib.sha256(email.casefold().encode()).hexdigest()
        client_ok = self._limiter.hit(self._per_client, self._namespace, "login-client", client)
        address_ok = self._limiter.hit(self._per_address, self._namespace, "login-address", address_key)
        return client_ok and address_ok

    def reset(self) -> None:
        self._storage.reset()
