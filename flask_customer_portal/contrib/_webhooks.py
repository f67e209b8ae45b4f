"""Each webhook event handled once, whichever worker receives it.

A payment company delivers an event at least once: it retries until it gets
a 2xx, and may deliver the same event twice. The webhook views put their
work inside :meth:`WebhookEvents.handling`, which says whether this delivery
is the one to handle:

* on a store with :meth:`~flask_customer_portal.storage.AccessStore.claim_webhook_event`
  the database decides (one claim per provider and event id, shared by every
  worker and kept across restarts);
* otherwise the view remembers, per process, the ids it handled and those it
  is handling.

If the work raises, the claim is given up before the exception goes on
(the provider gets an error and delivers the event again, and that delivery
is handled).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import cast

from ..storage import AccessStore, store_supports

__all__ = ["WebhookEvents"]

logger = logging.getLogger("flask_customer_portal")

#: How many handled event ids a process remembers on a store without claims.
REMEMBERED = 2048


class WebhookEvents:
    """The events of one webhook endpoint of ``provider`` (``"stripe"``,
    ``"dodo"``): claimed in the store, or remembered in this process."""

    def __init__(self, provider: str, *, remembered: int = REMEMBERED) -> None:
        self.provider = provider
        self._remembered = remembered
        self._lock = threading.Lock()
        self._handled: dict[str, None] = {}
        self._handling: set[str] = set()

    @contextmanager
    def handling(self, storage: object | None, event_id: str) -> Iterator[bool]:
        """``True`` if this delivery of ``event_id`` is to be handled in the
        ``with`` block; ``False`` for a repeat (answer it 2xx and do nothing).
        If the block raises, the event is left unhandled for the next
        delivery."""
        if storage is not None and store_supports(storage, "claim_webhook_event"):
            with self._claimed(cast(AccessStore, storage), event_id) as first:
                yield first
        else:
            with self._in_process(event_id) as first:
                yield first

    @contextmanager
    def _claimed(self, storage: AccessStore, event_id: str) -> Iterator[bool]:
        if not storage.claim_webhook_event(self.provider, event_id, datetime.now(timezone.utc)):
            yield False
            return
        try:
            yield True
        except BaseException:
            try:
                storage.release_webhook_event(self.provider, event_id)
            except Exception as exc:
                logger.error(
                    "Could not release the claim on %s webhook event %s (%s): "
                    "delete its row for a later delivery to be handled",
                    self.provider,
                    event_id,
                    type(exc).__name__,
                )
            raise

    @contextmanager
    def _in_process(self, event_id: str) -> Iterator[bool]:
        with self._lock:
            if event_id in self._handled or event_id in self._handling:
                first = False
            else:
                self._handling.add(event_id)
                first = True
        if not first:
            yield False
            return
        try:
            yield True
        except BaseException:
            with self._lock:
                self._handling.discard(event_id)
            raise
        with self._lock:
            self._handling.discard(event_id)
            self._handled[event_id] = None
            while len(self._handled) > self._remembered:
                self._handled.pop(next(iter(self._handled)))
