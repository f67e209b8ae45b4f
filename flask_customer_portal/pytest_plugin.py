"""pytest fixtures for testing an app that mounts the portal.

pytest loads this plugin by itself when the package is installed (the
``pytest11`` entry point ``customer_portal``); ``-p no:customer_portal``
leaves it out. It adds three fixtures and nothing else (no hooks, nothing
autouse):

``portal_client``
    ``app.test_client()``.
``sign_in``
    ``sign_in(customer_id, client=None)`` signs a client (by default
    ``portal_client``) in as the customer, through a fresh magic link, and
    returns it.
``portal_mailer``
    a :class:`~flask_customer_portal.testing.PortalMailer`: the app's portal
    mailer for the test, put back afterwards; ``portal_mailer.sent()`` waits
    for the emails going out in the background.

The contract: your tests define a fixture named ``app`` that returns the
Flask app with :class:`~flask_customer_portal.CustomerPortal` registered and
its storage ready (tables created, the customers the tests sign in as
added). Nothing here pushes an app context for the test or changes the app's
configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from .testing import PortalMailer, _state
from .testing import sign_in as _sign_in

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

__all__ = ["portal_client", "portal_mailer", "sign_in"]

SignIn = Callable[..., "FlaskClient"]


@pytest.fixture
def portal_client(app: Flask) -> FlaskClient:
    """A test client of ``app`` (a fresh browser: no cookies)."""
    return app.test_client()


@pytest.fixture
def sign_in(portal_client: FlaskClient) -> SignIn:
    """``sign_in(customer_id, client=None)``: sign ``client`` (default:
    ``portal_client``) in as ``customer_id`` through a fresh magic link;
    returns the client."""

    def sign_in(customer_id: str, client: FlaskClient | None = None) -> FlaskClient:
        return _sign_in(portal_client if client is None else client, customer_id)

    return sign_in


@pytest.fixture
def portal_mailer(app: Flask) -> Iterator[PortalMailer]:
    """The emails the portal sends during the test, kept in memory: the
    app's portal mailer until the test ends, when the one before is put
    back (after the emails still being sent have gone out)."""
    state = _state(app)
    before = state.mailer
    mailer = PortalMailer(app)
    try:
        yield mailer
    finally:
        state.wait_for_background_tasks()
        state.mailer = before
