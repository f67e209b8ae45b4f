"""The :class:`CustomerPortal` extension."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace

from flask import Flask
from flask_babel import Babel

from . import erasure
from .auth import PortalSession
from .capabilities import capabilities_of, provider_capabilities_of
from .cli import portal_cli
from .clock import utcnow
from .config import DEFAULTS, PortalConfig, load_config
from .contrib.sqla import SQLAlchemyStorage
from .deep_links import create_session_link
from .errors import ConfigurationError
from .invites import send_invite
from .log_redaction import install_log_redaction
from .mail import LogMailer, Mailer, mailer_from_config
from .migrations.gate import install_schema_gate
from .offers import RetentionOfferFunction
from .payments import PaymentProvider, TestPaymentProvider
from .pdf import InvoiceRenderer, default_invoice_renderer
from .production import check_money_lock, check_provider_mode
from .ratelimit import CustomerLimits, LoginRateLimits, storage_uri_problem
from .rules import RulesLoader
from .state import EXTENSION_KEY, PortalHooks, PortalState, app_object, get_state, register_state
from .storage import (
    ERASED_EMAIL_DOMAIN,
    AuditEvent,
    Customer,
    EmailInUse,
    ErasureReport,
    PortalStorage,
    PromotionCode,
)
from .tokens import LinkSigner
from .views import add_security_headers, blueprint
from .views.error_pages import install_error_pages

__all__ = ["CustomerPortal", "PortalState", "get_state"]


logger = logging.getLogger("flask_customer_portal")


def _set_host_defaults(app: Flask, config: PortalConfig) -> None:
    """Fill in the app-wide settings the portal relies on that the app left
    unset, unless ``CUSTOMER_PORTAL_SET_HOST_DEFAULTS`` is false, and say
    so in one INFO line: nothing about the host app changes silently."""
    if not config.set_host_defaults:
        return
    changed: list[str] = []
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        # Defence in depth next to the CSRF tokens: the browser does not send
        # the session cookie with another site's POST.
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
        changed.append('SESSION_COOKIE_SAMESITE = "Lax" (it was unset)')
    if "babel" not in app.extensions:
        Babel(app, default_locale=config.default_locale)
        changed.append(f"registered Flask-Babel on the app (default locale {config.default_locale!r})")
    if changed:
        logger.info(
            "Customer portal set app-wide settings: %s. Set CUSTOMER_PORTAL_SET_HOST_DEFAULTS = False "
            "to change nothing outside the portal.",
            "; ".join(changed),
        )


class CustomerPortal:
    """A self-hosted customer portal mounted in a Flask app.

    ::

        portal = CustomerPortal(app)                  # or
        portal = CustomerPortal(storage=..., payments=..., mailer=...)
        portal.init_app(app)

    :param storage: where customers, billing records and sessions live;
        defaults to :class:`~flask_customer_portal.contrib.sqla.SQLAlchemyStorage`
        over the app's Flask-SQLAlchemy instance.
    :param payments: the payment provider; defaults to the
        :class:`~flask_customer_portal.TestPaymentProvider` in test mode and is
        required in live mode.
    :param mailer: the mail transport; defaults to SMTP from ``MAIL_*`` or,
        in test mode without ``MAIL_SERVER``, the log.
    :param invoice_renderer: makes the invoice PDFs (an
        :class:`~flask_customer_portal.pdf.InvoiceRenderer`); defaults to
        :class:`~flask_customer_portal.pdf.FPDFInvoiceRenderer` when fpdf2 is
        installed. Without one, invoices have no PDF.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        storage: PortalStorage | None = None,
        payments: PaymentProvider | None = None,
        mailer: Mailer | None = None,
        invoice_renderer: InvoiceRenderer | None = None,
    ) -> None:
        self.storage = storage
        self.payments = payments
        self.mailer = mailer
        self.invoice_renderer = invoice_renderer
        self.hooks = PortalHooks()
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        invoice_renderer: InvoiceRenderer | None = None,
        storage: PortalStorage | None = None,
        payments: PaymentProvider | None = None,
    ) -> None:
        """Register the portal on ``app``: read and check its configuration,
        mount the ``portal`` blueprint and the ``flask portal`` commands, and
        put this object in ``app.extensions["customer_portal"]``.
        ``invoice_renderer``, ``storage`` and ``payments`` override the
        constructor's for this app (an app factory that picks its billing
        back end from its configuration)."""
        registered = app.extensions.get(EXTENSION_KEY)
        if registered is self:
            raise RuntimeError(
                "This CustomerPortal is already registered on this app: call init_app once "
                "per app (CustomerPortal(app) calls it for you)."
            )
        if registered is not None:
            raise RuntimeError(
                "A CustomerPortal is already registered on this app: use that one "
                '(current_app.extensions["customer_portal"]) instead of registering a second.'
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        config = load_config(app.config)

        storage = storage or self.storage or self._default_storage(app)
        payments = payments or self.payments
        if payments is None:
            if config.is_live:
                raise ConfigurationError(
                    "CUSTOMER_PORTAL_MODE",
                    "live mode needs a real payment provider: CustomerPortal(app, payments=...)",
                )
            payments = TestPaymentProvider()
        # Test credentials in live mode, or live ones (real money) in test mode.
        check_provider_mode(config, payments)
        # Reactivations and invoice payments at a payment company, exactly once across workers.
        check_money_lock(config, storage, payments)
        try:
            mailer = self.mailer or mailer_from_config(app.config)
        except ValueError as exc:
            raise ConfigurationError("MAIL_USE_SSL", str(exc)) from exc
        if config.is_live and isinstance(mailer, LogMailer):
            raise ConfigurationError(
                "MAIL_SERVER",
                "live mode must send real email (login links); set MAIL_SERVER or pass mailer=...",
            )
        if config.is_live and not app.config.get("SESSION_COOKIE_SECURE"):
            raise ConfigurationError(
                "SESSION_COOKIE_SECURE", "live mode needs SESSION_COOKIE_SECURE = True (HTTPS-only cookies)"
            )
        if config.blueprint_name in app.blueprints:
            raise ConfigurationError(
                "CUSTOMER_PORTAL_BLUEPRINT_NAME",
                f"the app already has a blueprint named {config.blueprint_name!r}; give the portal's "
                'another name, e.g. CUSTOMER_PORTAL_BLUEPRINT_NAME = "customer_portal"',
            )
        if "babel" not in app.extensions and not config.set_host_defaults:
            raise ConfigurationError(
                "CUSTOMER_PORTAL_SET_HOST_DEFAULTS",
                "the portal translates its pages with Flask-Babel: register it first (Babel(app) "
                "before portal.init_app(app)), or leave this setting True to let the portal do it",
            )

        namespace = f"customer-portal:{config.mode}:{config.business_id}"
        try:
            rate_limits = LoginRateLimits(
                per_address=config.login_rate_limit_per_address,
                per_client=config.login_rate_limit_per_client,
                storage_uri=config.rate_limit_storage_uri,
                namespace=namespace,
            )
        except Exception as exc:  # limits raises several types for bad URIs
            raise ConfigurationError(
                "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI",
                storage_uri_problem(config.rate_limit_storage_uri, exc),
            ) from None  # the cause's text holds the whole URI, password and all
        customer_limits = CustomerLimits(
            card_attach=config.card_attach_limit,
            export=config.export_rate_limit,
            promotion_code=config.promotion_code_rate_limit,
            invoice_email=config.invoice_email_rate_limit,
            storage=rate_limits.storage,
            namespace=namespace,
        )
        if invoice_renderer is None:
            fonts = config.pdf_fallback_fonts
            invoice_renderer = self.invoice_renderer or default_invoice_renderer(
                fallback_fonts=None if fonts is None else [os.path.join(app.root_path, f) for f in fonts]
            )
        if invoice_renderer is None:
            logger.warning(
                "Customer portal: invoices have no PDF, because fpdf2 is not installed "
                "(pip install 'flask-customer-portal[pdf]') and no invoice_renderer was given"
            )
        elif not isinstance(invoice_renderer, InvoiceRenderer):
            raise ConfigurationError(
                "invoice_renderer", "must have a render(document) method that returns the PDF's bytes"
            )
        secret_keys = [*(app.config.get("SECRET_KEY_FALLBACKS") or []), app.config["SECRET_KEY"]]
        state = PortalState(
            hooks=self.hooks,
            config=config,
            storage=storage,
            capabilities=capabilities_of(storage),
            payments=payments,
            provider_capabilities=provider_capabilities_of(payments),
            mailer=mailer,
            signer=LinkSigner(secret_keys, mode=config.mode, business_id=config.business_id),
            rate_limits=rate_limits,
            customer_limits=customer_limits,
            invoice_renderer=invoice_renderer,
        )
        register_state(app, state)
        app.extensions[EXTENSION_KEY] = self
        _set_host_defaults(app, config)

        app.register_blueprint(blueprint, name=config.blueprint_name, url_prefix=config.url_prefix or None)
        app.after_request(add_security_headers)
        # Unknown addresses under the prefix (and 405s) get the portal's page too.
        install_error_pages(app)
        # Link tokens are in URL paths: keep them out of the portal's log and,
        # unless CUSTOMER_PORTAL_REDACT_ACCESS_LOGS is False, out of the
        # server loggers that log its requests (a process-wide filter).
        install_log_redaction(app, config.url_prefix, access_logs=config.redact_access_logs)
        app.cli.add_command(portal_cli)
        # A database behind the package's schema: named on the first portal request.
        install_schema_gate(app, live=config.is_live)

    @staticmethod
    def _default_storage(app: Flask) -> PortalStorage:
        db = app.extensions.get("sqlalchemy")
        if db is None:
            raise ConfigurationError(
                "storage",
                "pass CustomerPortal(storage=...) or set up Flask-SQLAlchemy on the app "
                "before the portal to use the default SQLAlchemy store",
            )

        return SQLAlchemyStorage(db)

    def customer_loader(self, callback: Callable[[], str | None]) -> Callable[[], str | None]:
        """Register a function that maps the host app's signed-in user to a
        customer id (or ``None``), so that such users open ``/portal``
        directly::

            @portal.customer_loader
            def load_customer():
                return current_user.customer_id if current_user.is_authenticated else None
        """
        self.hooks.customer_loader = callback
        return callback

    def rules_loader(self, callback: RulesLoader) -> RulesLoader:
        """Register the function that decides, per request, what a customer
        may do: which plans they may switch to, whether cancel, pause and
        plan change are offered, or billing-only access. It takes the
        customer and the subscription in question (or ``None``) and returns
        a :class:`~flask_customer_portal.rules.CustomerRules`::

            @portal.rules_loader
            def rules(customer, subscription):
                return CustomerRules(billing_only=customer.id in managed_accounts)
        """
        self.hooks.rules_loader = callback
        return callback

    def retention_offer(self, callback: RetentionOfferFunction) -> RetentionOfferFunction:
        """Register the function that may offer something instead of a
        cancellation. It is called with the customer, the subscription and
        the :class:`~flask_customer_portal.billing.retention.CancellationReason`
        they gave, and returns a
        :class:`~flask_customer_portal.billing.retention.PauseOffer`,
        :class:`~flask_customer_portal.billing.retention.PlanOffer`,
        :class:`~flask_customer_portal.billing.retention.DiscountOffer` or ``None``::

            @portal.retention_offer
            def offer(customer, subscription, reason):
                if reason.code == "too_expensive":
                    return DiscountOffer(percent=30, renewals=3)
                return None

        See :ref:`retention-offers`.
        """
        self.hooks.retention_offer = callback
        return callback

    def promotion_code_loader(
        self, callback: Callable[[Customer, str], PromotionCode | None]
    ) -> Callable[[Customer, str], PromotionCode | None]:
        """Register the function that finds a promotion code a customer
        entered, instead of the store's codes. It is called with the
        customer and the code as typed, stripped and upper-cased, and
        returns a :class:`~flask_customer_portal.storage.PromotionCode` or
        ``None``::

            @portal.promotion_code_loader
            def promotion_code(customer, code):
                if code == "WELCOME10":
                    return PromotionCode("WELCOME10", percent_off=10)
                return None

        The portal still records each use (once per customer, and against
        ``max_redemptions``). See :doc:`promotions`.
        """
        self.hooks.promotion_code_loader = callback
        return callback

    def session_locator(self, callback: Callable[[str], str | None]) -> Callable[[str], str | None]:
        """Register a function that turns the client's IP address into an
        approximate place ("Jakarta, Indonesia") or ``None``, shown next to
        each session on the customer's sessions page::

            @portal.session_locator
            def locate(ip):
                city = geoip_reader.city(ip)  # e.g. a local GeoLite2 database
                return f"{city.city.name}, {city.country.name}"

        It runs once per sign-in, in the request. Only its answer is stored,
        never the address; without a locator the portal does not keep or
        look at the address at all. An exception is logged (without the
        address) and the session simply has no location.
        """
        self.hooks.session_locator = callback
        return callback

    def mail_dispatcher(self, callback: Callable[[str], object]) -> Callable[[str], object]:
        """Register a function that hands an email to the merchant's task
        queue instead of the portal's worker thread. It is given the id of
        an outbox row just after the transaction that wrote the row was
        committed; the task it queues calls
        :func:`flask_customer_portal.outbox.deliver_mail` with that id in an
        app context::

            @portal.mail_dispatcher
            def dispatch(mail_id):
                deliver_portal_mail.delay(mail_id)  # a Celery task

        Same as ``CUSTOMER_PORTAL_MAIL_DISPATCHER``, which it overrides. If
        it raises, or the task is lost, the row is still due: ``flask portal
        send-mail`` or ``worker`` delivers it (see :doc:`/mail`).
        """
        self.hooks.mail_dispatcher = callback
        return callback

    def worker_task(self, callback: Callable[[PortalState], int]) -> Callable[[PortalState], int]:
        """Register more due work for ``flask portal worker``: a function
        given the portal's state that does what is due and returns how much
        (``0`` when nothing was). It runs every round, after the outbox's
        delivery; the worker sleeps only when a whole round did nothing::

            @portal.worker_task
            def resume_paused(state):
                return len(resume_due(state, utcnow()).resumed)
        """
        self.hooks.worker_tasks.append(callback)
        return callback

    def create_session(
        self,
        customer_id: str,
        *,
        return_url: str | None = None,
        flow: str | None = None,
        subscription_id: str | None = None,
        actor: str = "merchant",
        details: Mapping[str, str] | None = None,
    ) -> PortalSession:
        """Make a one-time dynamic link that signs ``customer_id`` in.

        With ``flow`` (``"payment_method_update"``, ``"cancel"``,
        ``"plan_change"`` or ``"invoices"``) the link is a deep link: it
        lands on that task (for ``subscription_id``, which the first three
        need) and, once the task is done, sends the customer back to
        ``return_url``. See :ref:`deep-links`.

        Call inside an app context (a request, a CLI command or
        ``with app.app_context()``). Raises
        :class:`~flask_customer_portal.CustomerNotFound` for an unknown id and
        :class:`ValueError` for a ``return_url`` outside the allowed hosts, an
        unknown flow, or a subscription that is missing, not the customer's
        or not one the flow can apply to.

        ``actor`` and ``details`` say who made the link in its
        ``session_link.created`` audit event, e.g.
        ``details={"staff_id": str(current_user.id)}`` from a staff panel
        (customers never see them).
        """
        return create_session_link(
            self.get_state(),
            customer_id,
            return_url,
            flow=flow,
            subscription_id=subscription_id,
            actor=actor,
            details=details,
        )

    def static_login_url(self) -> str:
        """The never-expiring static link, ``<base URL>/portal/login/<business id>``."""
        return self.get_state().config.static_login_url

    def send_invite(
        self,
        customer_id: str,
        *,
        return_url: str | None = None,
        flow: str | None = None,
        subscription_id: str | None = None,
        actor: str = "merchant",
        details: Mapping[str, str] | None = None,
    ) -> PortalSession:
        """Make a one-time dynamic link for ``customer_id`` and email it to
        the customer (the ``invite`` email, in their language, with the
        merchant's name). Returns the link, as
        :meth:`create_session` does; ``flow`` and ``subscription_id`` make
        it a deep link in the same way.

        Call inside an app context. Raises
        :class:`~flask_customer_portal.CustomerNotFound` for an unknown id,
        :class:`ValueError` for a ``return_url`` outside the allowed hosts or
        a flow :meth:`create_session` refuses, and
        :class:`~flask_customer_portal.mail.MailDeliveryError` when the
        email could not be handed to the mail transport. ``actor`` and
        ``details`` go into its audit events, as for :meth:`create_session`.
        """
        return send_invite(
            self.get_state(),
            customer_id,
            return_url=return_url,
            flow=flow,
            subscription_id=subscription_id,
            actor=actor,
            details=details,
        )

    def sign_out_everywhere(self, customer_id: str, *, actor: str = "merchant", **details: str) -> int:
        """End every portal session of ``customer_id`` and make every link
        sent to them before now stop working (a forwarded link, a lost
        laptop, a suspected takeover). Records ``session.signed_out_everywhere``
        in the audit log with ``actor`` and ``details``. Returns how many
        sessions were live. Call inside an app context."""

        now = utcnow()
        return self.get_state().storage.sign_out_everywhere(
            customer_id,
            now,
            event=AuditEvent(
                customer_id=customer_id,
                action="session.signed_out_everywhere",
                occurred_at=now,
                actor=actor,
                details=dict(details),
            ),
        )

    def add_customer(self, customer: Customer) -> Customer:
        """Put a customer of yours into the portal (``created_at`` defaults
        to now) and return it as stored: call it where your app creates the
        customer (sign-up, first purchase)::

            portal.add_customer(Customer(id="cus_123", email="ada@example.com", name="Ada Lovelace"))

        Idempotent: adding a customer again with the same id and email
        returns the one stored, unchanged, so a retried sign-up is safe.
        Raises :class:`ValueError` for the same id with another email, and
        :class:`~flask_customer_portal.storage.EmailInUse` for an email
        another customer has (compared case-insensitively). Call inside an
        app context. Needs a store that adds customers (the SQLAlchemy store
        does); raises :class:`TypeError` otherwise."""
        state = self.get_state()
        storage = state.storage
        if not state.capabilities.add_customer:
            raise TypeError(f"{type(storage).__name__} cannot add customers (it has no add_customer)")
        email = customer.email.strip()
        if "@" not in email or email.rpartition("@")[2].lower() == ERASED_EMAIL_DOMAIN:
            raise ValueError(f"customer {customer.id!r} needs an email address, got {customer.email!r}")
        if not customer.id or not customer.id.isprintable() or len(customer.id) > 128:
            raise ValueError(f"a customer id is 1 to 128 printable characters, got {customer.id!r}")
        existing = storage.get_customer(customer.id)
        if existing is not None:
            if existing.email.casefold() == email.casefold():
                return existing
            raise ValueError(f"customer {customer.id!r} exists with another email address")
        if storage.find_customer_by_email(email) is not None:
            raise EmailInUse(email)
        return storage.add_customer(replace(customer, email=email))

    def erase_customer(
        self,
        customer_id: str,
        *,
        force: bool = False,
        actor: str = "merchant",
        details: Mapping[str, str] | None = None,
    ) -> ErasureReport:
        """Erase the personal data of ``customer_id`` (GDPR art. 17) and
        keep what issued invoices must keep. See :doc:`/privacy` for what
        is removed, what is kept and why.

        The customer can no longer sign in: their sessions and links are
        deleted, their email is replaced by a placeholder that nothing is
        delivered to (the address is free for a new account), and
        :meth:`create_session` treats them as unknown. The audit log gets
        ``customer.erased`` (with ``actor`` and ``details``, never the
        erased data) and :data:`~flask_customer_portal.signals.customer_erased`
        is sent, so that you can erase your own copies too.

        Refuses with :class:`~flask_customer_portal.erasure.ErasureRefused`
        while the customer has a subscription that is not cancelled,
        unless ``force`` is true: then those subscriptions are cancelled
        now, first (``subscription.cancelled`` with reason ``erasure``).
        Raises :class:`~flask_customer_portal.CustomerNotFound` for an
        unknown id. Returns an
        :class:`~flask_customer_portal.storage.ErasureReport`. Call inside an
        app context."""
        state = self.get_state()
        return erasure.erase_customer(state, customer_id, force=force, actor=actor, details=details)

    def get_state(self, app: Flask | None = None) -> PortalState:
        """The portal's :class:`PortalState` for ``app`` (default: the
        current app). Raises :class:`RuntimeError` if this portal is not
        registered on it."""
        app = app_object(app)
        if app.extensions.get(EXTENSION_KEY) is not self:
            raise RuntimeError(
                "This CustomerPortal is not registered on this app; call portal.init_app(app) first."
            )
        return get_state(app)

    def __repr__(self) -> str:
        return f"<CustomerPortal storage={self.storage!r} payments={self.payments!r}>"
