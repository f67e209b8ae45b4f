"""Configuration: every ``CUSTOMER_PORTAL_*`` key, its default, and the
checks that run once when the portal is registered on an app."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask_babel import LazyString
from limits import parse as parse_rate_limit

from .branding import BRAND_DEFAULTS, Brand, load_brand
from .catalogues import shipped_languages
from .errors import ConfigurationError
from .mail_settings import MAIL_DEFAULTS, MailSettings, load_mail_settings

__all__ = ["CANCEL_AT_PERIOD_END_MODE", "CANCEL_IMMEDIATELY_MODE", "DEFAULTS", "PortalConfig", "load_config"]

#: Every configuration key with its default. ``None`` means "required" for
#: BUSINESS_ID and BASE_URL, and "derived" for the others (see the docs).
DEFAULTS: dict[str, Any] = {
    "CUSTOMER_PORTAL_MODE": "test",
    "CUSTOMER_PORTAL_BUSINESS_ID": None,
    "CUSTOMER_PORTAL_BASE_URL": None,
    "CUSTOMER_PORTAL_URL_PREFIX": "/portal",
    "CUSTOMER_PORTAL_BLUEPRINT_NAME": "portal",
    "CUSTOMER_PORTAL_SET_HOST_DEFAULTS": True,
    "CUSTOMER_PORTAL_MERCHANT_NAME": None,
    "CUSTOMER_PORTAL_MERCHANT_ADDRESS": "",
    "CUSTOMER_PORTAL_SUPPORT_EMAIL": None,
    "CUSTOMER_PORTAL_SESSION_LINK_MAX_AGE": 24 * 3600,
    "CUSTOMER_PORTAL_LOGIN_LINK_MAX_AGE": 15 * 60,
    "CUSTOMER_PORTAL_EMAIL_CHANGE_MAX_AGE": 24 * 3600,
    "CUSTOMER_PORTAL_SESSION_IDLE_TIMEOUT": 30 * 60,
    "CUSTOMER_PORTAL_SESSION_MAX_AGE": 12 * 3600,
    "CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS": None,
    "CUSTOMER_PORTAL_RETURN_URL": None,
    "CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_ADDRESS": "5 per hour",
    "CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_CLIENT": "30 per hour",
    "CUSTOMER_PORTAL_CARD_ATTACH_LIMIT": "5 per hour",
    "CUSTOMER_PORTAL_MAX_SAVED_CARDS": 10,
    "CUSTOMER_PORTAL_EXPORT_RATE_LIMIT": "10 per hour",
    "CUSTOMER_PORTAL_PROMOTION_CODE_RATE_LIMIT": "10 per hour",
    "CUSTOMER_PORTAL_EXPORT_MAX_INVOICES": 500,
    "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI": "memory://",
    "CUSTOMER_PORTAL_SINGLE_PROCESS": False,
    "CUSTOMER_PORTAL_TRUSTED_PROXIES": 0,
    # None: English and every language the package ships a catalogue for.
    "CUSTOMER_PORTAL_LANGUAGES": None,
    "CUSTOMER_PORTAL_TRANSLATION_DIRECTORIES": (),
    # None: the Debian locations of CJK fonts (pdf/fallback_fonts.py).
    "CUSTOMER_PORTAL_PDF_FALLBACK_FONTS": None,
    "CUSTOMER_PORTAL_DEFAULT_LOCALE": "en",
    "CUSTOMER_PORTAL_DEFAULT_TIMEZONE": "UTC",
    "CUSTOMER_PORTAL_CANCEL_AT_PERIOD_END": True,
    "CUSTOMER_PORTAL_CANCEL_MODES": None,
    "CUSTOMER_PORTAL_REFUND_POLICY": None,
    "CUSTOMER_PORTAL_RECEIPTS": True,
    "CUSTOMER_PORTAL_RECEIPT_PDF": True,
    "CUSTOMER_PORTAL_PROVIDER_RECEIPTS": True,
    "CUSTOMER_PORTAL_INVOICE_EMAIL_RATE_LIMIT": "5 per hour",
    "CUSTOMER_PORTAL_INVOICES_PER_PAGE": 25,
    "CUSTOMER_PORTAL_ACTIVITY_PER_PAGE": 25,
    "CUSTOMER_PORTAL_PHONE_DEFAULT_REGION": None,
    "CUSTOMER_PORTAL_CANCELLATION_REASONS": None,
    "CUSTOMER_PORTAL_ALLOW_PAUSE": False,
    "CUSTOMER_PORTAL_MAX_PAUSE_MONTHS": 3,
    "CUSTOMER_PORTAL_PLAN_CHANGE_UPGRADES": "now",
    "CUSTOMER_PORTAL_PLAN_CHANGE_DOWNGRADES": "period_end",
    "CUSTOMER_PORTAL_REDACT_ACCESS_LOGS": True,
    **MAIL_DEFAULTS,
    "CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS": 30,
    **BRAND_DEFAULTS,
}

_WEAK_SECRETS = frozenset({"dev", "secret", "changeme", "change-me", "development", "test"})
_MIN_LIVE_SECRET_LENGTH = 32
_BUSINESS_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BLUEPRINT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class PortalConfig:
    """The portal's configuration for one app, read and checked once."""

    mode: str
    business_id: str
    base_url: str
    url_prefix: str
    merchant_name: str
    merchant_address: str
    support_email: str | None
    session_link_max_age: int
    login_link_max_age: int
    email_change_max_age: int
    session_idle_timeout: int
    session_max_age: int
    return_url_allowed_hosts: frozenset[str]
    login_rate_limit_per_address: str
    login_rate_limit_per_client: str
    card_attach_limit: str
    """New cards one customer may hand to the provider, e.g. ``"5 per hour"``."""
    max_saved_cards: int
    """Saved cards one customer may keep; adding one more is refused."""
    export_rate_limit: str
    """Downloads of each export one customer may make, e.g. ``"10 per hour"``."""
    export_max_invoices: int
    """The most invoices one ZIP of invoice PDFs holds; above it, no ZIP."""
    rate_limit_storage_uri: str
    trusted_proxies: int
    languages: tuple[str, ...]
    default_locale: str
    default_timezone: str
    cancel_at_period_end: bool
    """Whether a cancellation ends at the period's end when the customer
    does not choose (the mode offered first)."""
    invoices_per_page: int
    phone_default_region: str | None
    translation_directories: tuple[str, ...] = ()
    """The merchant's own ``customer_portal`` catalogues (more languages,
    other wording); searched after the portal's, so theirs win."""
    pdf_fallback_fonts: tuple[str, ...] | None = None
    """TrueType files for the scripts DejaVu Sans lacks; ``None``: the Debian ones."""
    cancel_modes: tuple[str, ...] = ("period_end",)
    """How a customer may cancel: ``"period_end"``, ``"immediately"`` or
    both (the customer then chooses), in the order offered."""
    refund_policy: str | tuple[tuple[str, str], ...] | None = None
    """What the merchant refunds when a subscription ends now: one text, or
    ``(locale, text)`` pairs; ``None`` when none was given."""
    receipts: bool = True
    """Whether a receipt is emailed after every payment."""
    receipt_pdf: bool = True
    """Whether receipts carry the invoice's PDF."""
    provider_receipts: bool = True
    """Whether a payment the payment company takes itself (learnt by
    webhook) gets the portal's receipt too."""
    invoice_email_rate_limit: str = "5 per hour"
    """Copies of invoices one customer may have emailed to them."""
    cancellation_reasons: tuple[tuple[str, Any], ...] | None = None
    """The merchant's ``(code, label)`` reasons; ``None``: the portal's own."""
    allow_pause: bool = False
    max_pause_months: int = 3
    activity_per_page: int = 25
    """Events per page of the customer's activity history."""
    plan_change_upgrades: str = "now"
    """``"now"`` (prorated charge) or ``"period_end"``."""
    plan_change_downgrades: str = "period_end"
    """``"now"`` (prorated credit) or ``"period_end"``."""
    single_process: bool = False
    """The merchant runs the app as one process, so ``memory://`` rate
    limits are shared by every request (``flask portal check``)."""
    redact_access_logs: bool = True
    """Whether ``init_app`` puts the link-token filter on the server loggers
    (Werkzeug, gunicorn's access log) and ``app.logger``."""

    promotion_code_rate_limit: str = "10 per hour"
    """Promotion codes one customer may enter, valid or not."""
    stripe_cache_seconds: int = 30
    """How long the Stripe back end reuses a customer's reads across page
    views (0: only within one request)."""

    blueprint_name: str = "portal"
    """The name the portal's blueprint is registered under; its endpoints
    are ``<blueprint_name>.dashboard`` and so on."""
    set_host_defaults: bool = True
    """Whether ``init_app`` may fill in app-wide settings the portal relies
    on that the app left unset (and says so in the log)."""
    mail: MailSettings = field(default_factory=MailSettings)
    """How the mail outbox delivers (the ``CUSTOMER_PORTAL_MAIL_*`` keys)."""
    return_url: str | None = None
    """Where "Back to <merchant>" leads on every page when the link that
    signed the customer in brought no ``return_url`` of its own."""
    brand: Brand = field(default_factory=Brand)
    """Logo, accent colours and colour scheme (the ``CUSTOMER_PORTAL_BRAND_*`` keys)."""

    @property
    def is_live(self) -> bool:
        return self.mode == "live"

    @property
    def portal_url(self) -> str:
        """Absolute URL of the portal's root, from the base URL only."""
        return self.base_url + self.url_prefix

    @property
    def static_login_url(self) -> str:
        """The never-expiring static link customers use to ask for a link."""
        return f"{self.portal_url}/login/{self.business_id}"

    def endpoint(self, name: str) -> str:
        """The full endpoint of the portal's page ``name`` (``"dashboard"``
        → ``"portal.dashboard"`` under the default blueprint name)."""
        return f"{self.blueprint_name}.{name}"


