"""Stripe's webhooks: an audit event for each ``invoice.*`` and
``customer.subscription.*`` event of a portal customer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import stripe
from flask import Blueprint, abort, current_app, request

from ...state import EXTENSION_KEY, get_state
from ...storage import AuditEvent
from .._webhooks import LEASE, WebhookEvents, repeat_answer
from ..composite import CompositeStorage, CustomerIdMap, SameCustomerIds
from ._convert import as_dict, from_timestamp, object_id
from .store import StripeBillingStore

#: Webhook events :func:`stripe_webhook_blueprint` acts on (``invoice.*`` and ``customer.subscription.*``).
WEBHOOK_EVENTS = ("invoice.", "customer.subscription.")
#: Events after which the customer's reads kept by :class:`StripeBillingStore` are dropped
#: (a refund is a ``charge.refunded``, a credit note a ``credit_note.created``).
_CHANGES_READS = ("invoice.", "customer.", "payment_method.", "charge.", "credit_note.")


def _stripe_customer_of(event: stripe.Event) -> str | None:
    """The customer an event is about: the object's ``customer``, the
    customer itself, or (a card just detached) the one it had."""
    data = as_dict(event.data.object)
    if data.get("object") == "customer":
        return object_id(data.get("id"))
    previous = as_dict(getattr(event.data, "previous_attributes", None))
    return object_id(data.get("customer")) or object_id(previous.get("customer"))


def _forget_reads(event: stripe.Event) -> None:
    """Drop the reads of the event's customer that the portal's Stripe
    store keeps, so that the next page shows what Stripe has now."""
    if EXTENSION_KEY not in current_app.extensions or not str(event.type).startswith(_CHANGES_READS):
        return
    stripe_customer = _stripe_customer_of(event)
    storage = get_state().storage
    billing = storage.billing if isinstance(storage, CompositeStorage) else storage
    if stripe_customer and isinstance(billing, StripeBillingStore):
        billing.forget_customer(stripe_customer)


def stripe_webhook_blueprint(
    secret: str,
    *,
    url: str = "/stripe/webhook",
    customer_ids: CustomerIdMap | None = None,
    on_event: Callable[[stripe.Event], None] | None = None,
    name: str = "customer_portal_stripe",
    lease: timedelta = LEASE,
) -> Blueprint:
    """A blueprint with one route, ``POST <url>``, for Stripe's webhooks.

    The signature (``Stripe-Signature``) is checked with
    :func:`stripe.Webhook.construct_event` and ``secret`` (``whsec_…``); a
    payload that fails is answered 400 and ignored. For ``invoice.*`` and
    ``customer.subscription.*`` events of a portal customer, an audit
    event ``stripe.<type>`` is appended to the portal's log (the portal reads
    Stripe on every page, so there is no copy to bring up to date), then
    ``on_event(event)`` is called — e.g. to clear a cache of the merchant's.
    Other events are acknowledged and ignored.

    Every ``invoice.*``, ``customer.*`` and ``payment_method.*`` event
    (signature checked) first drops the reads of the event's customer that
    the portal's :class:`StripeBillingStore` keeps
    (:meth:`StripeBillingStore.forget_customer`), so a change made at
    Stripe shows on the next page.

    Stripe retries an event until it gets a 2xx and may deliver it more
    than once: an event whose ``evt_…`` id was handled already is answered
    204 and does nothing else; one that another delivery is handling right
    now is answered 409, so that Stripe delivers it again later. With a
    store that has
    :meth:`~flask_customer_portal.storage.AccessStore.claim_webhook_event`
    every worker and restart agrees on that, and a claim left unfinished
    for ``lease`` (5 minutes unless given; its worker died) is taken over
    by the next delivery;
    otherwise each process remembers the ids it handled. If handling
    raises, the answer is an error and Stripe's next delivery of the event
    is handled.
    """
    ids = customer_ids or SameCustomerIds()
    blueprint = Blueprint(name, __name__)
    events = WebhookEvents("stripe", lease=lease)

    @blueprint.post(url)
    def stripe_webhook() -> tuple[str, int]:
        payload = request.get_data()
        signature = request.headers.get("Stripe-Signature", "")
        try:
            event = stripe.Webhook.construct_event(payload, signature, secret)
        except (ValueError, stripe.SignatureVerificationError):
            current_app.logger.warning("Refused a Stripe webhook with a bad signature")
            abort(400)
        # Before anything else, and for repeats too: dropping reads is harmless.
        _forget_reads(event)
        if not str(event.type).startswith(WEBHOOK_EVENTS):
            return "", 204
        # An app may mount the blueprint without the portal (events without
        # a portal customer need none): repeats are then remembered here.
        storage = get_state().storage if EXTENSION_KEY in current_app.extensions else None
        with events.handling(storage, str(event.id)) as claim:
            answer = repeat_answer(claim)
            if answer is not None:
                return answer
            data = as_dict(event.data.object)
            stripe_customer = object_id(data.get("customer"))
            customer_id = ids.to_portal(stripe_customer) if stripe_customer else None
            if customer_id is not None and get_state().storage.get_customer(customer_id) is not None:
                get_state().storage.record_event(
                    AuditEvent(
                        customer_id=customer_id,
                        action=f"stripe.{event.type}",
                        occurred_at=from_timestamp(event.created) or datetime.now(timezone.utc),
                        subject_id=object_id(data.get("id")),
                        provider_reference=str(event.id),
                        actor="system",
                    )
                )
            if on_event is not None:
                on_event(event)
        return "", 204

    return blueprint
