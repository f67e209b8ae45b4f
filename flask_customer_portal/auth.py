"""The customer's sign-in: links, the portal session and ``current_customer``.

The portal keeps its own key in the Flask session and its own server-side
session record; it never uses Flask-Login's ``LoginManager``, so a host app's
own signed-in users are never replaced or signed out by the portal.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from urllib.parse import urlsplit

from flask import current_app, g, request, session
from werkzeug.local import LocalProxy

from . import signals
from .clock import utcnow
from .i18n import LANGUAGE_SESSION_KEY
from .ratelimit import client_ip
from .state import PortalState, get_state
from .storage import (
    AuditEvent,
    Customer,
    LinkPurpose,
    LinkRecord,
    LinkUse,
    PortalSessionRecord,
)
from .tokens import LinkProblem, LinkTokenError, TokenPayload, hash_token_id
from .urls import external_url

__all__ = [
    "SESSION_KEY",
    "SESSION_KEY_PREFIX",
    "PortalSession",
    "current_customer",
    "get_current_customer",
]

logger = logging.getLogger("flask_customer_portal")

#: The portal's key in the Flask session for the id of its server-side
#: session record. Every key the portal keeps in the Flask session starts
#: with :data:`SESSION_KEY_PREFIX`; the host's own keys are never touched.
SESSION_KEY = "_customer_portal_sid"

#: The prefix of every key the portal keeps in the Flask session.
SESSION_KEY_PREFIX = "_customer_portal_"

#: Portal keys a sign-in keeps: the language picked in this browser before
#: signing in (a display preference of the browser, not of an account).
_KEYS_KEPT_AT_SIGN_IN = frozenset({LANGUAGE_SESSION_KEY})

#: Activity is written back at most this often (idle timeout bookkeeping).
_TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class PortalSession:
    """A dynamic (magic) link made for one customer."""

    link: str
    """Absolute URL to send to the customer."""
    expires_at: datetime
    """When the link stops working (aware UTC)."""
    customer_id: str
    flow: str | None = None
    """The task the link lands on (see :ref:`deep-links`), or ``None``."""
    subscription_id: str | None = None
    """The subscription that task is about, or ``None``."""


def _state() -> PortalState:
    return get_state()


def _hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def validate_return_url(state: PortalState, return_url: str | None) -> str | None:
    """``return_url`` if it is an absolute http(s) URL on an allowed host.

    Raises :class:`ValueError` otherwise: a return URL is a redirect target,
    and an attacker-chosen one would make the portal an open redirect.
    """
    if return_url is None or return_url == "":
        return None
    if len(return_url) > 2000 or any(ord(c) < 33 for c in return_url):
        raise ValueError("return_url is not a valid URL")
    parts = urlsplit(return_url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError("return_url must be an absolute http(s) URL")
    if state.config.is_live and parts.scheme != "https":
        raise ValueError("return_url must use https in live mode")
    if parts.username or parts.password or parts.netloc.lower() not in state.config.return_url_allowed_hosts:
        raise ValueError(
            f"return_url host {parts.netloc!r} is not in CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS"
        )
    return return_url


def issue_link(
    state: PortalState,
    purpose: LinkPurpose,
    customer: Customer,
    *,
    max_age: int,
    return_url: str | None = None,
    new_email: str | None = None,
    flow: str | None = None,
    subscription_id: str | None = None,
) -> tuple[str, datetime]:
    """Make a one-time token for ``customer`` and remember it server-side."""
    token, record = make_link(
        state,
        purpose,
        customer,
        max_age=max_age,
        return_url=return_url,
        new_email=new_email,
        flow=flow,
        subscription_id=subscription_id,
    )
    state.storage.create_link(record)
    return token, record.expires_at


def make_link(
    state: PortalState,
    purpose: LinkPurpose,
    customer: Customer,
    *,
    max_age: int,
    return_url: str | None = None,
    new_email: str | None = None,
    flow: str | None = None,
    subscription_id: str | None = None,
) -> tuple[str, LinkRecord]:
    """A one-time token for ``customer`` and the record that remembers it,
    not yet stored: the caller writes the record together with the email
    that carries the token (:meth:`~flask_customer_portal.storage.MailOutboxStore.enqueue_mail`)."""
    token, token_id = state.signer.make(
        purpose,
        customer,
        return_url=return_url,
        new_email=new_email,
        flow=flow,
        subscription_id=subscription_id,
    )
    now = utcnow()
    record = LinkRecord(
        token_hash=hash_token_id(token_id),
        purpose=purpose,
        customer_id=customer.id,
        created_at=now,
        expires_at=now + timedelta(seconds=max_age),
    )
    return token, record


def issue_session_link(
    state: PortalState,
    customer: Customer,
    return_url: str | None,
    *,
    flow: str | None = None,
    subscription_id: str | None = None,
    actor: str = "merchant",
    details: Mapping[str, str] | None = None,
    save: Callable[[LinkRecord, PortalSession, AuditEvent], None] | None = None,
) -> PortalSession:
    """Make a magic link for ``customer``, whose return URL and deep-link
    flow the caller has checked
    (:func:`flask_customer_portal.deep_links.create_session_link` checks
    them first). ``actor`` and ``details`` (who made it, e.g. a staff
    member's id) go into the ``session_link.created`` audit event.

    ``save`` writes the link's record and that event instead of the
    store's ``create_link`` and ``record_event`` (an invite writes them
    with its email, in one transaction)."""
    token, record = make_link(
        state,
        LinkPurpose.SESSION_LINK,
        customer,
        max_age=state.config.session_link_max_age,
        return_url=return_url,
        flow=flow,
        subscription_id=subscription_id,
    )
    link = external_url(state, "session_link", token=token)
    portal_session = PortalSession(
        link=link,
        expires_at=record.expires_at,
        customer_id=customer.id,
        flow=flow,
        subscription_id=subscription_id,
    )
    event_details: dict[str, str] = dict(details or {})
    if flow:
        event_details["flow"] = flow
    if subscription_id:
        event_details["subscription_id"] = subscription_id
    event = AuditEvent(
        customer_id=customer.id,
        action="session_link.created",
        occurred_at=utcnow(),
        subject_id=subscription_id,
        actor=actor,
        details=event_details,
    )
    if save is None:
        state.storage.create_link(record)
        state.storage.record_event(event)
    else:
        save(record, portal_session, event)
    signals.session_created.send(current_app._get_current_object(), customer=customer, session=portal_session)  # type: ignore[attr-defined]
    return portal_session


@dataclass(frozen=True, slots=True)
class CheckedLink:
    customer: Customer
    payload: TokenPayload
    token_hash: str


def check_link(state: PortalState, purpose: LinkPurpose, token: str) -> CheckedLink:
    """Everything about a link except using it up. Raises LinkTokenError."""
    max_age = {
        LinkPurpose.SESSION_LINK: state.config.session_link_max_age,
        LinkPurpose.LOGIN_LINK: state.config.login_link_max_age,
        LinkPurpose.EMAIL_CHANGE: state.config.email_change_max_age,
    }[purpose]
    payload = state.signer.read(purpose, token, max_age=max_age)
    token_hash = hash_token_id(payload.token_id)
    record = state.storage.get_link(token_hash)
    if record is None or record.purpose is not purpose or record.customer_id != payload.customer_id:
        raise LinkTokenError(LinkProblem.INVALID)
    if record.used_at is not None:
        raise LinkTokenError(LinkProblem.USED)
    if record.expires_at <= utcnow():
        raise LinkTokenError(LinkProblem.EXPIRED)
    customer = state.storage.get_customer(payload.customer_id)
    if (
        customer is None
        or customer.is_erased
        or customer.auth_version != payload.auth_version
        or state.signer.email_fingerprint(customer.email) != payload.email_fingerprint
    ):
        # The customer changed their email or signed out everywhere since
        # the link was sent: links made before that must not work.
        raise LinkTokenError(LinkProblem.USED)
    return CheckedLink(customer=customer, payload=payload, token_hash=token_hash)


def use_link(state: PortalState, purpose: LinkPurpose, token: str) -> CheckedLink:
    """Check the link and use it up, atomically: of two concurrent calls
    with the same token, at most one returns."""
    checked = check_link(state, purpose, token)
    if not state.storage.consume_link(checked.token_hash, purpose, checked.customer.id, utcnow()):
        raise LinkTokenError(LinkProblem.USED)
    signals.link_used.send(current_app._get_current_object(), customer=checked.customer, purpose=purpose)  # type: ignore[attr-defined]
    return checked


def sign_in(
    state: PortalState,
    customer: Customer,
    *,
    method: str,
    link: CheckedLink | None = None,
    purpose: LinkPurpose | None = None,
) -> None:
    """Start a fresh portal session for ``customer`` in this browser.

    With ``link`` (checked by :func:`check_link` for ``purpose``), the
    sign-in uses it up: of two concurrent sign-ins with the same link, at
    most one succeeds, and the other raises ``LinkTokenError``. On a store
    with ``start_portal_session`` the link, the new session, the end of this
    browser's previous one and the audit event are one transaction."""
    if (link is None) != (purpose is None):
        raise TypeError("sign_in() takes link and purpose together")
    use = LinkUse(link.token_hash, purpose) if link is not None and purpose is not None else None
    storage = state.storage
    previous = session.get(SESSION_KEY)
    replaces = _hash_session_id(previous) if isinstance(previous, str) else None
    now = utcnow()
    session_id = secrets.token_urlsafe(32)
    record = PortalSessionRecord(
        id=_hash_session_id(session_id),
        customer_id=customer.id,
        auth_version=customer.auth_version,
        created_at=now,
        last_seen_at=now,
        user_agent=request.headers.get("User-Agent", "")[:255] or None,
        public_id=secrets.token_urlsafe(16),
        location=_locate(state),
    )
    event = AuditEvent(
        customer_id=customer.id, action="session.signed_in", occurred_at=now, details={"method": method}
    )
    if state.capabilities.start_session_at_once:
        used = storage.start_portal_session(
            record,
            link=use,
            replaces=replaces,
            event=event,
        )
        if not used:
            raise LinkTokenError(LinkProblem.USED)
    else:
        if use is not None and not storage.consume_link(use.token_hash, use.purpose, customer.id, now):
            raise LinkTokenError(LinkProblem.USED)
        if replaces is not None:
            # A new sign-in always gets a new session id; the old one dies.
            storage.revoke_portal_session(replaces, now)
        storage.create_portal_session(record)
        storage.record_event(event)
    _start_clean_session()
    session[SESSION_KEY] = session_id
    g._customer_portal_customer = customer
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if use is not None:
        signals.link_used.send(app, customer=customer, purpose=use.purpose)
    signals.signed_in.send(app, customer=customer, method=method)


