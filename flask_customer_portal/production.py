"""What production needs: a payment provider whose credentials match the
portal's mode and a money path that is locked across processes (both
checked at start-up), and the checklist that ``flask portal check`` prints.

Nothing here prints or logs a secret: keys are judged, never quoted.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask
from sqlalchemy import UniqueConstraint, inspect

from .capabilities import capabilities_of, provider_capabilities_of
from .clock import utcnow
from .config import PortalConfig, secret_key_weakness
from .contrib.composite import CompositeStorage
from .contrib.sqla import SQLAlchemyStorage, metadata, sql_store_of
from .errors import ConfigurationError
from .mail import LogMailer, MemoryMailer, SMTPMailer
from .migrations import UPGRADE_COMMAND, schema_status
from .outbox.sender import outbox_of

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Engine

    from .state import PortalState

__all__ = [
    "CheckResult",
    "CheckStatus",
    "check_money_lock",
    "check_provider_mode",
    "money_lock_problem",
    "production_checklist",
    "schema_problems",
]

logger = logging.getLogger("flask_customer_portal")


def check_provider_mode(config: PortalConfig, payments: object) -> None:
    """Refuse a payment provider whose credentials do not match the portal's
    mode: test credentials in live mode, and live credentials (real money)
    in test mode, where the portal shows test banners and test cards.

    The provider says which it has with its ``is_test`` attribute (part of
    :class:`~flask_customer_portal.payments.PaymentProvider`). A provider may
    also name the setting that decided it in ``mode_setting`` (e.g.
    ``"STRIPE_SECRET_KEY"``); the :class:`ConfigurationError` then names that
    setting, else ``CUSTOMER_PORTAL_MODE``.
    """
    is_test = getattr(payments, "is_test", None)
    if not isinstance(is_test, bool):
        raise ConfigurationError(
            "payments",
            "the payment provider must say which credentials it has: is_test = True for the "
            "payment company's test environment (no real money), False for live credentials",
        )
    setting = getattr(payments, "mode_setting", None)
    if not isinstance(setting, str) or not setting:
        setting = None
    if config.is_live and is_test:
        if setting is not None:
            raise ConfigurationError(
                setting,
                'is a test credential, but CUSTOMER_PORTAL_MODE is "live": use the live one, '
                'or set CUSTOMER_PORTAL_MODE = "test"',
            )
        raise ConfigurationError(
            "CUSTOMER_PORTAL_MODE",
            "live mode cannot use a test payment provider (payments.is_test is true); pass a real "
            'provider as CustomerPortal(payments=...) or set CUSTOMER_PORTAL_MODE = "test"',
        )
    if not config.is_live and not is_test:
        if setting is not None:
            raise ConfigurationError(
                setting,
                'is a live credential (real money), but CUSTOMER_PORTAL_MODE is "test": use the '
                'test one, or set CUSTOMER_PORTAL_MODE = "live"',
            )
        raise ConfigurationError(
            "CUSTOMER_PORTAL_MODE",
            "test mode cannot use a payment provider with live credentials (payments.is_test is "
            'false): give it test credentials, or set CUSTOMER_PORTAL_MODE = "live"',
        )


def money_lock_problem(storage: object, payments: object) -> str | None:
    """Why money could move at a payment company without a lock that holds
    across processes, or ``None``.

    Such money moves when the provider bills subscriptions itself (Dodo
    Payments: ``payments.bills_subscriptions``), or when a composite store
    runs the money path against its billing back end (Stripe). Either runs
    under the store's
    :meth:`~flask_customer_portal.storage.ProviderLockStore.lock_provider_subscription`,
    a lock in the merchant's database; a store without it (a composite's
    local store included: ``locks_across_processes``) would leave
    exactly-once to the provider's idempotency alone. A store whose own
    ``lock_subscription`` holds the money path (the SQLAlchemy store) needs
    nothing more."""
    features = capabilities_of(storage)
    bills_itself = provider_capabilities_of(payments).bills_subscriptions
    # A composite's money path runs at its billing back end; a store whose
    # own lock_subscription holds the money path needs no other lock.
    at_provider = bills_itself or (isinstance(storage, CompositeStorage) and features.charge)
    if not at_provider or features.provider_lock:
        return None
    where = "its local store" if isinstance(storage, CompositeStorage) else "it"
    return (
        f"{type(storage).__name__} would move money at the payment company without a lock that holds "
        f"across processes: {where} has no lock_provider_subscription (the SQLAlchemy store has one; "
        "use it as the local store)"
    )


def check_money_lock(config: PortalConfig, storage: object, payments: object) -> None:
    """Refuse, in live mode, a store whose money path at a payment company
    would run without a lock across processes (:func:`money_lock_problem`),
    with a :class:`ConfigurationError` naming ``storage``. In test mode it is
    logged; the money path is refused when it is tried, never run unlocked."""
    problem = money_lock_problem(storage, payments)
    if problem is None:
        return
    if config.is_live:
        raise ConfigurationError("storage", problem)
    logger.warning("Customer portal: %s; reactivations and invoice payments will be refused", problem)


# -- flask portal check --------------------------------------------------------------------


class CheckStatus(str, enum.Enum):
    OK = "OK"
    WARN = "WARN"
    """Advisory: worth a look, not a failure."""
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the production checklist."""

    status: CheckStatus
    item: str
    detail: str

    def __str__(self) -> str:
        return f"{self.status.value:<4}  {self.item}: {self.detail}"


