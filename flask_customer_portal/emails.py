"""Emails the portal writes: each is rendered from its templates in the
customer's language; :mod:`~flask_customer_portal.mail` sends them."""

from __future__ import annotations

from typing import Any

from flask import render_template
from flask_babel import force_locale

from .i18n import select_locale
from .mail import Message
from .state import PortalState
from .storage import Customer
from .templating import template_context

__all__ = ["render_message"]


def render_message(
    state: PortalState,
    name: str,
    *,
    to: str,
    customer: Customer,
    fallback_locale: str | None = None,
    **context: Any,
) -> Message:
    """Render ``customer_portal/email/<name>.{subject.txt,txt,html}`` in the
    customer's language (else ``fallback_locale``, e.g. the language of
    the browser that asked for the mail). A host overrides any of the three by placing a file
    at the same path in its own ``templates/`` folder."""
    locale = select_locale(state.config, customer)
    if fallback_locale and not customer.locale:
        locale = fallback_locale
    with force_locale(locale):
        values = {**template_context(state, customer), "customer": customer, **context}
        subject = render_template(f"customer_portal/email/{name}.subject.txt", **values)
        text = render_template(f"customer_portal/email/{name}.txt", **values)
        html = render_template(f"customer_portal/email/{name}.html", **values)
    return Message(to=to, subject=" ".join(subject.split()), text=text, html=html)
