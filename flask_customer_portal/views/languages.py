"""The language picker: every portal page has it (in ``layout.html``).

A signed-in customer's choice is saved on the customer
(:meth:`~flask_customer_portal.storage.CustomerStore.set_locale`), so it
follows them to other browsers and into their emails, and wins over the
browser's ``Accept-Language``. Before signing in, the choice lasts for the
visit (the portal's own key in the Flask session).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import abort, current_app, redirect, render_template, request, session, url_for
from flask_babel import get_locale
from werkzeug.exceptions import HTTPException

from .. import signals
from ..auth import get_current_customer
from ..clock import utcnow
from ..forms import ConfirmForm
from ..i18n import LANGUAGE_SESSION_KEY, language_name, match_language, text_direction
from ..state import get_state
from ..storage import AuditEvent
from ._base import blueprint

__all__ = ["safe_portal_path", "set_language"]

#: Longer ``next`` values are nobody's page.
_MAX_NEXT_LENGTH = 2048


def safe_portal_path(value: str | None) -> str | None:
    """``value`` if it is the path (and query) of a portal page a GET can
    open, as the language form sends it; ``None`` otherwise, so that the
    form can never send anyone to another site (no open redirect)."""
    if not value or len(value) > _MAX_NEXT_LENGTH or not value.isprintable() or "\\" in value:
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return None
    try:
        endpoint, _ = adapter.match(parts.path, method="GET")
    except HTTPException:  # not found, not a GET page, or a redirect
        return None
    own = get_state().config.endpoint("")
    if not isinstance(endpoint, str) or not endpoint.startswith(own) or endpoint == f"{own}static":
        return None
    return request.script_root + parts.path + (f"?{parts.query}" if parts.query else "")


def _fallback_page() -> str:
    if get_current_customer() is not None:
        return url_for(".dashboard")
    return url_for(".login", business_id=get_state().config.business_id)


@blueprint.route("/language", methods=["POST"])
def set_language() -> Any:
    """Switch the portal's language, then go back to the page the picker was on."""
    state = get_state()
    if not ConfirmForm().validate():
        abort(400)
    code = request.form.get("language", "")
    if code not in state.config.languages:
        return render_template("customer_portal/language_unavailable.html"), 422
    customer = get_current_customer()
    session[LANGUAGE_SESSION_KEY] = code
    if customer is not None and customer.locale != code:
        now = utcnow()
        saved = state.storage.set_locale(
            customer.id,
            code,
            event=AuditEvent(
                customer_id=customer.id,
                action="customer.language_changed",
                occurred_at=now,
                details={"locale": code, "previous": customer.locale or ""},
            ),
        )
        if saved is None:
            abort(404)
        signals.language_changed.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            customer=saved,
            locale=code,
            previous=customer.locale,
        )
    return redirect(safe_portal_path(request.form.get("next")) or _fallback_page(), code=303)


@blueprint.context_processor
def _language_context() -> dict[str, Any]:
    """What the layout needs for ``<html lang dir>`` and the picker."""
    config = get_state().config
    current = str(get_locale() or config.default_locale)
    languages = config.languages
    return {
        "portal_languages": [(code, language_name(code)) for code in languages] if len(languages) > 1 else [],
        "portal_language": match_language(current, languages) or current,
        "portal_text_direction": text_direction(current),
        "portal_language_next": request.full_path.rstrip("?") if request.method == "GET" else "",
    }
