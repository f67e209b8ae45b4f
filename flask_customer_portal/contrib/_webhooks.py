"""Each webhook event handled once, whichever worker receives it.

A payment company delivers an event at least once: it retries until it gets
a 2xx, and may deliver the same event twice. The webhook views put their
work inside :meth:`WebhookEvents.handling`, which says what this delivery is
to do (a :class:`~flask_customer_portal.storage.WebhookClaim`): handle the
event, answer 2xx for an event handled before, or answer an error for an
event another delivery is handling right now (the provider delivers it
again later, when the outcome is known):

* on a store with :meth:`~flask_customer_portal.storage.AccessStore.claim_webhook_event`,
  :meth:`~flask_customer_portal.storage.AccessStore.finish_webhook_event` and
  :meth:`~flask_customer_portal.storage.AccessStore.release_webhook_event`
  the database decides (one claim per provider and event id, shared by every
  worker and kept across restarts). A claim whose handler died without
  finishing it is taken over by the first delivery after its lease;
* otherwise the view remembers, per process, the ids it handled and those it
  is handling.

If the work raises, the claim is given up before the exception goes on
(the provider gets an error and delivers the event again, and that delivery
is handled).

The emails an event causes (a receipt) go in the ``mail`` batch given to
:meth:`WebhookEvents.handling`: on a store whose ``finish_webhook_event``
takes them they are written in the transaction that marks the event
handled, so a repeated or concurrent delivery writes none; otherwise right
after. They are dispatched once written.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import cast

from ..capabilities import capabilities_of
from ..outbox import MailBatch
from ..storage import AccessStore, OutboxMail, WebhookClaim

__all__ = ["LEASE", "DeliverLater", "WebhookEvents", "finishes_with_mail", "repeat_answer"]

logger = logging.getLogger("flask_customer_portal")

#: How many handled event ids a process remembers on a store without claims.
REMEMBERED = 2048

#: How long a claim is left to its delivery before a later delivery may take
#: it over: far longer than handling one event takes.
LEASE = timedelta(minutes=5)


class DeliverLater(Exception):
    """Raised inside :meth:`WebhookEvents.handling` for an event that cannot
    be handled yet (the portal's own payment of the invoice is under way):
    the claim is given up and the view answers 409, so that the provider
    delivers it again later."""

    answer = ("event not ready, deliver it again later", 409)


class _HeldMail:
    """The rows of a :class:`~flask_customer_portal.outbox.MailBatch`, held
    for the transaction that finishes the event."""

    def __init__(self) -> None:
        self.rows: list[OutboxMail] = []

    def enqueue_mail(self, mail: OutboxMail) -> None:
        self.rows.append(mail)


def finishes_with_mail(store: object) -> bool:
    """Whether the store's ``finish_webhook_event`` writes emails with the mark."""
    finish = getattr(store, "finish_webhook_event", None)
    if not callable(finish):
        return False
    try:
        parameters = inspect.signature(finish).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return False
    return "mail" in parameters


def repeat_answer(claim: WebhookClaim) -> tuple[str, int] | None:
    """The webhook view's answer to a delivery that must not handle the
    event, or ``None`` for the one that handles it: 204 for an event
    handled before, 409 for one another delivery is handling right now (the
    provider delivers it again later)."""
    if claim is WebhookClaim.HANDLED:
        return "", 204
    if claim is WebhookClaim.IN_PROGRESS:
        return "event being handled, deliver it again later", 409
    return None


class WebhookEvents:
    """The events of one webhook endpoint of ``provider`` (``"stripe"``,
    ``"dodo"``): claimed in the store for ``lease``, or remembered in this
    process."""

    def __init__(self, provider: str, *, lease: timedelta = LEASE, remembered: int = REMEMBERED) -> None:
        if lease <= timedelta(0):
            raise ValueError(f"the webhook lease must be positive, got {lease}")
        self.provider = provider
        self.lease = lease
        self._remembered = remembered
        self._lock = threading.Lock()
        self._handled: dict[str, None] = {}
        self._handling: set[str] = set()

    @contextmanager
    def handling(
        self, storage: object | None, event_id: str, *, mail: MailBatch | None = None
    ) -> Iterator[WebhookClaim]:
        """What this delivery of ``event_id`` is to do: handle it in the
        ``with`` block (:attr:`~WebhookClaim.CLAIMED`), answer 2xx and do
        nothing (:attr:`~WebhookClaim.HANDLED`), or answer an error and do
        nothing (:attr:`~WebhookClaim.IN_PROGRESS`). A claimed event is
        finished when the block ends normally, with the emails put in
        ``mail`` meanwhile; if the block raises, it is left unhandled for
        the next delivery and its emails are dropped."""
        store = (
            cast(AccessStore, storage)
            if storage is not None and capabilities_of(storage).webhook_claims
            else None
        )
        claim = self._claim(store, event_id)
        if claim is not WebhookClaim.CLAIMED:
            yield claim
            return
        held = _HeldMail() if mail is not None and store is not None and finishes_with_mail(store) else None
        if mail is not None:
            # Without a store that takes them, the rows are written by
            # ``committed`` right after the event is finished.
            mail.write_through(held)
        try:
            yield claim
        except BaseException:
            self._release(store, event_id)
            raise
        self._finish(store, event_id, held.rows if held is not None else [])
        if mail is not None:
            mail.committed()

    def _claim(self, store: AccessStore | None, event_id: str) -> WebhookClaim:
        if store is not None:
            return store.claim_webhook_event(
                self.provider, event_id, datetime.now(timezone.utc), lease=self.lease
            )
        with self._lock:
            if event_id in self._handled:
                return WebhookClaim.HANDLED
            if event_id in self._handling:
                return WebhookClaim.IN_PROGRESS
            self._handling.add(event_id)
            return WebhookClaim.CLAIMED

    def _release(self, store: AccessStore | None, event_id: str) -> None:
        """Leave the event unhandled, for the provider's next delivery."""
        if store is None:
            with self._lock:
                self._handling.discard(event_id)
            return
        try:
            store.release_webhook_event(self.provider, event_id)
        except Exception as exc:
            logger.error(
                "Could not release the claim on %s webhook event %s (%s): "
                "a delivery after the %s lease will handle it",
                self.provider,
                event_id,
                type(exc).__name__,
                self.lease,
            )

    def _finish(self, store: AccessStore | None, event_id: str, mail: list[OutboxMail]) -> None:
        """Record the event as handled, with ``mail`` in the same transaction."""
        if store is None:
            with self._lock:
                self._handling.discard(event_id)
                self._handled[event_id] = None
                while len(self._handled) > self._remembered:
                    self._handled.pop(next(iter(self._handled)))
            return
        now = datetime.now(timezone.utc)
        if mail:
            try:
                store.finish_webhook_event(self.provider, event_id, now, mail=mail)  # type: ignore[call-arg]
            except BaseException:
                # The emails were not written: the event is given up, the
                # provider gets an error and its next delivery writes them.
                self._release(store, event_id)
                raise
            return
        try:
            store.finish_webhook_event(self.provider, event_id, now)
        except Exception as exc:
            # The work is done and its answer stays a success; the claim
            # expires after the lease and a later delivery handles the
            # event again: twice rather than never.
            logger.error(
                "Handled %s webhook event %s but could not record it as handled (%s): "
                "a delivery after the %s lease will handle it again",
                self.provider,
                event_id,
                type(exc).__name__,
                self.lease,
            )
