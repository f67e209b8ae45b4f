"""After a change is saved: tell the merchant (a signal) and the customer
(an email), in that order, in one place.

Emails are rendered at once, in the customer's language, and delivered on
the portal's worker thread inside a request (elsewhere, at once): a slow
or failing mail server never undoes or delays a change that already
stands. A failure is logged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from blinker import Signal
from flask import current_app, has_request_context

from ..emails import render_message
from ..mail import MailDeliveryError
from ..state import PortalState
from ..storage import Customer, Subscription
from ..urls import external_url

__all__ = ["announce", "send_email", "subscription_link"]

logger = logging.getLogger("flask_customer_portal")


def subscription_link(state: PortalState, subscription: Subscription) -> str:
    """The subscription's page, as an absolute link for emails."""
    return external_url(state, "subscription", subscription_id=subscription.id)


def send_email(state: PortalState, name: str, customer: Customer, **context: Any) -> None:
    """Render the email ``name`` for ``customer`` now and deliver it."""
    message = render_message(state, name, to=customer.email, customer=customer, **context)

    def deliver() -> None:
        try:
            state.mailer.send(message)
        except MailDeliveryError as exc:
            logger.error("Could not send the %s email to customer %s: %s", name, customer.id, exc)

    run_after_response(state, deliver)


def run_after_response(state: PortalState, func: Callable[[], None]) -> None:
    """Inside a request, on the worker thread; elsewhere (CLI), now."""
    if has_request_context():
        state.run_in_background(current_app._get_current_object(), func)  # type: ignore[attr-defined]
    else:
        func()


def announce(
    state: PortalState,
    signal: Signal,
    customer: Customer,
    *,
    email: str | None = None,
    email_context: dict[str, Any] | None = None,
    **signal_kwargs: Any,
) -> None:
    """Send ``signal`` (with ``customer`` and ``signal_kwargs``), then the
    email ``email`` (with ``email_context``), once the change is saved."""
    signal.send(current_app._get_current_object(), customer=customer, **signal_kwargs)  # type: ignore[attr-defined]
    if email is not None:
        send_email(state, email, customer, **(email_context or {}))