def _start_clean_session() -> None:
    """Forget what this browser kept for its previous portal customer and
    rotate the CSRF token, as every sign-in must.

    Every portal key of the Flask session goes (deep-link flow, return URL,
    a queued notice — whatever the last customer left), except the language
    picked in this browser. The CSRF token (Flask-WTF's, shared with the
    host's forms) is replaced: a token seen before the sign-in, by a page or
    a script, is worthless after it. The host's other keys (a Flask-Login
    user, a cart) stay as they are."""
    for key in [key for key in session if key.startswith(SESSION_KEY_PREFIX)]:
        if key not in _KEYS_KEPT_AT_SIGN_IN:
            session.pop(key, None)
    csrf_key = current_app.config.get("WTF_CSRF_FIELD_NAME") or "csrf_token"
    session.pop(csrf_key, None)
    g.pop(csrf_key, None)  # Flask-WTF caches the signed token per request


def sign_out(state: PortalState) -> Customer | None:
    """End this browser's portal session (only the portal's)."""
    customer = get_current_customer()
    session_id = session.pop(SESSION_KEY, None)
    now = utcnow()
    if isinstance(session_id, str):
        state.storage.revoke_portal_session(_hash_session_id(session_id), now)
    g._customer_portal_customer = None
    if customer is not None:
        state.storage.record_event(
            AuditEvent(customer_id=customer.id, action="session.signed_out", occurred_at=now)
        )
        signals.signed_out.send(current_app._get_current_object(), customer=customer)  # type: ignore[attr-defined]
    return customer


