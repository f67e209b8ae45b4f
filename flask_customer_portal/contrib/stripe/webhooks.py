"""Stripe's webhooks: an audit event for each ``invoice.*`` and
``customer.subscription.*`` event of a portal customer, and the receipt of
an invoice Stripe was paid for itself (``invoice.paid``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import stripe
from flask import Blueprint, abort, current_app, request

from ...billing.receipts import send_provider_receipt
from ...outbox import MailBatch
from ...records import ChargeAttemptStatus
from ...state import EXTENSION_KEY, PortalState, get_state
from ...storage import AuditEvent, Customer
from .._webhooks import LEASE, DeliverLater, WebhookEvents, repeat_answer
from ..composite import CompositeStorage, CustomerIdMap, SameCustomerIds
from ._attempts import attempts_in
from ._convert import as_dict, from_timestamp, object_id
from .store import StripeBillingStore

logger = logging.getLogger("flask_customer_portal")

#: The event after which a paid invoice gets its receipt: Stripe sends it
#: for every invoice paid, its own renewals and retries included (and
#: ``invoice.payment_succeeded`` as well, which gets none: one receipt a payment).
PAID_EVENT = "invoice.paid"
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


def _portal_attempt(invoice: Mapping[str, Any]) -> tuple[ChargeAttemptStatus, datetime | None] | None:
    """The status and start of the portal's last attempt to charge the
    invoice (kept in its metadata), or ``None`` if the portal never tried."""
    try:
        attempts = attempts_in(invoice, "")
    except (ValueError, KeyError, TypeError):
        return None
    if not attempts:
        return None
    return attempts[-1].status, attempts[-1].created_at


def _receipt_for_paid_invoice(
    state: PortalState, event: stripe.Event, customer: Customer | None, lease: timedelta, mail: MailBatch
) -> None:
    """The receipt of an invoice Stripe says is paid, unless the portal took
    that payment itself (its receipt went with it). While the portal's own
    attempt is under way the event waits (:class:`DeliverLater`)."""
    data = as_dict(event.data.object)
    invoice_id = object_id(data.get("id"))
    if invoice_id is None:
        return
    if customer is None:
        logger.info("Stripe event %s: invoice %s is of no portal customer; no receipt", event.id, invoice_id)
        return
    storage = state.storage
    billing = storage.billing if isinstance(storage, CompositeStorage) else storage
    stripe_customer = object_id(data.get("customer"))
    if isinstance(billing, StripeBillingStore) and stripe_customer is not None:
        # Fresh, not the event's copy: the portal marks its attempt as
        # succeeded only after Stripe said so, and a redelivery carries
        # the event's copy unchanged.
        fresh = billing._retrieve_invoice(stripe_customer, invoice_id)
        if fresh is None:
            logger.info("Stripe event %s: invoice %s is gone; no receipt", event.id, invoice_id)
            return
        data = fresh
    attempt = _portal_attempt(data)
    if attempt is not None:
        status, started = attempt
        if status is ChargeAttemptStatus.SUCCEEDED:
            return  # the portal's payment, receipted with it
        if status is ChargeAttemptStatus.UNKNOWN and (
            started is None or datetime.now(timezone.utc) - started < lease
        ):
            raise DeliverLater(invoice_id)
    invoice = storage.get_invoice(customer.id, invoice_id)
    if invoice is not None:
        send_provider_receipt(state, customer, invoice, batch=mail)


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

    ``invoice.paid`` also writes the invoice's receipt, with the event's
    "handled" mark, unless the portal paid the invoice itself (its receipt
    went with that payment; while its payment is under way the event is
    answered 409) or ``CUSTOMER_PORTAL_PROVIDER_RECEIPTS`` is off.

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
        state = get_state() if EXTENSION_KEY in current_app.extensions else None
        storage = state.storage if state is not None else None
        mail = MailBatch(state) if state is not None else None
        try:
            with events.handling(storage, str(event.id), mail=mail) as claim:
                answer = repeat_answer(claim)
                if answer is not None:
                    return answer
                _handle(event, mail)
        except DeliverLater:
            return DeliverLater.answer
        return "", 204

    def _handle(event: stripe.Event, mail: MailBatch | None) -> None:
        data = as_dict(event.data.object)
        stripe_customer = object_id(data.get("customer"))
        customer_id = ids.to_portal(stripe_customer) if stripe_customer else None
        state = get_state() if EXTENSION_KEY in current_app.extensions else None
        customer = None
        if state is not None and customer_id is not None:
            customer = state.storage.get_customer(customer_id)
        if state is not None and mail is not None and event.type == PAID_EVENT:
            # First: it may put the event off, before anything is written.
            _receipt_for_paid_invoice(state, event, customer, lease, mail)
        if state is not None and customer is not None:
            state.storage.record_event(
                AuditEvent(
                    customer_id=customer.id,
                    action=f"stripe.{event.type}",
                    occurred_at=from_timestamp(event.created) or datetime.now(timezone.utc),
                    subject_id=object_id(data.get("id")),
                    provider_reference=str(event.id),
                    actor="system",
                )
            )
        if on_event is not None:
            on_event(event)

    return blueprint