_OK, _WARN, _FAIL = CheckStatus.OK, CheckStatus.WARN, CheckStatus.FAIL
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def production_checklist(app: Flask, state: PortalState) -> list[CheckResult]:
    """Every item production needs, judged against live mode's rules
    whatever the configured mode. Call inside an app context (the database
    schema is read)."""
    return [
        _mode(state.config),
        *_secrets(app.config),
        _base_url(state.config),
        _mail(state.mailer),
        _mail_outbox(state),
        _rate_limit_storage(state.config),
        *_cookies(app),
        _schema(app, state),
        _provider(state),
        _money_lock(state),
    ]


def _mode(config: PortalConfig) -> CheckResult:
    if config.is_live:
        return CheckResult(_OK, "CUSTOMER_PORTAL_MODE", "live")
    return CheckResult(
        _FAIL, "CUSTOMER_PORTAL_MODE", '"test": no real money moves and every page says so; set "live"'
    )


def _secrets(config: Any) -> Iterator[CheckResult]:
    weakness = secret_key_weakness(config.get("SECRET_KEY"))
    if weakness is None:
        yield CheckResult(_OK, "SECRET_KEY", "strong (random-looking, at least 32 characters)")
    else:
        yield CheckResult(_FAIL, "SECRET_KEY", f"too weak for live mode: {weakness}")
    fallbacks = config.get("SECRET_KEY_FALLBACKS") or []
    if isinstance(fallbacks, (str, bytes)):
        yield CheckResult(_FAIL, "SECRET_KEY_FALLBACKS", "must be a list of keys, not one string")
        return
    if not fallbacks:
        yield CheckResult(_OK, "SECRET_KEY_FALLBACKS", "none")
    for index, fallback in enumerate(fallbacks):
        item = f"SECRET_KEY_FALLBACKS[{index}]"
        weakness = secret_key_weakness(fallback)
        if weakness is None:
            yield CheckResult(_OK, item, "strong; remove it once the longest link lifetime has passed")
        else:
            yield CheckResult(_FAIL, item, f"too weak for live mode: {weakness}")


def _base_url(config: PortalConfig) -> CheckResult:
    if config.base_url.startswith("https://"):
        return CheckResult(_OK, "CUSTOMER_PORTAL_BASE_URL", config.base_url)
    detail = f"{config.base_url} is not https://: links and cookies travel in clear"
    return CheckResult(_FAIL, "CUSTOMER_PORTAL_BASE_URL", detail)


