"""Error pages: every error status under the portal's prefix answers with
the portal's own page (``customer_portal/error.html``), in the customer's
language, with a way back; never the framework's bare page.

Two kinds of error reach here:

* raised by a portal page (a foreign id's 404, a missing CSRF token's
  400, a crash's 500): the blueprint's handlers answer. They are
  registered per status as well as for every ``HTTPException``, because
  Flask asks an app's handler for a status before a blueprint's handler
  for a class, and a host's ``@app.errorhandler(404)`` must not answer for
  the portal's own pages;
* raised before any portal page is found (an unknown address under the
  prefix is a 404, ``GET /portal/logout`` a 405): no blueprint is known
  yet, so an app-level handler (:class:`PortalErrorPages`) answers, for
  paths under the prefix only. Every other path gets exactly what the host
  gave it: the handler the host registered (found as Flask would find it
  without the portal's) or, with none, Flask's own page.

A host that registers a handler for a status *after* the portal was
registered replaces the portal's for that status everywhere (Flask keeps
one app-level handler per status): that handler then answers unknown
portal addresses too.

A 5xx page tells nothing of what went wrong (no exception text, no ids):
the log has it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app, make_response, render_template, request, url_for
from flask.typing import ErrorHandlerCallable, ResponseReturnValue
from flask_babel import force_locale
from werkzeug.exceptions import HTTPException, ServiceUnavailable, default_exceptions
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..auth import get_current_customer
from ..errors import ProviderUnavailable
from ..i18n import select_locale
from ..ratelimit import RateLimitUnavailable
from ..state import get_state
from ..storage import Customer
from ._base import blueprint

__all__ = ["ERROR_STATUSES", "PortalErrorPages", "install_error_pages", "render_error_page"]

logger = logging.getLogger("flask_customer_portal")

#: The statuses the page has words of its own for; any other is "Something went wrong".
ERROR_STATUSES = (400, 401, 403, 404, 405, 409, 410, 413, 429, 500, 503)

#: The endpoint an error page outside any portal route is rendered as, so
#: that the layout's relative links (``url_for(".dashboard")``) resolve.
_ERROR_ENDPOINT = "_error_page"

#: Headers of the exception kept on the page (``Allow`` of a 405,
#: ``Retry-After`` of a 429 or 503, ``WWW-Authenticate`` of a 401).
_KEPT_HEADERS = frozenset({"allow", "retry-after", "www-authenticate"})


def _signed_in_customer() -> Customer | None:
    try:
        return get_current_customer()
    except Exception:  # the error may be the database going away: signed out, then
        logger.warning("Customer portal: no customer lookup for an error page", exc_info=True)
        return None


def render_error_page(error: HTTPException) -> Response:
    """The portal's page for ``error``, with its status and its ``Allow``,
    ``Retry-After`` and ``WWW-Authenticate`` headers. The way back is the
    dashboard for a signed-in customer, else the static login page."""
    state = get_state()
    code = error.code or 500
    customer = _signed_in_customer()
    if customer is not None:
        back_url = url_for(".dashboard")
    else:
        back_url = url_for(".login", business_id=state.config.business_id)
    with force_locale(select_locale(state.config, customer)):
        body = render_template(
            "customer_portal/error.html",
            code=code,
            # A server error's details stay in the log: the page says nothing of them.
            error=error if code < 500 else None,
            back_url=back_url,
            signed_in=customer is not None,
            # The company's name for a 503 because it did not answer a read.
            provider=error.provider if isinstance(error, ProviderUnavailable) else None,
        )
    response = make_response(body, code)
    for name, value in error.get_headers():
        if name.lower() in _KEPT_HEADERS:
            response.headers[name] = value
    return response


#: When to ask again after the rate-limit store failed: long enough for a
#: Redis restart, short enough for a customer waiting for a sign-in email.
_UNAVAILABLE_RETRY_AFTER = 60


@blueprint.errorhandler(RateLimitUnavailable)
def _rate_limits_unavailable(error: RateLimitUnavailable) -> Response:
    # Fail closed: what a limit guards (login and email-change mail, new
    # cards, exports) is refused, the same way for every address, so the
    # answer tells nothing about who is a customer. Logged where it was raised.
    return render_error_page(ServiceUnavailable(retry_after=_UNAVAILABLE_RETRY_AFTER))


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return render_error_page(error)


# Per status too: Flask asks the app's handler for a status before the
# blueprint's for a class (see the module's description).
for _code in ERROR_STATUSES:
    blueprint.register_error_handler(_code, _http_error)


@contextmanager
def _as_portal_request() -> Iterator[None]:
    """A request no portal route matched, treated as the portal's while its
    error page renders: the blueprint's templates, context and relative
    links work. The request is left as it was afterwards."""
    if request.url_rule is not None:
        yield
        return
    name = get_state().config.blueprint_name
    request.url_rule = Rule("/", endpoint=f"{name}.{_ERROR_ENDPOINT}")
    try:
        yield
    finally:
        request.url_rule = None


class PortalErrorPages:
    """The app-level handler for one slot of Flask's handler table (a status
    or the ``HTTPException`` class): answers for paths under the portal's
    prefix that no route of the host's took, and hands every other error to
    ``previous`` (the host's handler it replaced in that slot, if any) or
    to the handler Flask would have found without the portal's."""

    def __init__(self, app: Flask, previous: ErrorHandlerCallable | None) -> None:
        self.app = app
        self.previous = previous

    def __repr__(self) -> str:
        return f"PortalErrorPages(previous={self.previous!r})"

    def __call__(self, error: HTTPException) -> ResponseReturnValue | HTTPException:
        if self._is_portals(error):
            try:
                with _as_portal_request():
                    return render_error_page(error)
            except Exception:
                # Never worse than without the portal: Flask's page, and the log.
                logger.exception("Customer portal: could not render the error page for %s", error.code)
                return error
        handler = self._host_handler(error)
        if handler is None:
            return error  # Flask's own page, as if the portal were not there
        return current_app.ensure_sync(handler)(error)  # type: ignore[no-any-return]

    def _is_portals(self, error: HTTPException) -> bool:
        config = get_state().config
        prefix = config.url_prefix
        if not prefix or error.code is None:
            # Mounted at the root, an unknown address is the host's.
            return False
        if request.path != prefix and not request.path.startswith(prefix + "/"):
            return False
        return request.url_rule is None or request.blueprint == config.blueprint_name

    def _host_handler(self, error: HTTPException) -> ErrorHandlerCallable | None:
        """The handler Flask would pick for ``error`` if the portal had
        registered none at the app level: the same search (a status before
        a class, a blueprint before the app), with the host's own handler
        where the portal's wraps one."""
        spec = self.app.error_handler_spec
        for code in (error.code, None) if error.code is not None else (None,):
            for name in (*request.blueprints, None):
                handlers = spec[name].get(code) if name in spec else None
                if not handlers:
                    continue
                for cls in type(error).__mro__:
                    handler = handlers.get(cls)
                    if isinstance(handler, PortalErrorPages):
                        handler = handler.previous
                    if handler is not None:
                        return handler
        return None


def install_error_pages(app: Flask) -> None:
    """Register :class:`PortalErrorPages` for the statuses routing raises
    (404, 405) and for every ``HTTPException``, each wrapping the host's
    handler already in that slot."""
    slots: list[tuple[int | None, type[HTTPException]]] = [
        (404, default_exceptions[404]),
        (405, default_exceptions[405]),
        (None, HTTPException),
    ]
    for code, exc_class in slots:
        previous = app.error_handler_spec.get(None, {}).get(code, {}).get(exc_class)
        app.register_error_handler(code or exc_class, PortalErrorPages(app, previous))
