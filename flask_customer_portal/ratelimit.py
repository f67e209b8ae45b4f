"""Rate limits: login and email-change mail per address and per client, and
per-customer limits on adding cards and on exports.

Built on the ``limits`` library that powers Flask-Limiter, used directly so
that the portal's limits apply only to its own forms, never add default
limits or headers to the host's routes, and keep their counters per app.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from datetime import datetime, timezone

from flask import Request
from limits import RateLimitItem, parse, strategies
from limits.storage import Storage, storage_from_string

__all__ = ["CustomerLimits", "LoginRateLimits", "client_ip", "client_key", "retry_after"]


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


def retry_after(retry_at: datetime, now: datetime) -> dict[str, str]:
    """The ``Retry-After`` header of a 429 answer: whole seconds, at least 1."""
    return {"Retry-After": str(max(1, math.ceil((retry_at - now).total_seconds())))}


def client_key(client: str) -> str:
    """The client as the limits count it: an IPv4 address as it is, an IPv6
    address by its ``/64`` network (one subscriber's line gets a whole
    ``/64``, so counting single IPv6 addresses would give one client
    billions of allowances), an IPv4-mapped IPv6 address as its IPv4 one."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def share_of_address(per_address: RateLimitItem) -> RateLimitItem:
    """What one client may use of an address's allowance: half of it,
    rounded up, in the same window (3 of ``"5 per hour"``). Below an
    allowance of 2 no share is smaller than the whole."""
    amount = max(1, math.ceil(per_address.amount / 2))
    return type(per_address)(amount, per_address.multiples, per_address.namespace)


class LoginRateLimits:
    """How many login (and email-change) emails are sent, per address and
    per client.

    Three counters, each in a moving window: the client's, the address's,
    and the pair's (this address from this client), the last capped at
    :func:`share_of_address` so that one client can never use up an
    address's allowance and lock its owner out.
    """

    def __init__(self, *, per_address: str, per_client: str, storage_uri: str, namespace: str) -> None:
        #: Keeps counters of different businesses apart in a shared store
        #: (one Redis for several apps).
        self._namespace = namespace
        #: The app's counter store, shared with :class:`CustomerLimits`.
        made = storage_from_string(storage_uri)
        if not isinstance(made, Storage):
            raise ValueError("the portal counts synchronously; use a storage URI without async+")
        self.storage: Storage = made
        self._limiter = strategies.MovingWindowRateLimiter(self.storage)
        self._per_address: RateLimitItem = parse(per_address)
        self._per_client: RateLimitItem = parse(per_client)
        self._per_address_and_client = share_of_address(self._per_address)

    def hit(self, *, email: str, client: str) -> bool:
        """Count one request; ``False`` if it is refused.

        A counter is charged only once every counter before it has let the
        request through, so a request refused for its client costs the
        address nothing, and one refused for the pair costs the address
        nothing either. Each step is a single atomic ``hit`` (a refused hit
        is not recorded), so concurrent requests cannot charge an address
        for requests it refused; at worst a client pays for a request that a
        later counter refused, which hurts only that client.
        """
        address = hashlib.sha256(email.casefold().encode()).hexdigest()
        client = client_key(client)
        limiter = self._limiter
        if not limiter.hit(self._per_client, self._namespace, "login-client", client):
            return False
        # Already used up by others: refuse without charging this pair.
        if not limiter.test(self._per_address, self._namespace, "login-address", address):
            return False
        if not limiter.hit(
            self._per_address_and_client, self._namespace, "login-address-client", address, client
        ):
            return False
        return limiter.hit(self._per_address, self._namespace, "login-address", address)

    def reset(self) -> None:
        self.storage.reset()


class CustomerLimits:
    """Per-customer limits on what costs the merchant: adding a card (a
    verification call to the payment provider each time, the tool of card
    testers) and exports (a ZIP renders every invoice's PDF).

    Counted in the same store as :class:`LoginRateLimits`, keyed by the
    customer's id, in a moving window. Each ``hit_*`` method counts one
    attempt and answers ``None`` if it is allowed, or when the next one will
    be (an aware UTC time) if it is refused; a refused attempt is not
    counted.
    """

    #: The exports, each counted on its own.
    EXPORTS = frozenset({"zip", "csv", "ics"})

    def __init__(self, *, card_attach: str, export: str, storage: Storage, namespace: str) -> None:
        self._namespace = namespace
        self._limiter = strategies.MovingWindowRateLimiter(storage)
        self._card_attach: RateLimitItem = parse(card_attach)
        self._export: RateLimitItem = parse(export)

    def _hit(self, item: RateLimitItem, *identifiers: str) -> datetime | None:
        if self._limiter.hit(item, self._namespace, *identifiers):
            return None
        reset = self._limiter.get_window_stats(item, self._namespace, *identifiers).reset_time
        return datetime.fromtimestamp(math.ceil(reset), tz=timezone.utc)

    def hit_card_attach(self, customer_id: str) -> datetime | None:
        """Count one new card handed to the provider
        (``CUSTOMER_PORTAL_CARD_ATTACH_LIMIT``)."""
        return self._hit(self._card_attach, "card-attach", customer_id)

    def hit_export(self, customer_id: str, export: str) -> datetime | None:
        """Count one download of ``export`` (``"zip"``, ``"csv"`` or
        ``"ics"``; ``CUSTOMER_PORTAL_EXPORT_RATE_LIMIT`` each)."""
        if export not in self.EXPORTS:
            raise ValueError(f"unknown export {export!r}")
        return self._hit(self._export, "export", export, customer_id)