def _mail(mailer: object) -> CheckResult:
    item = "mail transport"
    if isinstance(mailer, LogMailer):
        detail = "the log: emails, sign-in links included, are written to the log; set MAIL_SERVER"
        return CheckResult(_FAIL, item, detail)
    if isinstance(mailer, MemoryMailer):
        return CheckResult(_FAIL, item, "MemoryMailer keeps emails in memory (tests); nobody receives them")
    if isinstance(mailer, SMTPMailer):
        where = f"SMTP {mailer.host}:{mailer.port}"
        if mailer.use_ssl:
            return CheckResult(_OK, item, f"{where} over TLS")
        if mailer.use_tls:
            return CheckResult(_OK, item, f"{where} with STARTTLS")
        if mailer.host.lower() in _LOCAL_HOSTS:
            return CheckResult(_OK, item, f"{where}, a relay on this machine")
        return CheckResult(
            _WARN, item, f"{where} without TLS: sign-in links cross the network in clear (MAIL_USE_TLS)"
        )
    return CheckResult(_OK, item, f"{type(mailer).__name__} (your own transport)")


def _mail_outbox(state: PortalState) -> CheckResult:
    item = "mail outbox"
    outbox = outbox_of(state)
    if outbox is None:
        detail = "the store has none: each email is sent once, from the process that made it, never retried"
        return CheckResult(_WARN, item, detail)
    settings = state.config.mail
    if state.hooks.mail_dispatcher or settings.dispatcher:
        how = "handed to your dispatcher"
    elif settings.in_process:
        how = "delivered by the process that wrote it"
    else:
        how = "delivered by `flask portal worker` or `send-mail` only"
    now = utcnow()
    try:
        counts = outbox.mail_counts(now)
    except Exception as exc:  # the table is missing: the schema check says more
        return CheckResult(_WARN, item, f"cannot be read ({type(exc).__name__})")
    summary = f"{counts.pending} pending, {counts.failed} failed; each email {how}"
    if counts.oldest_due_at is not None and (now - counts.oldest_due_at).total_seconds() > 300:
        waiting = (now - counts.oldest_due_at).total_seconds()
        detail = f"{summary}; one has waited {waiting:.0f} s: is `flask portal worker` running?"
        return CheckResult(_WARN, item, detail)
    if counts.failed:
        return CheckResult(_WARN, item, f"{summary}: see `flask portal mail-status`")
    return CheckResult(_OK, item, summary)


def _rate_limit_storage(config: PortalConfig) -> CheckResult:
    item = "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI"
    scheme = config.rate_limit_storage_uri.partition("://")[0].lower()  # never the host or password
    if scheme != "memory":
        return CheckResult(_OK, item, f"{scheme}://, shared by every process")
    if config.single_process:
        detail = "memory://, and CUSTOMER_PORTAL_SINGLE_PROCESS says the app runs as one process"
        return CheckResult(_OK, item, detail)
    return CheckResult(
        _FAIL,
        item,
        "memory:// counts per process: with several workers every limit is multiplied by their number; "
        "use a shared store (redis://…), or set CUSTOMER_PORTAL_SINGLE_PROCESS = True if the app runs as "
        "one process",
    )


def _cookie(config: Any, prefix: str, item: str, *, samesite: bool) -> CheckResult:
    missing = []
    if not config.get(f"{prefix}_SECURE"):
        missing.append(f"{prefix}_SECURE = True")
    if not config.get(f"{prefix}_HTTPONLY", True):
        missing.append(f"{prefix}_HTTPONLY = True")
    same_site = config.get(f"{prefix}_SAMESITE")
    if samesite and str(same_site).capitalize() not in ("Lax", "Strict"):
        missing.append(f'{prefix}_SAMESITE = "Lax"')
    if missing:
        return CheckResult(_FAIL, item, "needs " + ", ".join(missing))
    flags = "Secure, HttpOnly" + (f", SameSite={str(same_site).capitalize()}" if samesite else "")
    return CheckResult(_OK, item, flags)


def _cookies(app: Flask) -> Iterator[CheckResult]:
    yield _cookie(app.config, "SESSION_COOKIE", "session cookie", samesite=True)
    if getattr(app, "login_manager", None) is not None:  # Flask-Login: its remember-me cookie
        yield _cookie(app.config, "REMEMBER_COOKIE", "remember-me cookie (Flask-Login)", samesite=False)


