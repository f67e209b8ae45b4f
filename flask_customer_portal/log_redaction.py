"""Link tokens kept out of logs.

The token of a link is in its URL path (``/portal/session/<token>``,
``/portal/login/<business id>/<token>``, ``/portal/profile/email/<token>``),
and servers log request paths. A token in a log works for whoever reads the
log until the customer uses it or it expires. :class:`LinkTokenFilter`
rewrites any log record whose message holds such a path, replacing the
token with ``[redacted]``; :func:`install_log_redaction` (called by
``init_app``) puts one filter on the portal's own logger and, unless
``CUSTOMER_PORTAL_REDACT_ACCESS_LOGS`` is false, on the loggers that log the
portal's requests: Werkzeug's (the development server's access log),
gunicorn's access log and the app's own logger (Flask's "Exception on
<path>" lines).

For an access log the portal cannot reach (a proxy, a gunicorn configured
without the app), :func:`redact_link_tokens` is the same rule as a function;
see :ref:`access-logs`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from threading import Lock

from flask import Flask

__all__ = [
    "REDACTED",
    "LinkTokenFilter",
    "install_log_redaction",
    "link_token_filter",
    "redact_link_tokens",
]

#: What a token is replaced with.
REDACTED = "[redacted]"

#: The portal's own logger (its modules log here; the log mail transport's
#: ``flask_customer_portal.mail`` prints whole emails on purpose and is left
#: alone — live mode refuses it).
PORTAL_LOGGER = "flask_customer_portal"

#: Loggers of the servers that log the portal's requests.
ACCESS_LOGGERS = ("werkzeug", "gunicorn.access")

#: The routes whose last path segment is a token, after the portal's prefix.
_LINK_ROUTES = r"(?:/session/|/profile/email/|/login/[^/\s?#\"'<>]+/)"
#: The token: the rest of the path segment.
_LINK_SEGMENT = r"[^/\s?#\"'<>&]+"


@lru_cache(maxsize=32)
def _compile(prefixes: frozenset[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(prefix) for prefix in sorted(prefixes, key=len, reverse=True))
    return re.compile(f"(?P<head>(?:{alternatives}){_LINK_ROUTES}){_LINK_SEGMENT}")


def _pattern(prefixes: Iterable[str]) -> re.Pattern[str]:
    return _compile(frozenset(prefixes))


def redact_link_tokens(text: str, prefixes: Iterable[str] | None = None) -> str:
    """``text`` with the token of every portal link path replaced by
    :data:`REDACTED`. ``prefixes`` are the portal's URL prefixes; by default
    ``"/portal"`` and the prefix of every portal app set up in this process.
    A path anywhere in the text counts: a request line, a full URL in a
    ``Referer``."""
    if prefixes is None:
        prefixes = link_token_filter.prefixes | {"/portal"}
    return _pattern(prefixes).sub(rf"\g<head>{REDACTED}", text)


class LinkTokenFilter(logging.Filter):
    """A logging filter that takes link tokens out of log records.

    It never drops a record: a record whose message holds a link path is
    rewritten (its message formatted and redacted, its arguments dropped),
    any other record passes untouched. One filter serves every portal app
    of the process: each adds its URL prefix with :meth:`add_prefix`.
    """

    def __init__(self, prefixes: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = Lock()
        self._prefixes: frozenset[str] = frozenset(prefixes)
        self._compiled: re.Pattern[str] | None = _pattern(self._prefixes) if self._prefixes else None

    @property
    def prefixes(self) -> frozenset[str]:
        return self._prefixes

    def add_prefix(self, prefix: str) -> None:
        """Redact the links of a portal mounted at ``prefix`` too."""
        with self._lock:
            if prefix in self._prefixes:
                return
            self._prefixes = self._prefixes | {prefix}
            self._compiled = _pattern(self._prefixes)

    def redact(self, text: str) -> str:
        compiled = self._compiled
        if compiled is None:
            return text
        return compiled.sub(rf"\g<head>{REDACTED}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted is the handler's problem
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


#: The one filter of this process, shared by every portal app in it.
link_token_filter = LinkTokenFilter()


def _add_filter(logger: logging.Logger) -> None:
    if link_token_filter not in logger.filters:
        logger.addFilter(link_token_filter)


def install_log_redaction(app: Flask, url_prefix: str, *, access_logs: bool) -> None:
    """Redact the tokens of the portal mounted at ``url_prefix``: in the
    portal's own logger always, and with ``access_logs`` in Werkzeug's,
    gunicorn's access logger and ``app.logger``. Idempotent: a logger gets
    the filter once, however many apps install it."""
    link_token_filter.add_prefix(url_prefix)
    _add_filter(logging.getLogger(PORTAL_LOGGER))
    if access_logs:
        for name in ACCESS_LOGGERS:
            _add_filter(logging.getLogger(name))
        _add_filter(app.logger)
