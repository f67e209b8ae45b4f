"""Rate limits: login and email-change mail per address and per client, and
per-customer limits on adding cards and on exports.

Built on the ``limits`` library that powers Flask-Limiter, used directly so
that the portal's limits apply only to its own forms, never add default
limits or headers to the host's routes, and keep their counters per app.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Request
from limits import RateLimitItem, parse, strategies
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from werkzeug.middleware.proxy_fix import ProxyFix

__all__ = [
    "CustomerLimits",
    "LoginRateLimits",
    "RateLimitUnavailable",
    "client_ip",
    "client_key",
    "open_storage",
    "retry_after",
]

logger = logging.getLogger("flask_customer_portal")

_T = TypeVar("_T")

#: Schemes of the ``limits`` library that reach a Redis server through
#: redis-py's own URL parser, which takes socket timeouts as options.
_REDIS_SCHEMES = frozenset({"redis", "rediss", "redis+unix"})

#: Seconds to wait for Redis before a request is refused. redis-py waits
#: for ever by default: a Redis host that stops answering (rather than
#: refusing connections) would hold every worker until gunicorn kills it.
#: A ``socket_timeout`` or ``socket_connect_timeout`` in the URI wins.
REDIS_TIMEOUT = 2.0


class RateLimitUnavailable(Exception):
    """The rate-limit store (``CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI``)
    could not be reached. What it guards is refused, never let through
    uncounted: the portal answers 503 and sends nothing."""


def open_storage(uri: str) -> Storage:
    """The ``limits`` storage of ``uri``: synchronous, raising
    :class:`limits.errors.StorageError` for whatever its server does wrong,
    and, for Redis, with :data:`REDIS_TIMEOUT` unless the URI sets one."""
    options: dict[str, float | str | bool] = {}
    if urlsplit(uri).scheme.lower() in _REDIS_SCHEMES:
        options = {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
    made = storage_from_string(uri, wrap_exceptions=True, **options)
    if not isinstance(made, Storage):
        raise ValueError("the portal counts synchronously; use a storage URI without async+")
    return made


def storage_uri_problem(uri: str, error: Exception) -> str:
    """What is wrong with ``uri``, from the error that opening it raised,
    without the URI's host or password."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    said = str(error).replace(uri, f"{scheme}://…")
    for secret in (parts.password, parts.username):
        if secret:
            said = said.replace(secret, "…")
    if "prerequisite" in said and scheme.startswith("redis"):
        return f"{scheme}:// needs the redis package: pip install 'flask-customer-portal[redis]'"
    return (
        'must be a storage URI the "limits" library supports, e.g. "redis://localhost:6379/0" '
        f'(or "memory://" in one process): {type(error).__name__}: {said}'
    )


def storage_errors(storage: Storage) -> tuple[type[BaseException], ...]:
    """What ``storage`` raises when its server fails: its client library's
    base error (older ``limits`` releases do not wrap the moving window's
    calls in :class:`~limits.errors.StorageError`) and that wrapper."""
    if isinstance(storage, MemoryStorage):
        return (StorageError,)  # nothing to reach; its ValueError would be a bug of ours
    found = storage.base_exceptions
    return (StorageError, *(found if isinstance(found, tuple) else (found,)))


def _counted(errors: tuple[type[BaseException], ...], count: Callable[[], _T]) -> _T:
    try:
        return count()
    except errors as exc:
        # The cause's type and text name the server, never its password.
        cause = exc.__cause__ if isinstance(exc, StorageError) and exc.__cause__ else exc
        logger.error(
            "Customer portal rate-limit store unreachable (%s: %s); the request was refused. "
            "Check CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI.",
            type(cause).__name__,
            cause,
        )
        raise RateLimitUnavailable(str(cause)) from exc


def _no_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], object]:
    raise AssertionError("never called: the inner app answers nothing")