def _positive_int(config: Mapping[str, Any], key: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(key, f"must be a positive number of seconds or items, got {value!r}")
    return value


def _stripe_cache_seconds(config: Mapping[str, Any]) -> int:
    key = "CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS"
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3600:
        raise ConfigurationError(key, f"must be a number of seconds from 0 to 3600, got {value!r}")
    return value


def _rate_limit(config: Mapping[str, Any], key: str) -> str:
    value = config[key]
    try:
        parse_rate_limit(value)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(key, f'must be a rate such as "5 per hour", got {value!r}') from exc
    return str(value)


_REASON_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _cancellation_reasons(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...] | None:
    """``None`` (the portal's reasons) or the merchant's ``(code, label)``
    pairs, from a mapping or a list of pairs; labels are strings or
    ``lazy_gettext`` strings."""
    key = "CUSTOMER_PORTAL_CANCELLATION_REASONS"
    value = config[key]
    if value is None:
        return None
    example = 'e.g. [("too_expensive", "It costs too much"), ("other", "Something else")]'
    pairs = list(value.items()) if isinstance(value, Mapping) else value
    if isinstance(pairs, str | bytes) or not pairs:
        raise ConfigurationError(key, f"must be a non-empty list of (code, label) pairs, {example}")
    reasons: list[tuple[str, Any]] = []
    for pair in pairs:
        if isinstance(pair, str | bytes) or len(pair) != 2:
            raise ConfigurationError(key, f"must be a list of (code, label) pairs, {example}")
        code, label = pair
        if not isinstance(code, str) or not _REASON_CODE_RE.match(code):
            raise ConfigurationError(
                key, f"reason codes are 1-64 lower-case letters, digits, _ and -, got {code!r}"
            )
        if not isinstance(label, str | LazyString) or (isinstance(label, str) and not label.strip()):
            raise ConfigurationError(key, f"the label of {code!r} must be a non-empty string")
        if any(code == known for known, _label in reasons):
            raise ConfigurationError(key, f"reason code {code!r} appears twice")
        reasons.append((code, label))
    return tuple(reasons)


def load_config(config: Mapping[str, Any]) -> PortalConfig:
    """Check the app's configuration and return the portal's view of it.

    Raises :class:`ConfigurationError` naming the first key that is wrong.
    """
    mode = config["CUSTOMER_PORTAL_MODE"]
    if mode not in ("test", "live"):
        raise ConfigurationError("CUSTOMER_PORTAL_MODE", f'must be "test" or "live", got {mode!r}')
    live = mode == "live"

    secret = config.get("SECRET_KEY")
    if not secret:
        raise ConfigurationError(
            "SECRET_KEY",
            "the portal signs its links with the app's SECRET_KEY; set it to a long random "
            "value, e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`",
        )
    if live and secret_key_weakness(secret) is not None:
        raise ConfigurationError(
            "SECRET_KEY",
            f"live mode needs a random secret of at least {_MIN_LIVE_SECRET_LENGTH} characters",
        )
    _check_secret_key_fallbacks(config.get("SECRET_KEY_FALLBACKS"), live=live)

    business_id = config["CUSTOMER_PORTAL_BUSINESS_ID"]
    if not isinstance(business_id, str) or not _BUSINESS_ID_RE.match(business_id):
        raise ConfigurationError(
            "CUSTOMER_PORTAL_BUSINESS_ID",
            'set it to your business id (letters, digits, _ and -), e.g. "biz_demo"; '
            "it names your business in the static login link",
        )

    base_url = config["CUSTOMER_PORTAL_BASE_URL"]
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            "CUSTOMER_PORTAL_BASE_URL",
            'set it to the absolute URL your app is served at, e.g. "https://shop.example.com"; '
            "it is the only source of links in emails (never the request's Host header)",
        )
    if parts.query or parts.fragment:
        raise ConfigurationError("CUSTOMER_PORTAL_BASE_URL", "must not have a query or fragment")
    if live and parts.scheme != "https":
        raise ConfigurationError("CUSTOMER_PORTAL_BASE_URL", "live mode needs an https:// URL")
    base_url = base_url.rstrip("/")

    prefix = config["CUSTOMER_PORTAL_URL_PREFIX"]
    if not isinstance(prefix, str) or (prefix and (not prefix.startswith("/") or prefix.endswith("/"))):
        raise ConfigurationError(
            "CUSTOMER_PORTAL_URL_PREFIX", 'must start with "/" and not end with one, e.g. "/portal"'
        )

    allowed = config["CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS"]
    if allowed is None:
        allowed_hosts = frozenset({parts.netloc.lower()})
    elif isinstance(allowed, str) or not all(isinstance(h, str) for h in allowed):
        raise ConfigurationError(
            "CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS",
            'must be a list of host names such as ["shop.example.com"]',
        )
    else:
        allowed_hosts = frozenset(h.lower() for h in allowed)

    raw_languages = config["CUSTOMER_PORTAL_LANGUAGES"]
    if raw_languages is None:
        raw_languages = shipped_languages()
    if isinstance(raw_languages, str) or not all(
        isinstance(code, str) and re.fullmatch(r"[a-z]{2,3}(_[A-Z][a-z]{3})?(_([A-Z]{2}|[0-9]{3}))?", code)
        for code in raw_languages
    ):
        raise ConfigurationError(
            "CUSTOMER_PORTAL_LANGUAGES",
            'must be a list of language codes such as ["en", "id", "pt_BR", "zh_Hans"]',
        )
    languages = tuple(raw_languages)
    default_locale = config["CUSTOMER_PORTAL_DEFAULT_LOCALE"]
    if default_locale not in languages:
        raise ConfigurationError(
            "CUSTOMER_PORTAL_DEFAULT_LOCALE", f"must be one of CUSTOMER_PORTAL_LANGUAGES {languages!r}"
        )

    default_tz = config["CUSTOMER_PORTAL_DEFAULT_TIMEZONE"]
    try:
        ZoneInfo(default_tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            "CUSTOMER_PORTAL_DEFAULT_TIMEZONE", f'must be an IANA time zone such as "UTC", got {default_tz!r}'
        ) from exc

    trusted = config["CUSTOMER_PORTAL_TRUSTED_PROXIES"]
    if isinstance(trusted, bool) or not isinstance(trusted, int) or trusted < 0:
        raise ConfigurationError(
            "CUSTOMER_PORTAL_TRUSTED_PROXIES",
            "must be the number of reverse proxies in front of the app (0 or more)",
        )

    region = config["CUSTOMER_PORTAL_PHONE_DEFAULT_REGION"]
    if region is not None and not (isinstance(region, str) and re.fullmatch(r"[A-Z]{2}", region)):
        raise ConfigurationError(
            "CUSTOMER_PORTAL_PHONE_DEFAULT_REGION", 'must be a two-letter country code such as "ID", or None'
        )

    cancel_modes = _cancel_modes(config)
    return PortalConfig(
        mode=mode,
        business_id=business_id,
        base_url=base_url,
        url_prefix=prefix,
        merchant_name=config["CUSTOMER_PORTAL_MERCHANT_NAME"] or business_id,
        merchant_address=config["CUSTOMER_PORTAL_MERCHANT_ADDRESS"] or "",
        support_email=config["CUSTOMER_PORTAL_SUPPORT_EMAIL"],
        session_link_max_age=_positive_int(config, "CUSTOMER_PORTAL_SESSION_LINK_MAX_AGE"),
        login_link_max_age=_positive_int(config, "CUSTOMER_PORTAL_LOGIN_LINK_MAX_AGE"),
        email_change_max_age=_positive_int(config, "CUSTOMER_PORTAL_EMAIL_CHANGE_MAX_AGE"),
        session_idle_timeout=_positive_int(config, "CUSTOMER_PORTAL_SESSION_IDLE_TIMEOUT"),
        session_max_age=_positive_int(config, "CUSTOMER_PORTAL_SESSION_MAX_AGE"),
        return_url_allowed_hosts=allowed_hosts,
        login_rate_limit_per_address=_rate_limit(config, "CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_ADDRESS"),
        login_rate_limit_per_client=_rate_limit(config, "CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_CLIENT"),
        card_attach_limit=_rate_limit(config, "CUSTOMER_PORTAL_CARD_ATTACH_LIMIT"),
        max_saved_cards=_positive_int(config, "CUSTOMER_PORTAL_MAX_SAVED_CARDS"),
        export_rate_limit=_rate_limit(config, "CUSTOMER_PORTAL_EXPORT_RATE_LIMIT"),
        promotion_code_rate_limit=_rate_limit(config, "CUSTOMER_PORTAL_PROMOTION_CODE_RATE_LIMIT"),
        export_max_invoices=_positive_int(config, "CUSTOMER_PORTAL_EXPORT_MAX_INVOICES"),
        rate_limit_storage_uri=_rate_limit_storage_uri(config, live=live),
        trusted_proxies=trusted,
        languages=languages,
        translation_directories=_translation_directories(config),
        pdf_fallback_fonts=_pdf_fallback_fonts(config),
        default_locale=default_locale,
        default_timezone=default_tz,
        cancel_at_period_end=cancel_modes[0] == CANCEL_AT_PERIOD_END_MODE,
        cancel_modes=cancel_modes,
        refund_policy=_refund_policy(config, cancel_modes, default_locale),
        receipts=_flag(config, "CUSTOMER_PORTAL_RECEIPTS"),
        receipt_pdf=_flag(config, "CUSTOMER_PORTAL_RECEIPT_PDF"),
        provider_receipts=_flag(config, "CUSTOMER_PORTAL_PROVIDER_RECEIPTS"),
        invoice_email_rate_limit=_rate_limit(config, "CUSTOMER_PORTAL_INVOICE_EMAIL_RATE_LIMIT"),
        invoices_per_page=_positive_int(config, "CUSTOMER_PORTAL_INVOICES_PER_PAGE"),
        activity_per_page=_positive_int(config, "CUSTOMER_PORTAL_ACTIVITY_PER_PAGE"),
        phone_default_region=region,
        cancellation_reasons=_cancellation_reasons(config),
        allow_pause=bool(config["CUSTOMER_PORTAL_ALLOW_PAUSE"]),
        max_pause_months=_max_pause_months(config),
        plan_change_upgrades=_plan_change_timing(config, "CUSTOMER_PORTAL_PLAN_CHANGE_UPGRADES"),
        plan_change_downgrades=_plan_change_timing(config, "CUSTOMER_PORTAL_PLAN_CHANGE_DOWNGRADES"),
        single_process=_flag(config, "CUSTOMER_PORTAL_SINGLE_PROCESS"),
        redact_access_logs=_flag(config, "CUSTOMER_PORTAL_REDACT_ACCESS_LOGS"),
        blueprint_name=_blueprint_name(config),
        set_host_defaults=_flag(config, "CUSTOMER_PORTAL_SET_HOST_DEFAULTS"),
        mail=load_mail_settings(config),
        stripe_cache_seconds=_stripe_cache_seconds(config),
        return_url=_return_url(config, allowed_hosts, live=live),
        brand=load_brand(config),
    )


