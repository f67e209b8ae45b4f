"""Helpers for testing an app that mounts the portal.

``MemoryMailer`` keeps sent messages in a list; ``TestPaymentProvider``
(re-exported) moves no money; ``csrf_token_from`` reads the CSRF token out of
a rendered portal page so a test client can submit its forms.
"""

from __future__ import annotations

import re
import threading

from .mail import Message
from .payments import TEST_CARDS, TestPaymentProvider

__all__ = ["TEST_CARDS", "MemoryMailer", "TestPaymentProvider", "csrf_token_from"]

_CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


class MemoryMailer:
    """A mail transport that keeps messages in :attr:`outbox`."""

    def __init__(self) -> None:
        self.outbox: list[Message] = []
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        with self._lock:
            self.outbox.append(message)

    def clear(self) -> None:
        with self._lock:
            self.outbox.clear()


def csrf_token_from(html: str) -> str:
    """The first CSRF token in a rendered page."""
    match = _CSRF_RE.search(html)
    if match is None:
        raise AssertionError("no csrf_token field in the page")
    return match.group(1) or match.group(2)
