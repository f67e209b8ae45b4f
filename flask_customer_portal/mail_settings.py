"""The ``CUSTOMER_PORTAL_MAIL_*`` keys: how the mail outbox delivers,
read and checked once when the portal is registered on an app."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from .errors import ConfigurationError

__all__ = ["MAIL_DEFAULTS", "MailDispatcher", "MailSettings", "load_mail_settings"]

#: Given the id of an outbox row that was just committed; hands its
#: delivery to the merchant's task queue (which calls
#: :func:`flask_customer_portal.outbox.deliver_mail` with it).
MailDispatcher = Callable[[str], object]

MAIL_DEFAULTS: dict[str, Any] = {
    "CUSTOMER_PORTAL_MAIL_MAX_ATTEMPTS": 10,
    "CUSTOMER_PORTAL_MAIL_BACKOFF_BASE": 30,
    "CUSTOMER_PORTAL_MAIL_LEASE": 120,
    "CUSTOMER_PORTAL_MAIL_IN_PROCESS": True,
    "CUSTOMER_PORTAL_MAIL_DISPATCHER": None,
    "CUSTOMER_PORTAL_MAIL_POLL_INTERVAL": 5,
    "CUSTOMER_PORTAL_MAIL_KEEP_SENT_DAYS": 14,
}

#: The longest wait between two attempts, however many failed before.
BACKOFF_CAP = 3600.0


@dataclass(frozen=True, slots=True)
class MailSettings:
    """How the outbox delivers (:doc:`/mail`)."""

    max_attempts: int = 10
    """Attempts before a row is given up on (``failed``)."""
    backoff_base: float = 30.0
    """Seconds before the second attempt; each later wait doubles (with
    jitter, at most :data:`BACKOFF_CAP`)."""
    lease: float = 120.0
    """Seconds a sender holds a row it claimed; another sender may take it
    over after that (the first one died)."""
    in_process: bool = True
    """Whether the process that wrote a row delivers it at once, on the
    portal's worker thread."""
    dispatcher: MailDispatcher | None = None
    """The merchant's hand-off to a task queue, instead of ``in_process``."""
    poll_interval: float = 5.0
    """Seconds ``flask portal worker`` waits when nothing is due."""
    keep_sent_days: int = 14
    """Days ``flask portal prune`` keeps sent rows."""


def _seconds(config: Mapping[str, Any], key: str, *, minimum: float = 0.0) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
        raise ConfigurationError(key, f"must be a number of seconds above {minimum:g}, got {value!r}")
    return float(value)


def _count(config: Mapping[str, Any], key: str, *, maximum: int) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ConfigurationError(key, f"must be a whole number from 1 to {maximum}, got {value!r}")
    return value


def _dispatcher(config: Mapping[str, Any]) -> MailDispatcher | None:
    key = "CUSTOMER_PORTAL_MAIL_DISPATCHER"
    value = config[key]
    if value is None:
        return None
    if isinstance(value, str):
        module_name, _, name = value.partition(":")
        if not module_name or not name:
            raise ConfigurationError(key, f'must be a callable or "module:function", got {value!r}')
        try:
            value = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(key, f"cannot import {module_name}:{name} ({exc})") from exc
    if not callable(value):
        raise ConfigurationError(key, f"must be a callable given an outbox row id, got {value!r}")
    return cast(MailDispatcher, value)


def load_mail_settings(config: Mapping[str, Any]) -> MailSettings:
    """Check the ``CUSTOMER_PORTAL_MAIL_*`` keys; raises
    :class:`~flask_customer_portal.ConfigurationError` naming the first
    that is wrong."""
    in_process = config["CUSTOMER_PORTAL_MAIL_IN_PROCESS"]
    if not isinstance(in_process, bool):
        raise ConfigurationError(
            "CUSTOMER_PORTAL_MAIL_IN_PROCESS", f"must be True or False, got {in_process!r}"
        )
    lease = _seconds(config, "CUSTOMER_PORTAL_MAIL_LEASE")
    timeout = config.get("MAIL_TIMEOUT", 10.0)
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and lease < 2 * timeout:
        # A lease that runs out while the mail server is still answering
        # lets a second sender take the row and send it again.
        raise ConfigurationError(
            "CUSTOMER_PORTAL_MAIL_LEASE",
            f"must be at least twice MAIL_TIMEOUT ({timeout:g} s), so that a row is never taken over "
            f"while its sender still waits for the mail server; got {lease:g}",
        )
    keep = config["CUSTOMER_PORTAL_MAIL_KEEP_SENT_DAYS"]
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigurationError(
            "CUSTOMER_PORTAL_MAIL_KEEP_SENT_DAYS", f"must be a number of days (1 or more), got {keep!r}"
        )
    return MailSettings(
        max_attempts=_count(config, "CUSTOMER_PORTAL_MAIL_MAX_ATTEMPTS", maximum=100),
        backoff_base=_seconds(config, "CUSTOMER_PORTAL_MAIL_BACKOFF_BASE"),
        lease=lease,
        in_process=in_process,
        dispatcher=_dispatcher(config),
        poll_interval=_seconds(config, "CUSTOMER_PORTAL_MAIL_POLL_INTERVAL"),
        keep_sent_days=keep,
    )