def _return_url(config: Mapping[str, Any], allowed_hosts: frozenset[str], *, live: bool) -> str | None:
    """The merchant's own page for the back link, held to the rules a
    link's ``return_url`` is held to, so the portal never points a customer
    at a host the merchant did not allow."""
    key = "CUSTOMER_PORTAL_RETURN_URL"
    url = config.get(key)
    if url is None or url == "":
        return None
    if not isinstance(url, str) or len(url) > 2000 or any(ord(c) < 33 for c in url):
        raise ConfigurationError(key, 'must be an absolute URL such as "https://shop.example.com/account"')
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(key, 'must be an absolute URL such as "https://shop.example.com/account"')
    if live and parts.scheme != "https":
        raise ConfigurationError(key, "live mode needs an https:// URL")
    if parts.username or parts.password or parts.netloc.lower() not in allowed_hosts:
        raise ConfigurationError(
            key,
            f"host {parts.netloc!r} is not in CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS "
            "(or the base URL's host)",
        )
    return url


def _blueprint_name(config: Mapping[str, Any]) -> str:
    key = "CUSTOMER_PORTAL_BLUEPRINT_NAME"
    value = config[key]
    if not isinstance(value, str) or not _BLUEPRINT_NAME_RE.match(value):
        raise ConfigurationError(
            key,
            "must be a blueprint name: letters, digits and _, not starting with a digit, at most 64 "
            f'(e.g. "customer_portal" when the app has a "portal" blueprint of its own), got {value!r}',
        )
    return value