#: Longest location string kept from the merchant's session locator.
_MAX_LOCATION_LENGTH = 200


def _locate(state: PortalState) -> str | None:
    """The merchant's locator's answer for this request's client, or
    ``None``. Without a locator the IP address is not looked at at all, and
    with one only its answer is kept, never the address."""
    locator = state.hooks.session_locator
    if locator is None:
        return None
    try:
        place = locator(client_ip(request, state.config.trusted_proxies))
    except Exception as exc:
        # Only the error's type is logged: its message may hold the address.
        # The sign-in goes on without a location.
        logger.error("Customer portal session locator failed (%s); no location kept", type(exc).__name__)
        return None
    if not isinstance(place, str):
        return None
    place = " ".join(place.split())[:_MAX_LOCATION_LENGTH]
    return place or None


def session_limits(state: PortalState) -> tuple[timedelta, timedelta]:
    """``(idle timeout, maximum age)`` of portal sessions."""
    config = state.config
    return timedelta(seconds=config.session_idle_timeout), timedelta(seconds=config.session_max_age)


def session_is_live(
    state: PortalState, record: PortalSessionRecord, customer: Customer, now: datetime
) -> bool:
    """Whether the session still signs its customer in: not revoked, active
    within the idle timeout, younger than the maximum age, and made before
    nothing bumped the customer's ``auth_version`` (email change, sign out
    everywhere). :meth:`AccessStore.list_customer_sessions` applies the same
    rules in the store."""
    idle_timeout, max_age = session_limits(state)
    return (
        record.revoked_at is None
        and now - record.last_seen_at <= idle_timeout
        and now - record.created_at <= max_age
        and customer.auth_version == record.auth_version
    )


