"""Dodo's webhooks: verified, written to the audit log and told to the
merchant's code through the portal's signals."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import current_app, request
from standardwebhooks import Webhook, WebhookVerificationError

from ... import signals
from ...billing.receipts import send_provider_receipt
from ...errors import PortalError
from ...outbox import MailBatch
from ...state import PortalState, get_state
from ...storage import AuditEvent, Customer
from .._webhooks import LEASE, WebhookEvents, repeat_answer
from ..composite import CompositeStorage
from ._convert import utc

logger = logging.getLogger("flask_customer_portal")

#: The event of a successful payment, a subscription's renewal or
#: reactivation included (``subscription.renewed`` comes as well, and gets
#: no receipt of its own: one receipt a payment).
PAID_EVENT = "payment.succeeded"


class InvalidDodoWebhook(PortalError):
    """The request is not a webhook Dodo Payments signed (bad or missing
    signature, a timestamp more than five minutes away, or not JSON)."""


@dataclass(frozen=True, slots=True)
class DodoWebhookEvent:
    """A verified webhook: its ``webhook-id`` (unique per event: use it to
    ignore repeats), type (``subscription.on_hold``, ``payment.succeeded`` …),
    the Dodo customer it is about and its ``data``."""

    id: str
    type: str
    customer_id: str | None
    data: Mapping[str, Any]
    timestamp: datetime | None = None

    @property
    def subject_id(self) -> str | None:
        """The subscription, payment, refund, dispute or licence key the
        event is about (by the event type's first word)."""
        key = {
            "subscription": "subscription_id",
            "payment": "payment_id",
            "refund": "refund_id",
            "dispute": "dispute_id",
            "license_key": "id",
        }.get(self.type.split(".", 1)[0])
        value = self.data.get(key) if key else None
        return value if isinstance(value, str) else None

    def audit_event(self, portal_customer_id: str) -> AuditEvent:
        """The event as an entry for the portal's audit log
        (``dodo.subscription.on_hold`` …, actor ``provider``)."""
        details = {
            key: str(self.data[key])
            for key in ("status", "total_amount", "currency", "error_code")
            if self.data.get(key) is not None
        }
        details["webhook_id"] = self.id
        return AuditEvent(
            customer_id=portal_customer_id,
            action=f"dodo.{self.type}",
            occurred_at=self.timestamp or datetime.now(timezone.utc),
            subject_id=self.subject_id,
            provider_reference=self.subject_id,
            actor="provider",
            details=details,
        )


def verify_dodo_webhook(secret: str, body: bytes, headers: Mapping[str, str] | Any) -> DodoWebhookEvent:
    """Check a webhook's Standard Webhooks signature (``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature`` headers, the secret from
    Dodo's dashboard, ``whsec_…``) and read it. Raises
    :class:`InvalidDodoWebhook`: answer such a request with 400 and do
    nothing else."""
    wanted = ("webhook-id", "webhook-timestamp", "webhook-signature")
    picked = {name: headers.get(name) or headers.get(name.title()) for name in wanted}
    if not all(picked.values()):
        raise InvalidDodoWebhook("missing webhook signature headers")
    try:
        payload = Webhook(secret).verify(body, {k: str(v) for k, v in picked.items()})
    except WebhookVerificationError as exc:
        raise InvalidDodoWebhook(str(exc)) from exc
    except (ValueError, json.JSONDecodeError) as exc:
        raise InvalidDodoWebhook("webhook body is not JSON") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise InvalidDodoWebhook("webhook body has no type")
    raw_data = payload.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    customer = data.get("customer")
    customer_id = data.get("customer_id")
    if isinstance(customer, dict) and isinstance(customer.get("customer_id"), str):
        customer_id = customer["customer_id"]
    timestamp = None
    if isinstance(payload.get("timestamp"), str):
        try:
            timestamp = utc(datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00")))
        except ValueError:
            timestamp = None
    return DodoWebhookEvent(
        id=str(picked["webhook-id"]),
        type=payload["type"],
        customer_id=customer_id if isinstance(customer_id, str) else None,
        data=data,
        timestamp=timestamp,
    )


def dodo_webhook_view(
    secret: str,
    *,
    on_event: Callable[[DodoWebhookEvent], None] | None = None,
    lease: timedelta = LEASE,
) -> Callable[[], Any]:
    """A Flask view for Dodo's webhooks; mount it on the app (POST only)::

        app.add_url_rule(
            "/webhooks/dodo",
            view_func=dodo_webhook_view(os.environ["DODO_PAYMENTS_WEBHOOK_KEY"]),
            methods=["POST"],
        )

    It verifies the signature (400 and nothing else if it fails), writes
    the event to the portal's audit log for the customer, sends the
    portal's signals where one fits — ``payment.succeeded`` →
    ``invoice_paid``, ``subscription.renewed`` → ``subscription_renewed``,
    ``subscription.on_hold`` → ``subscription_put_on_hold`` — with the
    records read fresh from Dodo, then calls ``on_event``.
    ``payment.succeeded`` also writes the payment's receipt, with the
    event's "handled" mark, unless ``CUSTOMER_PORTAL_PROVIDER_RECEIPTS`` is
    off. The portal's
    pages read Dodo directly, so they are current without the webhook; the
    webhook is how the merchant's code and the audit log learn of changes
    made outside the portal (renewals, Dodo's own retries, the dashboard).

    Dodo retries until it gets a 2xx, and may deliver an event twice: an
    event id that was handled already is answered 204 and does nothing
    else; one that another delivery is handling right now is answered 409,
    so that Dodo delivers it again later. With a store that has
    :meth:`~flask_customer_portal.storage.AccessStore.claim_webhook_event`
    every worker and restart agrees, and a claim left unfinished for
    ``lease`` (5 minutes unless given; its worker died) is taken over by
    the next delivery;
    otherwise each process remembers the ids it handled. If handling
    raises, the answer is an error and Dodo's next delivery of the event
    is handled.
    """
    if not secret:
        raise ValueError("the Dodo Payments webhook secret is required")
    events = WebhookEvents("dodo", lease=lease)

    def view() -> Any:
        try:
            event = verify_dodo_webhook(secret, request.get_data(cache=False), request.headers)
        except InvalidDodoWebhook as exc:
            logger.warning("Refused a Dodo Payments webhook: %s", exc)
            return "invalid webhook", 400
        state = get_state()
        storage = state.storage
        mail = MailBatch(state)
        with events.handling(storage, event.id, mail=mail) as claim:
            answer = repeat_answer(claim)
            if answer is not None:
                return answer
            portal_id = event.customer_id
            if portal_id is not None and isinstance(storage, CompositeStorage):
                portal_id = storage.customer_ids.to_portal(portal_id)
            customer = storage.get_customer(portal_id) if portal_id is not None else None
            if event.type == PAID_EVENT:
                _receipt(state, customer, event, mail)
            if customer is not None:
                storage.record_event(event.audit_event(customer.id))
                _send_signals(current_app._get_current_object(), storage, customer, event)  # type: ignore[attr-defined]
            if on_event is not None:
                on_event(event)
        return "", 204

    view.__name__ = "dodo_webhook"
    return view


def _receipt(state: PortalState, customer: Customer | None, event: DodoWebhookEvent, mail: MailBatch) -> None:
    """The receipt of a payment Dodo took (its renewals and retries, a
    reactivation or a plan change made at Dodo: the portal sends none
    itself for those), written with the event's "handled" mark."""
    payment_id = event.subject_id
    if payment_id is None:
        return
    if customer is None:
        logger.info("Dodo webhook %s: payment %s is of no portal customer; no receipt", event.id, payment_id)
        return
    invoice = state.storage.get_invoice(customer.id, payment_id)
    if invoice is not None:
        send_provider_receipt(state, customer, invoice, batch=mail)


def _send_signals(app: Any, storage: Any, customer: Any, event: DodoWebhookEvent) -> None:
    subject = event.subject_id
    if subject is None:
        return
    if event.type == "payment.succeeded":
        invoice = storage.get_invoice(customer.id, subject)
        if invoice is not None:
            signals.invoice_paid.send(app, customer=customer, invoice=invoice, provider_reference=subject)
        return
    if not event.type.startswith("subscription."):
        return
    subscription = storage.get_subscription(customer.id, subject)
    if subscription is None:
        return
    payment_id = event.data.get("payment_id")
    invoice = storage.get_invoice(customer.id, payment_id) if isinstance(payment_id, str) else None
    if event.type == "subscription.renewed":
        signals.subscription_renewed.send(app, customer=customer, subscription=subscription, invoice=invoice)
    elif event.type == "subscription.on_hold":
        signals.subscription_put_on_hold.send(
            app, customer=customer, subscription=subscription, invoice=invoice, reason=None
        )