def secret_key_weakness(secret: object) -> str | None:
    """Why ``secret`` is too weak to sign a live portal's links and cookies,
    or ``None``: the rule ``SECRET_KEY`` and every key in
    ``SECRET_KEY_FALLBACKS`` must meet in live mode. Never quotes the key."""
    if isinstance(secret, bytes):
        length, text = len(secret), secret.decode("utf-8", "replace")
    elif isinstance(secret, str):
        length, text = len(secret), secret
    else:
        return "it is not a string"
    if length < _MIN_LIVE_SECRET_LENGTH:
        return f"it is shorter than {_MIN_LIVE_SECRET_LENGTH} characters"
    if text.strip().lower() in _WEAK_SECRETS:
        return "it is a well-known placeholder"
    return None


def _check_secret_key_fallbacks(fallbacks: object, *, live: bool) -> None:
    """Every old key still accepted is as strong as ``SECRET_KEY`` must be:
    a cookie or link signed with a weak fallback opens the portal as well as
    one signed with the current key. Errors name the entry by its index."""
    key = "SECRET_KEY_FALLBACKS"
    if fallbacks is None:
        return
    if isinstance(fallbacks, (str, bytes)) or not isinstance(fallbacks, (list, tuple)):
        raise ConfigurationError(
            key,
            'must be a list of older secret keys, e.g. ["<the previous SECRET_KEY>"] '
            "(a single string would be read as one key per character)",
        )
    for index, fallback in enumerate(fallbacks):
        if not isinstance(fallback, (str, bytes)) or not fallback:
            raise ConfigurationError(key, f"entry {index} (counting from 0) must be a non-empty string")
        weakness = secret_key_weakness(fallback) if live else None
        if weakness is not None:
            raise ConfigurationError(
                key,
                f"entry {index} (counting from 0) is too weak for live mode ({weakness}); every key "
                f"that is still accepted needs the strength of SECRET_KEY: a random secret of at least "
                f"{_MIN_LIVE_SECRET_LENGTH} characters. Remove it, or replace it if it ever signed "
                "live links",
            )


