"""Translations of the portal's own strings (gettext domain ``customer_portal``).

The portal's catalogues live in the package under its own gettext domain, so
they never mix with the host app's ``messages`` catalogues. Locale selection
for portal pages: the customer's saved language, then the browser's
``Accept-Language``, then ``CUSTOMER_PORTAL_DEFAULT_LOCALE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import has_request_context, request
from flask_babel import Domain

if TYPE_CHECKING:
    from .config import PortalConfig
    from .storage import Customer

__all__ = ["TRANSLATIONS_DIR", "domain", "gettext", "lazy_gettext", "ngettext", "select_locale"]

TRANSLATIONS_DIR = Path(__file__).parent / "translations"

#: The portal's gettext domain; its catalogues are ``translations/<lang>/LC_MESSAGES/customer_portal.mo``.
domain = Domain(translation_directories=[str(TRANSLATIONS_DIR)], domain="customer_portal")


def gettext(string: str, **variables: Any) -> str:
    return str(domain.gettext(string, **variables))


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    return str(domain.ngettext(singular, plural, num, **variables))


def lazy_gettext(string: str, **variables: Any) -> Any:
    return domain.lazy_gettext(string, **variables)


def select_locale(config: PortalConfig, customer: Customer | None) -> str:
    """The language to show ``customer`` (or an anonymous visitor)."""
    if customer is not None and customer.locale:
        language = customer.locale.replace("-", "_").split("_")[0]
        if language in config.languages:
            return language
    if has_request_context():
        best = request.accept_languages.best_match(config.languages)
        if best:
            return best
    return config.default_locale
