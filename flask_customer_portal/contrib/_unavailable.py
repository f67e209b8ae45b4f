"""A payment company that does not answer a page's read.

A page (a ``GET`` or ``HEAD`` request) only reads, so when the company
cannot be reached, times out, fails on its side or asks the portal to slow
down, nothing was changed: the customer is told so and asked to try again
(:class:`~flask_customer_portal.errors.ProviderUnavailable`, a 503 page
with ``Retry-After``) instead of the page every crash gets. Reads made for
a form's POST, the money path, the CLI or a worker are left alone: there,
the caller's own handling decides what a failure means.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import has_request_context, request

from ..errors import ProviderUnavailable

__all__ = ["reads_of"]

logger = logging.getLogger("flask_customer_portal")

F = TypeVar("F", bound=Callable[..., Any])

#: The requests whose reads may be answered with "nothing was changed".
_PAGE_METHODS = frozenset({"GET", "HEAD"})


def _on_a_page() -> bool:
    return has_request_context() and request.method in _PAGE_METHODS


def reads_of(
    provider: str,
    unanswered: Callable[[Exception], bool],
    *,
    raise_as: Callable[[str], ProviderUnavailable] = ProviderUnavailable,
    log: bool = True,
) -> Callable[[F], F]:
    """A decorator for a store's read methods: an exception for which
    ``unanswered`` is true, raised on a page, becomes ``raise_as(provider)``
    (chained to it). It is logged once, at warning, by its class only: the
    company's message may repeat what the portal sent (``log=False`` where
    the store has logged it already). Nested reads translate once, since a
    :class:`ProviderUnavailable` is not the company's own error."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def read(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except ProviderUnavailable:
                raise
            except Exception as exc:
                if not unanswered(exc) or not _on_a_page():
                    raise
                if log:
                    logger.warning(
                        "Customer portal: %s did not answer a read for %s (%s)",
                        provider,
                        request.endpoint,
                        type(exc).__name__,
                    )
                raise raise_as(provider) from exc

        return cast(F, read)

    return decorate