def _rate_limit_storage_uri(config: Mapping[str, Any], *, live: bool) -> str:
    """The ``limits`` storage URI. ``memory://`` counts in each process, so
    live mode takes it only from an app that says it runs as one."""
    key = "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI"
    value = config[key]
    if not isinstance(value, str) or "://" not in value:
        # Not echoed: a mistyped URI may still hold a password.
        raise ConfigurationError(
            key, 'must be a storage URI with a scheme, such as "redis://localhost:6379/0"'
        )
    scheme = value.partition("://")[0].lower()
    if live and scheme == "memory" and not _flag(config, "CUSTOMER_PORTAL_SINGLE_PROCESS"):
        raise ConfigurationError(
            key,
            "memory:// counts in each process: under several workers or hosts every limit is multiplied "
            'by their number. Use a shared store, e.g. "redis://redis.internal:6379/0" (pip install '
            "'flask-customer-portal[redis]'), or set CUSTOMER_PORTAL_SINGLE_PROCESS = True if the app runs "
            "as one process",
        )
    return value


#: The values of ``CUSTOMER_PORTAL_CANCEL_MODES``.
CANCEL_AT_PERIOD_END_MODE = "period_end"
CANCEL_IMMEDIATELY_MODE = "immediately"
_CANCEL_MODES = (CANCEL_AT_PERIOD_END_MODE, CANCEL_IMMEDIATELY_MODE)


