"""Deep links in the browser: where a flow lands, and the way back.

Opening a deep link (:func:`start_flow`) remembers the link's flow in the
portal's own session key and sends the customer to the flow's page. The
view that completes the task calls :func:`finish_flow`; if the task is the
one the link was made for, the customer goes back to the merchant's
``return_url`` (checked again against the allowed hosts) instead of the
portal's own next page::

    done = finish_flow("payment_method_update", subscription.id)
    if done is not None:
        return done
"""

from __future__ import annotations

from typing import Any

from flask import redirect, request, session, url_for
from werkzeug.wrappers import Response

from ..auth import validate_return_url
from ..deep_links import PLAN_CHANGE_ENDPOINT, Flow, parse_flow
from ..state import get_state
from ..tokens import TokenPayload
from ._base import _NOTICE_KEY, NEXT_PAGE_KEY, blueprint, local_endpoint

__all__ = [
    "FLOW_KEY",
    "RETURN_URL_KEY",
    "asked_for_page",
    "finish_flow",
    "forget_flow",
    "link_return_url",
    "start_flow",
]

#: The deep-link flow of this browser's portal session: ``{"flow", "subscription_id"}``.
FLOW_KEY = "_customer_portal_flow"
#: The ``return_url`` of the link that signed this browser in.
RETURN_URL_KEY = "_customer_portal_return_url"

#: The page that starts cancelling.
CANCEL_FLOW_ENDPOINT = "cancel_flow"


def _landing_url(flow: Flow, subscription_id: str | None) -> str:
    if flow is Flow.INVOICES or subscription_id is None:
        return url_for(".invoices") if flow is Flow.INVOICES else url_for(".dashboard")
    if flow is Flow.PAYMENT_METHOD_UPDATE:
        return url_for(".payment_method", subscription_id=subscription_id)
    if flow is Flow.CANCEL:
        return url_for(f".{CANCEL_FLOW_ENDPOINT}", subscription_id=subscription_id)
    return url_for(f".{PLAN_CHANGE_ENDPOINT}", subscription_id=subscription_id)


def start_flow(payload: TokenPayload, asked_for: str | None = None) -> str:
    """Remember the signed link's return URL and flow in this browser's
    session; the URL to send the customer to now: the flow's page, else
    ``asked_for`` (from :func:`asked_for_page`, read before the sign-in
    cleared the session), else the overview."""
    forget_flow()
    session.pop(NEXT_PAGE_KEY, None)
    if payload.return_url:
        session[RETURN_URL_KEY] = payload.return_url
    flow = parse_flow(payload.flow)
    if flow is None or (flow.needs_subscription and not payload.subscription_id):
        return asked_for or url_for(".dashboard")
    session[FLOW_KEY] = {"flow": flow.value, "subscription_id": payload.subscription_id}
    return _landing_url(flow, payload.subscription_id)


def asked_for_page() -> str | None:
    """The portal page this browser asked for while signed out: only a path
    of the portal's own (never another site's, never ``//host``).

    Read, not taken: a link that fails to sign in (used up by a second
    press, expired) leaves it for the next link; the sign-in that works
    forgets it (:func:`start_flow`), so it is opened once."""
    path = session.get(NEXT_PAGE_KEY)
    home = url_for(".dashboard")
    if not isinstance(path, str) or not path.startswith(home) or path.startswith("//") or "\\" in path:
        return None
    return path


def forget_flow() -> None:
    """Drop the link's flow and return URL (sign-out, a new sign-in)."""
    session.pop(FLOW_KEY, None)
    session.pop(RETURN_URL_KEY, None)


def _active_flow() -> tuple[Flow, str | None] | None:
    value = session.get(FLOW_KEY)
    if not isinstance(value, dict):
        return None
    flow = parse_flow(value.get("flow"))
    subscription_id = value.get("subscription_id")
    if flow is None or not (subscription_id is None or isinstance(subscription_id, str)):
        return None
    return flow, subscription_id


def link_return_url() -> str | None:
    """The ``return_url`` of the link that signed this browser in, if it is
    still on an allowed host."""
    url = session.get(RETURN_URL_KEY)
    if not isinstance(url, str):
        return None
    try:
        # Checked again: the allowed hosts may have changed since the link was made.
        return validate_return_url(get_state(), url)
    except ValueError:
        return None


def finish_flow(flow_name: str, subscription_id: str | None = None) -> Response | None:
    """Call where the task ``flow_name`` (for ``subscription_id``) is done.

    If this browser came in through a deep link for that task, the flow
    ends here, and with a ``return_url`` the answer is the redirect back
    to the merchant. ``None`` otherwise: the view answers as it always does.
    """
    active = _active_flow()
    if active is None:
        return None
    flow, flow_subscription_id = active
    if flow.value != flow_name or (
        flow_subscription_id is not None and flow_subscription_id != subscription_id
    ):
        return None
    session.pop(FLOW_KEY, None)
    url = link_return_url()
    if url is None:
        return None
    # The notice the view queued would show on the customer's next portal
    # visit, out of context: the merchant's page takes over from here.
    session.pop(_NOTICE_KEY, None)
    return redirect(url, code=303)


def _on_landing_page(flow: Flow, subscription_id: str | None) -> bool:
    endpoint = local_endpoint() or ""
    if flow is Flow.INVOICES:
        return endpoint in ("invoices", "invoice")
    if (request.view_args or {}).get("subscription_id") != subscription_id:
        return False
    if flow is Flow.PAYMENT_METHOD_UPDATE:
        return endpoint == "payment_method"
    if flow is Flow.CANCEL:
        return endpoint in (CANCEL_FLOW_ENDPOINT, "subscription", "cancel_subscription")
    return endpoint in (PLAN_CHANGE_ENDPOINT, "subscription")


@blueprint.context_processor
def _flow_context() -> dict[str, Any]:
    """``portal_flow_return_url``: on the pages of a deep link's task, the
    link back to the merchant (the layout shows it above the content)."""
    active = _active_flow()
    url = None
    if active is not None and _on_landing_page(*active):
        url = link_return_url()
    return {"portal_flow_return_url": url}