def _environ_only(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    return ()


@lru_cache(maxsize=8)
def _proxy_fix(trusted_proxies: int) -> ProxyFix:
    # Only X-Forwarded-For: the portal's links come from its base URL, never
    # from the request's scheme or host.
    return ProxyFix(_environ_only, x_for=trusted_proxies, x_proto=0, x_host=0, x_port=0, x_prefix=0)


def client_ip(request: Request, trusted_proxies: int) -> str:
    """The client's address as Werkzeug's ``ProxyFix(x_for=trusted_proxies)``
    would make it: ``X-Forwarded-For`` is believed only for the configured
    number of proxies in front of the app, counted from the right, and
    otherwise the address of the connection.

    ProxyFix's own code runs on a copy of the request's WSGI environ, so
    the host's app and its other extensions see the request as the server
    gave it: the portal changes nothing app-wide. A host that wraps its
    ``wsgi_app`` in ProxyFix itself leaves ``CUSTOMER_PORTAL_TRUSTED_PROXIES``
    at 0 (``request.remote_addr`` is then already the client's), or sets
    it to the same count (the same header gives the same answer).
    """
    if trusted_proxies > 0:
        environ = dict(request.environ)
        _proxy_fix(trusted_proxies)(environ, _no_response)
        address = environ.get("REMOTE_ADDR")
    else:
        address = request.remote_addr
    return str(address or "unknown")[:64]


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
        #: The app's counter store, shared with :class:`CustomerLimits`:
        #: one per app, so two apps in one process never share ``memory://``
        #: counters (a shared store keeps them apart by ``namespace``).
        self.storage: Storage = open_storage(storage_uri)
        self._errors = storage_errors(self.storage)
        self._limiter = strategies.MovingWindowRateLimiter(self.storage)
        self._per_address: RateLimitItem = parse(per_address)
        self._per_client: RateLimitItem = parse(per_client)
        self._per_address_and_client = share_of_address(self._per_address)

    def hit(self, *, email: str, client: str) -> bool:
        """Count one request; ``False`` if it is refused. Raises
        :class:`RateLimitUnavailable` if the store cannot be reached.

        A counter is charged only once every counter before it has let the
        request through, so a request refused for its client costs the
        address nothing, and one refused for the pair costs the address
        nothing either. Each step is a single atomic ``hit`` (a refused hit
        is not recorded), so concurrent requests cannot charge an address
        for requests it refused; at worst a client pays for a request that a
        later counter refused, which hurts only that client.
        """
        address = hashlib.sha256(email.casefold().encode()).hexdigest()
        return _counted(self._errors, lambda: self._hit(address, client_key(client)))

    def _hit(self, address: str, client: str) -> bool:
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
        """Forget this app's counters, and only this app's: a shared store
        may hold other apps' counters too."""
        reset_namespace(self.storage, self._namespace)


def reset_namespace(storage: Storage, namespace: str) -> None:
    """Delete the counters kept under ``namespace`` in ``storage``."""
    if isinstance(storage, MemoryStorage):
        storage.reset()  # the app's own instance
        return
    client = getattr(storage, "storage", None)  # redis-py's client in the Redis storages
    scan_iter = getattr(client, "scan_iter", None)
    if client is None or scan_iter is None:
        raise NotImplementedError(f"cannot reset part of a {type(storage).__name__}")
    # limits names a key "<prefix>:LIMITER/<namespace>/<identifiers>/…".
    keys = list(scan_iter(match=f"*LIMITER/{namespace}/*", count=1000))
    if keys:
        client.delete(*keys)


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

    def __init__(
        self,
        *,
        card_attach: str,
        export: str,
        storage: Storage,
        namespace: str,
        promotion_code: str = "10 per hour",
        invoice_email: str = "5 per hour",
    ) -> None:
        self._namespace = namespace
        self._promotion_code: RateLimitItem = parse(promotion_code)
        self._invoice_email: RateLimitItem = parse(invoice_email)
        self._limiter = strategies.MovingWindowRateLimiter(storage)
        self._errors = storage_errors(storage)
        self._card_attach: RateLimitItem = parse(card_attach)
        self._export: RateLimitItem = parse(export)

    def _hit(self, item: RateLimitItem, *identifiers: str) -> datetime | None:
        return _counted(self._errors, lambda: self._count(item, *identifiers))

    def _count(self, item: RateLimitItem, *identifiers: str) -> datetime | None:
        if self._limiter.hit(item, self._namespace, *identifiers):
            return None
        reset = self._limiter.get_window_stats(item, self._namespace, *identifiers).reset_time
        return datetime.fromtimestamp(math.ceil(reset), tz=timezone.utc)

    def hit_card_attach(self, customer_id: str) -> datetime | None:
        """Count one new card handed to the provider
        (``CUSTOMER_PORTAL_CARD_ATTACH_LIMIT``)."""
        return self._hit(self._card_attach, "card-attach", customer_id)

    def hit_promotion_code(self, customer_id: str) -> datetime | None:
        """Count one promotion code entered, valid or not
        (``CUSTOMER_PORTAL_PROMOTION_CODE_RATE_LIMIT``): codes cannot be
        found by trying them."""
        return self._hit(self._promotion_code, "promotion-code", customer_id)

    def hit_export(self, customer_id: str, export: str) -> datetime | None:
        """Count one download of ``export`` (``"zip"``, ``"csv"`` or
        ``"ics"``; ``CUSTOMER_PORTAL_EXPORT_RATE_LIMIT`` each)."""
        if export not in self.EXPORTS:
            raise ValueError(f"unknown export {export!r}")
        return self._hit(self._export, "export", export, customer_id)

    def hit_invoice_email(self, customer_id: str) -> datetime | None:
        """Count one copy of an invoice emailed to the customer
        (``CUSTOMER_PORTAL_INVOICE_EMAIL_RATE_LIMIT``, across invoices)."""
        return self._hit(self._invoice_email, "invoice-email", customer_id)