def _cancel_modes(config: Mapping[str, Any]) -> tuple[str, ...]:
    """``CUSTOMER_PORTAL_CANCEL_MODES``, or, unset, the one mode
    ``CUSTOMER_PORTAL_CANCEL_AT_PERIOD_END`` names. Set, it decides, and
    ``CANCEL_AT_PERIOD_END`` only says which of two modes is offered first;
    ``CANCEL_AT_PERIOD_END = False`` with modes that do not include
    ``"immediately"`` contradicts it and is refused."""
    at_period_end = _flag(config, "CUSTOMER_PORTAL_CANCEL_AT_PERIOD_END")
    key = "CUSTOMER_PORTAL_CANCEL_MODES"
    value = config.get(key)
    if value is None:
        return (CANCEL_AT_PERIOD_END_MODE,) if at_period_end else (CANCEL_IMMEDIATELY_MODE,)
    example = '("period_end",), ("immediately",) or ("period_end", "immediately")'
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise ConfigurationError(key, f"must be a non-empty list of modes, such as {example}; got {value!r}")
    modes = tuple(value)
    for mode in modes:
        if mode not in _CANCEL_MODES:
            raise ConfigurationError(key, f"unknown mode {mode!r}: the modes are {example}")
    if len(set(modes)) != len(modes):
        raise ConfigurationError(key, f"names a mode twice: {value!r}")
    if not at_period_end and CANCEL_IMMEDIATELY_MODE not in modes:
        raise ConfigurationError(
            key,
            'does not allow "immediately", but CUSTOMER_PORTAL_CANCEL_AT_PERIOD_END = False asks for it',
        )
    first = CANCEL_AT_PERIOD_END_MODE if at_period_end else CANCEL_IMMEDIATELY_MODE
    return tuple(sorted(modes, key=lambda mode: mode != first))


