"""Translations of the portal's own strings (gettext domain ``customer_portal``).

The portal's catalogues live in the package under its own gettext domain, so
they never mix with the host app's ``messages`` catalogues. Locale selection
for portal pages: the customer's saved language, then the language picked
in this browser (before signing in), then the browser's ``Accept-Language``,
then ``CUSTOMER_PORTAL_DEFAULT_LOCALE``.

A merchant adds a language (or rewords one) with catalogues of their own in
``CUSTOMER_PORTAL_TRANSLATION_DIRECTORIES``, searched after the portal's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from babel import Locale, UnknownLocaleError
from babel.core import get_global
from flask import current_app, has_app_context, has_request_context, request, session
from flask_babel import Domain

from .catalogues import TRANSLATIONS_DIR

if TYPE_CHECKING:
    from .config import PortalConfig
    from .storage import Customer

__all__ = [
    "LANGUAGE_SESSION_KEY",
    "TRANSLATIONS_DIR",
    "domain",
    "gettext",
    "language_name",
    "language_tag",
    "lazy_gettext",
    "match_language",
    "ngettext",
    "select_locale",
    "text_direction",
]


#: The language a visitor picked in this browser, for pages before sign-in
#: (the portal's own key in the Flask session).
LANGUAGE_SESSION_KEY = "_customer_portal_language"


class _PortalDomain(Domain):  # type: ignore[misc]  # flask_babel is untyped
    """The ``customer_portal`` domain: the package's catalogues, then the
    current app's ``CUSTOMER_PORTAL_TRANSLATION_DIRECTORIES``, with one
    cache per set of directories (two apps in one process never mix)."""

    def __init__(self) -> None:
        super().__init__(translation_directories=[str(TRANSLATIONS_DIR)], domain="customer_portal")
        self._caches: dict[tuple[str, ...], dict[Any, Any]] = {}

    @property
    def translation_directories(self) -> list[str]:
        directories = [str(TRANSLATIONS_DIR)]
        if has_app_context():
            portal = current_app.extensions.get("customer_portal")  # the CustomerPortal
            if portal is not None:
                extra: tuple[str, ...] = portal.get_state().config.translation_directories
                directories.extend(os.path.join(current_app.root_path, d) for d in extra)
        return directories

    def get_translations_cache(self, ctx: Any) -> dict[Any, Any]:
        return self._caches.setdefault(tuple(self.translation_directories), {})


#: The portal's gettext domain; its catalogues are ``translations/<lang>/LC_MESSAGES/customer_portal.mo``.
domain = _PortalDomain()


def gettext(string: str, **variables: Any) -> str:
    return str(domain.gettext(string, **variables))


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    return str(domain.ngettext(singular, plural, num, **variables))


def lazy_gettext(string: str, **variables: Any) -> Any:
    return domain.lazy_gettext(string, **variables)


def select_locale(config: PortalConfig, customer: Customer | None) -> str:
    """The language to show ``customer`` (or an anonymous visitor)."""
    if customer is not None and customer.locale:
        language = match_language(customer.locale, config.languages)
        if language:
            return language
    if has_request_context():
        picked = session.get(LANGUAGE_SESSION_KEY)
        if isinstance(picked, str) and picked in config.languages:
            return picked
        for value, quality in request.accept_languages:  # best first
            language = match_language(value, config.languages) if quality > 0 else None
            if language:
                return language
        best = request.accept_languages.best_match(config.languages)  # "*"
        if best:
            return best
    return config.default_locale


def match_language(tag: str, languages: Sequence[str]) -> str | None:
    """The language of ``languages`` (catalogue codes: ``"id"``, ``"pt_BR"``,
    ``"zh_Hans"``) that serves ``tag``, a BCP 47 tag from ``Accept-Language``
    or a saved locale, or ``None``.

    First the tag itself or a shorter prefix of it (``"id-ID"`` gets ``"id"``,
    ``"pt-BR"`` gets ``"pt_BR"``), then the same language in the same script
    (``"zh-CN"``, ``"zh-SG"`` and ``"zh"`` are written in Simplified
    characters, so they get ``"zh_Hans"``; ``"zh-TW"`` does not; ``"pt"`` and
    ``"pt-PT"`` get ``"pt_BR"``).
    """
    parts = [part for part in re.split(r"[-_]", tag.strip()) if part]
    if not parts or parts[0] == "*":
        return None
    offered = {code.lower().replace("-", "_"): code for code in languages}
    for end in range(len(parts), 0, -1):
        found = offered.get("_".join(parts[:end]).lower())
        if found:
            return found
    wanted = _language_and_script("_".join(parts))
    if wanted is None:
        return None
    same_script = [code for code in languages if _language_and_script(code) == wanted]
    return same_script[0] if same_script else None


@lru_cache(maxsize=256)
def _language_and_script(identifier: str) -> tuple[str, str] | None:
    """``("zh", "Hans")`` for ``"zh_CN"`` or ``"zh"``: the language and the
    script it is written in (Babel's likely subtags fill in a missing one)."""
    parts = identifier.split("_")
    for end in range(len(parts), 0, -1):
        try:
            locale = Locale.parse("_".join(parts[:end]))
        except (UnknownLocaleError, ValueError, TypeError):
            continue
        script = locale.script
        if not script:
            likely = get_global("likely_subtags")
            regional = f"{locale.language}_{locale.territory}" if locale.territory else ""
            full = str(likely.get(regional) or likely.get(locale.language) or "")
            full_parts = full.split("_")
            script = full_parts[1] if len(full_parts) > 2 else ""
        return (locale.language, script)
    return None


def language_tag(code: str) -> str:
    """The BCP 47 tag of a catalogue code, for ``lang`` attributes:
    ``"pt_BR"`` is ``"pt-BR"``, ``"zh_Hans"`` is ``"zh-Hans"``."""
    return code.replace("_", "-")


def text_direction(locale: str | Locale) -> str:
    """``"rtl"`` for a language written right to left, else ``"ltr"``
    (for ``<html dir>``), from the locale's CLDR data."""
    try:
        parsed = locale if isinstance(locale, Locale) else Locale.parse(locale)
    except (UnknownLocaleError, ValueError):
        return "ltr"
    return "rtl" if parsed.character_order == "right-to-left" else "ltr"


@lru_cache(maxsize=64)
def language_name(code: str) -> str:
    """The language's name in that language ("English", "Indonesia",
    "العربية"), as a language picker shows it."""
    try:
        name = Locale.parse(code).display_name or code
    except (UnknownLocaleError, ValueError):
        return code
    return name[:1].upper() + name[1:]
