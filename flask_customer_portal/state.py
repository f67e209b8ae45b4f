"""The portal's per-app state, and :func:`get_state` to reach it.

Kept apart from :mod:`~flask_customer_portal.extension` so that every part
of the portal (billing, views, mail) can reach its state without importing
the extension that registers those parts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from threading import Lock
from typing import cast
from weakref import WeakKeyDictionary

from flask import Flask, current_app

from .capabilities import Capabilities, ProviderCapabilities
from .config import PortalConfig
from .mail import Mailer
from .offers import RetentionOfferFunction
from .payments import PaymentProvider
from .pdf import InvoiceRenderer
from .ratelimit import CustomerLimits, LoginRateLimits
from .rules import RulesLoader
from .storage import Customer, PortalStorage, PromotionCode
from .tokens import LinkSigner

__all__ = ["EXTENSION_KEY", "PortalHooks", "PortalState", "get_state"]

logger = logging.getLogger("flask_customer_portal")

EXTENSION_KEY = "customer_portal"


@dataclass
class PortalHooks:
    """The functions a merchant registers with the
    :class:`~flask_customer_portal.CustomerPortal`'s decorators. One object,
    shared by every app the portal serves, so a hook registered after
    ``init_app`` still counts."""

    customer_loader: Callable[[], str | None] | None = None
    rules_loader: RulesLoader | None = None
    retention_offer: RetentionOfferFunction | None = None
    promotion_code_loader: Callable[[Customer, str], PromotionCode | None] | None = None
    """Finds a promotion code (:meth:`CustomerPortal.promotion_code_loader`)."""
    session_locator: Callable[[str], str | None] | None = None
    mail_dispatcher: Callable[[str], object] | None = None
    """Hands an outbox row id to the merchant's task queue
    (:meth:`CustomerPortal.mail_dispatcher`)."""
    worker_tasks: list[Callable[[PortalState], int]] = field(default_factory=list)
    """More due work for ``flask portal worker`` (:meth:`CustomerPortal.worker_task`)."""


@dataclass
class PortalState:
    """Everything the portal keeps for one app; ``portal.get_state(app)``
    returns it (``app.extensions["customer_portal"]`` is the
    :class:`~flask_customer_portal.CustomerPortal` itself)."""

    hooks: PortalHooks
    config: PortalConfig
    storage: PortalStorage
    capabilities: Capabilities
    """What the store can do beyond the core, resolved once at ``init_app``."""
    payments: PaymentProvider
    provider_capabilities: ProviderCapabilities
    """What the payment provider does beyond the core, resolved once at ``init_app``."""
    mailer: Mailer
    signer: LinkSigner
    rate_limits: LoginRateLimits
    customer_limits: CustomerLimits
    """Per-customer limits on adding cards and on exports (same store)."""
    invoice_renderer: InvoiceRenderer | None = None
    """Makes invoice PDFs; ``None`` hides the PDF links (fpdf2 missing)."""
    _executor: ThreadPoolExecutor | None = None
    _pending: set[Future[None]] = field(default_factory=set)
    _lock: Lock = field(default_factory=Lock)

    def run_in_background(self, app: Flask, func: Callable[[], None]) -> None:
        """Run ``func`` inside an app context on the portal's worker thread,
        so that slow work (SMTP) does not show in response times."""

        def job() -> None:
            with app.app_context():
                try:
                    func()
                except Exception:
                    logger.exception("Customer portal background task failed")

        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="customer-portal")
            future = self._executor.submit(job)
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def wait_for_background_tasks(self, timeout: float = 10.0) -> None:
        """Block until queued background work is done (tests, shutdown)."""
        with self._lock:
            pending = set(self._pending)
        wait(pending, timeout=timeout)

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


# Per-app state, as Flask-SQLAlchemy keeps its engines: nothing here holds an
# app alive, and one portal serves several apps. Written only by
# CustomerPortal.init_app.
_STATES: WeakKeyDictionary[Flask, PortalState] = WeakKeyDictionary()


def app_object(app: Flask | None) -> Flask:
    """``app``, or the current app; never the ``current_app`` proxy (state is
    kept by app object)."""
    if app is None:
        app = current_app
    unwrap = getattr(app, "_get_current_object", None)
    return app if unwrap is None else cast("Flask", unwrap())


def register_state(app: Flask, state: PortalState) -> None:
    """Keep ``state`` as the portal's state for ``app``."""
    _STATES[app] = state


def get_state(app: Flask | None = None) -> PortalState:
    """The portal's state for ``app`` (default: the current app), as
    registered by the :class:`~flask_customer_portal.CustomerPortal` in
    ``app.extensions["customer_portal"]``."""
    app = app_object(app)
    state = _STATES.get(app)
    if state is None or EXTENSION_KEY not in app.extensions:
        raise RuntimeError(
            "The customer portal is not registered on this app; call CustomerPortal(app) "
            "or portal.init_app(app) first."
        )
    return state