def _refund_policy(
    config: Mapping[str, Any], modes: tuple[str, ...], default_locale: str
) -> str | tuple[tuple[str, str], ...] | None:
    """``CUSTOMER_PORTAL_REFUND_POLICY``: a text, or a dict of texts by
    language (one for the default language). Required when the customer
    chooses between the modes: what ending now means for their money is
    the merchant's to say."""
    key = "CUSTOMER_PORTAL_REFUND_POLICY"
    value = config.get(key)
    if value is None:
        if len(modes) > 1:
            raise ConfigurationError(
                key,
                "must say what a customer who cancels now gets back, since "
                "CUSTOMER_PORTAL_CANCEL_MODES lets them choose to end at once",
            )
        return None
    if isinstance(value, str):
        if not value.strip():
            raise ConfigurationError(key, "must not be empty")
        return value
    if isinstance(value, Mapping):
        texts = tuple(value.items())
        if not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in texts):
            raise ConfigurationError(key, "must map language codes to non-empty texts")
        if default_locale not in value:
            raise ConfigurationError(key, f"needs a text for the default language {default_locale!r}")
        return texts
    raise ConfigurationError(
        key, f"must be a text or a dict of texts by language, got {type(value).__name__}"
    )


def _flag(config: Mapping[str, Any], key: str) -> bool:
    """``True`` or ``False`` only: a string such as ``"false"`` from an
    environment variable would otherwise count as true."""
    value = config[key]
    if not isinstance(value, bool):
        raise ConfigurationError(key, f"must be True or False, got {value!r}")
    return value