def current_session_record_id() -> str | None:
    """The id of this browser's portal session record, if it has one
    (a customer signed in through the host app has none)."""
    session_id = session.get(SESSION_KEY)
    return _hash_session_id(session_id) if isinstance(session_id, str) else None


def sign_out_everywhere(state: PortalState, customer: Customer) -> int:
    """The customer's own "sign out everywhere": end every portal session
    of theirs, this browser's included, and make every link sent to them
    before now stop working. Returns how many sessions were live."""
    now = utcnow()
    ended = state.storage.sign_out_everywhere(
        customer.id,
        now,
        event=AuditEvent(customer_id=customer.id, action="session.signed_out_everywhere", occurred_at=now),
    )
    session.pop(SESSION_KEY, None)
    g._customer_portal_customer = None
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    signals.signed_out_everywhere.send(app, customer=customer, sessions=ended)
    signals.signed_out.send(app, customer=customer)
    return ended


def _load_from_portal_session(state: PortalState) -> Customer | None:
    session_id = session.get(SESSION_KEY)
    if not isinstance(session_id, str):
        return None
    # One query for both: this runs on every signed-in request.
    found = state.storage.get_session_with_customer(_hash_session_id(session_id))
    if found is None:
        session.pop(SESSION_KEY, None)
        return None
    record, customer = found
    now = utcnow()
    if not session_is_live(state, record, customer, now):
        session.pop(SESSION_KEY, None)
        return None
    if now - record.last_seen_at >= _TOUCH_INTERVAL:
        state.storage.touch_portal_session(record.id, now)
    return customer


def _load_from_host_user(state: PortalState) -> Customer | None:
    loader = state.hooks.customer_loader
    if loader is None:
        return None
    customer_id = loader()
    if not customer_id:
        return None
    customer = state.storage.get_customer(customer_id)
    # The host may still have a user for a customer whose data was erased.
    return None if customer is None or customer.is_erased else customer


def get_current_customer() -> Customer | None:
    """The customer signed in to the portal in this request, or ``None``."""
    if "_customer_portal_customer" not in g:
        state = _state()
        # Signed out until the lookup succeeds: an error page rendered after a
        # failed lookup (the database went away) must not try it again.
        g._customer_portal_customer = None
        customer = _load_from_portal_session(state) or _load_from_host_user(state)
        g._customer_portal_customer = customer
    return cast("Customer | None", g._customer_portal_customer)


def other_signed_in_customer(customer: Customer) -> Customer | None:
    """The customer signed in in this browser, if that is someone other than
    ``customer`` (the one a link opens); ``None`` otherwise. A link must not
    quietly replace another customer's session: the page says so and asks."""
    current = get_current_customer()
    return current if current is not None and current.id != customer.id else None


#: The signed-in portal customer (a :class:`~flask_customer_portal.Customer`)
#: or ``None``; usable in templates and in the host's own views.
current_customer: Customer | None = cast("Customer | None", LocalProxy(get_current_customer))