def schema_problems(engine: Engine, metadata: MetaData) -> list[str]:
    """What the database lacks of ``metadata``: tables, columns, unique
    constraints (compared by their columns) and indexes (by name). Extra
    tables and columns are the host's business and not reported."""
    inspector = inspect(engine)
    problems: list[str] = []
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name, schema=table.schema):
            problems.append(f"table {table.name} is missing")
            continue
        present = {column["name"] for column in inspector.get_columns(table.name, schema=table.schema)}
        missing = [column.name for column in table.columns if column.name not in present]
        if missing:
            problems.append(f"{table.name} lacks the columns {', '.join(missing)}")
        indexes = inspector.get_indexes(table.name, schema=table.schema)
        unique_sets = {
            frozenset(name for name in found["column_names"] if name)
            for found in inspector.get_unique_constraints(table.name, schema=table.schema)
        } | {
            frozenset(name for name in found["column_names"] if name) for found in indexes if found["unique"]
        }
        for constraint in table.constraints:
            if isinstance(constraint, UniqueConstraint):
                columns = frozenset(column.name for column in constraint.columns)
                if columns not in unique_sets:
                    names = ", ".join(sorted(columns))
                    problems.append(f"{table.name} lacks the unique constraint on {names}")
        index_names = {found["name"] for found in indexes}
        problems.extend(
            f"{table.name} lacks the index {index.name}"
            for index in table.indexes
            if index.name not in index_names
        )
    return problems


def _sql_store(state: PortalState) -> SQLAlchemyStorage | None:
    return sql_store_of(state.storage)


def _schema(app: Flask, state: PortalState) -> CheckResult:
    item = "database schema"
    if _sql_store(state) is None:
        return CheckResult(
            _WARN, item, f"not checked: {type(state.storage).__name__} is not the SQLAlchemy store"
        )

    engine = app.extensions["sqlalchemy"].engine
    try:
        problems = schema_problems(engine, metadata)
        status = schema_status(engine)
    except Exception as exc:  # any driver error: say so, without the URL or the query
        return CheckResult(_FAIL, item, f"could not be read ({type(exc).__name__})")
    upgrade = f"run `{UPGRADE_COMMAND}`"
    if len(problems) == len(metadata.tables) and all(p.startswith("table ") for p in problems):
        return CheckResult(_FAIL, item, f"none of the {len(problems)} portal tables exist: {upgrade}")
    if problems:
        shown = "; ".join(problems[:5]) + ("; …" if len(problems) > 5 else "")
        if status.is_current:
            return CheckResult(_FAIL, item, f"revision {status} is recorded, but {shown}")
        return CheckResult(_FAIL, item, f"not current: revision {status}; {shown}: {upgrade}")
    if status.is_ahead:
        return CheckResult(_WARN, item, f"revision {status}")
    if status.tables_current and not status.is_current:
        detail = f"all {len(metadata.tables)} portal tables are current, but no revision is recorded"
        return CheckResult(_WARN, item, f"{detail}: {upgrade}")
    if not status.is_current:
        return CheckResult(_FAIL, item, f"revision {status}: {upgrade}")
    return CheckResult(_OK, item, f"all {len(metadata.tables)} portal tables are current (revision {status})")


def _provider(state: PortalState) -> CheckResult:
    item = "payment provider"
    payments = state.payments
    name = type(payments).__name__
    setting = getattr(payments, "mode_setting", None)
    source = f" ({setting})" if isinstance(setting, str) and setting else ""
    if payments.is_test is False:
        return CheckResult(_OK, item, f"{name}: live credentials{source}")
    return CheckResult(_FAIL, item, f"{name}: test credentials{source}, no real money moves")


def _money_lock(state: PortalState) -> CheckResult:
    item = "money lock"
    problem = money_lock_problem(state.storage, state.payments)
    if problem is not None:
        return CheckResult(_FAIL, item, problem)
    return CheckResult(_OK, item, "nothing is charged at a payment company without a lock across processes")
