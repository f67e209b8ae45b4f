"""Helpers for testing an app that mounts the portal.

``MemoryMailer`` keeps sent messages in a list; ``PortalMailer`` is one
installed on an app's portal, whose :meth:`~PortalMailer.sent` waits for the
emails still going out in the background; ``TestPaymentProvider``
(re-exported) moves no money; ``csrf_token_from`` reads the CSRF token out of
a rendered portal page so a test client can submit its forms; ``sign_in``
signs a test client in as a customer.

With pytest, the same come as fixtures (``portal_client``, ``sign_in``,
``portal_mailer``) from :mod:`flask_customer_portal.pytest_plugin`, which
pytest loads by itself. This module does not need pytest.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .mail import MemoryMailer, Message
from .payments import TEST_CARDS, TestPaymentProvider

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from .extension import CustomerPortal
    from .state import PortalState

__all__ = [
    "TEST_CARDS",
    "MemoryMailer",
    "PortalMailer",
    "TestPaymentProvider",
    "csrf_token_from",
    "sign_in",
]

_CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def _portal(app: Flask) -> CustomerPortal:
    """The ``CustomerPortal`` in ``app.extensions["customer_portal"]`` (this
    module reaches the portal only as a host app would)."""
    portal: CustomerPortal | None = app.extensions.get("customer_portal")
    if portal is None:
        raise RuntimeError(
            "the customer portal is not registered on this app: call CustomerPortal(app) first"
        )
    return portal


def _state(app: Flask) -> PortalState:
    """The portal's state for ``app``."""
    return _portal(app).get_state(app)


class PortalMailer(MemoryMailer):
    """A :class:`MemoryMailer` that is ``app``'s portal mailer from now on.

    The portal sends its emails on a background thread, after the response;
    :meth:`sent` waits for that work first, so a test reads every email its
    requests caused::

        mailer = PortalMailer(app)
        client.post("/portal/login/biz_acme", data=...)
        (message,) = mailer.sent()
    """

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.app = app
        _state(app).mailer = self

    def sent(self, timeout: float = 10.0) -> list[Message]:
        """The messages sent so far, once the portal's background work is done."""
        _state(self.app).wait_for_background_tasks(timeout)
        with self._lock:
            return list(self.outbox)


def csrf_token_from(html: str) -> str:
    """The first CSRF token in a rendered page."""
    match = _CSRF_RE.search(html)
    if match is None:
        raise AssertionError("no csrf_token field in the page")
    return match.group(1) or match.group(2)


def sign_in(client: FlaskClient, customer_id: str) -> FlaskClient:
    """Sign ``client`` (a test client of the app) in as ``customer_id``,
    as a customer would: through a fresh magic link
    (:meth:`~flask_customer_portal.CustomerPortal.create_session`), its
    "Open my portal" page, then its button. Returns the client.

    Raises :class:`~flask_customer_portal.CustomerNotFound` for an unknown
    customer and :class:`AssertionError` if the portal does not sign the
    client in.
    """
    app = client.application
    with app.app_context():
        link = _portal(app).create_session(customer_id).link
    parts = urlsplit(link)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    page = client.get(path)
    if page.status_code != 200:
        raise AssertionError(f"the magic link of {customer_id} answered {page.status_code}, not 200")
    response = client.post(path, data={"csrf_token": csrf_token_from(page.text)})
    if response.status_code != 303:
        raise AssertionError(f"signing {customer_id} in answered {response.status_code}, not 303")
    return client
