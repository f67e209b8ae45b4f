"""A customer's reads from Stripe, reused: within one request always, and
across requests for ``CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS`` where a cache
every process shares is at hand (see ``docs/providers.rst``).

Every entry belongs to one Stripe customer: its key holds the customer's
id and its value came from a request Stripe scoped to that customer. A
customer's entries sit under a *generation*, a random token kept in the
cache beside them; forgetting the customer deletes the token, so every
process moves on to a new one at its next read. A read that began before
the change it missed writes under the old token, which nobody reads again:
a change is never hidden behind a read that raced it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from flask import current_app, g, has_request_context, request

from ...state import EXTENSION_KEY, get_state

T = TypeVar("T")

_PREFIX = "customer_portal.stripe:"
#: Methods whose pages may be served from the cache; a form's POST reads Stripe.
_CACHED_METHODS = frozenset({"GET", "HEAD"})
#: Inside a subscription lock (the money path) every read goes to Stripe.
_fresh_depth: ContextVar[int] = ContextVar("customer_portal_stripe_fresh", default=0)


class ReadCache(Protocol):
    """Where cached reads live: the methods of Flask-Caching's ``Cache``
    (``timeout`` in seconds), so a merchant's ``Cache`` on Redis or
    Memcached can be given as it is. Values are the portal's records
    (picklable dataclasses)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, timeout: int | None = None) -> Any: ...

    def add(self, key: str, value: Any, timeout: int | None = None) -> Any: ...

    def delete(self, key: str) -> Any: ...


class MemoryReadCache:
    """A :class:`ReadCache` in this process's memory, bounded to
    ``max_entries`` (expired entries go first, then the oldest)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}
        self._guard = threading.Lock()

    def _live(self, key: str, now: float) -> tuple[float, Any] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] <= now:
            del self._entries[key]
            return None
        return entry

    def get(self, key: str) -> Any:
        with self._guard:
            entry = self._live(key, time.monotonic())
            return None if entry is None else entry[1]

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        now = time.monotonic()
        with self._guard:
            self._entries.pop(key, None)
            self._entries[key] = (now + (timeout or 300), value)
            if len(self._entries) > self.max_entries:
                self._shrink(now)
        return True

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        with self._guard:
            if self._live(key, time.monotonic()) is not None:
                return False
        return self.set(key, value, timeout)

    def delete(self, key: str) -> bool:
        with self._guard:
            return self._entries.pop(key, None) is not None

    def _shrink(self, now: float) -> None:
        for key in [k for k, (expires, _value) in self._entries.items() if expires <= now]:
            del self._entries[key]
        excess = len(self._entries) - self.max_entries
        if excess > 0:
            # Oldest first (dicts keep insertion order), with some room to spare.
            for key in list(self._entries)[: excess + self.max_entries // 10]:
                del self._entries[key]


class CustomerReads:
    """The Stripe store's reads of one customer, reused.

    Within a request, a read is made once (a write for the customer, or a
    subscription lock, forgets it). Across requests, the pages (GET) of a
    portal with ``CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS`` above 0 reuse it
    from ``shared`` if given, else from this process's memory when the
    portal runs as one process (``CUSTOMER_PORTAL_SINGLE_PROCESS``): with
    several processes and no shared cache, a change made through one
    worker would stay hidden from the others. Outside a request (the CLI,
    a worker) nothing is reused."""

    def __init__(self, shared: ReadCache | None = None) -> None:
        self.shared = shared
        self._memory = MemoryReadCache()
        self._key = f"_customer_portal_stripe_reads_{id(self)}"

    # -- where ---------------------------------------------------------------------

    def _request_memo(self) -> dict[tuple[str, str], Any] | None:
        if not has_request_context():
            return None
        memo: dict[tuple[str, str], Any] | None = g.get(self._key)
        if memo is None:
            memo = {}
            setattr(g, self._key, memo)
        return memo

    def _across_requests(self) -> tuple[ReadCache, int] | None:
        """The cache and its lifetime for this read, or ``None``."""
        if not has_request_context() or request.method not in _CACHED_METHODS:
            return None
        if EXTENSION_KEY not in current_app.extensions:
            return None  # a store used without the portal
        config = get_state().config
        seconds = config.stripe_cache_seconds
        if not seconds:
            return None
        if self.shared is not None:
            return self.shared, seconds
        if config.single_process:
            return self._memory, seconds
        return None

    def active(self) -> bool:
        """Whether reads are reused here (a request outside any lock)."""
        return _fresh_depth.get() == 0 and has_request_context()

    # -- reading -------------------------------------------------------------------

    def _generation(self, cache: ReadCache, customer_id: str, seconds: int) -> str:
        key = f"{_PREFIX}{customer_id}:generation"
        found = cache.get(key)
        if found is None:
            cache.add(key, secrets.token_hex(8), timeout=seconds * 10)
            found = cache.get(key)
        return str(found or "none")

    def read(self, customer_id: str, name: str, fetch: Callable[[], T]) -> T:
        """``fetch()``'s value, reused where it may be (see the class)."""
        if not self.active():
            return fetch()
        memo = self._request_memo()
        if memo is None:
            return fetch()
        if (customer_id, name) in memo:
            return memo[(customer_id, name)]  # type: ignore[no-any-return]
        across = self._across_requests()
        key = None
        if across is not None:
            cache, seconds = across
            generation = memo.get((customer_id, "#generation"))
            if generation is None:
                generation = memo[(customer_id, "#generation")] = self._generation(
                    cache, customer_id, seconds
                )
            key = f"{_PREFIX}{customer_id}:{generation}:{name}"
            found = cache.get(key)
            if found is not None:
                memo[(customer_id, name)] = found[0]
                return found[0]  # type: ignore[no-any-return]
        value = fetch()
        memo[(customer_id, name)] = value
        if across is not None and key is not None and value is not None:
            across[0].set(key, (value,), timeout=across[1])
        return value

    # -- forgetting ----------------------------------------------------------------

    def forget(self, customer_id: str) -> None:
        """Drop every read of the customer: in this request, in this
        process's memory and in the shared cache."""
        memo = self._request_memo()
        if memo is not None:
            for key in [k for k in memo if k[0] == customer_id]:
                del memo[key]
        for cache in (self._memory, self.shared):
            if cache is not None:
                cache.delete(f"{_PREFIX}{customer_id}:generation")

    @contextmanager
    def fresh(self, customer_id: str, held: AbstractContextManager[T]) -> Iterator[T]:
        """``held`` (a subscription lock) with every read inside it made
        to Stripe, and the customer's reads forgotten when it ends (money
        may have moved)."""
        self.forget(customer_id)
        token = _fresh_depth.set(_fresh_depth.get() + 1)
        try:
            with held as value:
                yield value
        finally:
            _fresh_depth.reset(token)
            self.forget(customer_id)
