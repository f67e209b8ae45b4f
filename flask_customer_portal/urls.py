"""Absolute links to the portal's pages: in emails, magic links and
calendar feeds.

A link is the configured ``CUSTOMER_PORTAL_BASE_URL`` followed by the path
the app's URL map builds for the page, so it follows
``CUSTOMER_PORTAL_URL_PREFIX`` and ``CUSTOMER_PORTAL_BLUEPRINT_NAME`` as
``url_for`` does. Nothing of it comes from the request (its Host header,
forwarded headers or script root): a forged header must never steer where a
link in an email points. It needs an app context only, so a command such as
``flask portal renew-due`` makes the same links as a request does, without
``SERVER_NAME``.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

from flask import Flask, current_app

from .state import PortalState

__all__ = ["external_url"]


def external_url(state: PortalState, page: str, /, **values: Any) -> str:
    """The absolute URL of the portal's page ``page`` (its endpoint without
    the blueprint name, e.g. ``"subscription"``) with the rule's
    ``values``; values the rule does not take become the query string.

    >>> external_url(state, "subscription", subscription_id="sub_123")  # doctest: +SKIP
    'https://shop.example.com/portal/subscriptions/sub_123'
    """
    app = cast("Flask", current_app._get_current_object())  # type: ignore[attr-defined]
    endpoint = state.config.endpoint(page)
    app.inject_url_defaults(endpoint, values)
    # Bound to the configured host, never the request's. The adapter gives
    # the path only; the base URL, with any path of its own, goes in front.
    base = urlsplit(state.config.base_url)
    adapter = app.url_map.bind(base.netloc.rpartition("@")[2], url_scheme=base.scheme)
    return state.config.base_url + adapter.build(endpoint, values)