def _plan_change_timing(config: Mapping[str, Any], key: str) -> str:
    value = config[key]
    if value not in ("now", "period_end"):
        raise ConfigurationError(key, f'must be "now" or "period_end", got {value!r}')
    return str(value)


def _translation_directories(config: Mapping[str, Any]) -> tuple[str, ...]:
    value = config["CUSTOMER_PORTAL_TRANSLATION_DIRECTORIES"]
    if isinstance(value, (str, bytes)) or not all(isinstance(d, (str, os.PathLike)) for d in value):
        raise ConfigurationError(
            "CUSTOMER_PORTAL_TRANSLATION_DIRECTORIES",
            'must be a list of directories such as ["translations"] (relative to the app\'s root_path)',
        )
    return tuple(os.fspath(d) for d in value)


def _pdf_fallback_fonts(config: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = config["CUSTOMER_PORTAL_PDF_FALLBACK_FONTS"]
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not all(isinstance(f, (str, os.PathLike)) for f in value):
        raise ConfigurationError(
            "CUSTOMER_PORTAL_PDF_FALLBACK_FONTS",
            'must be a list of TrueType font files such as ["/usr/share/fonts/my-font.ttf"]',
        )
    return tuple(os.fspath(f) for f in value)


def _max_pause_months(config: Mapping[str, Any]) -> int:
    value = config["CUSTOMER_PORTAL_MAX_PAUSE_MONTHS"]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 24:
        raise ConfigurationError(
            "CUSTOMER_PORTAL_MAX_PAUSE_MONTHS", f"must be a number of months from 1 to 24, got {value!r}"
        )
    return value
