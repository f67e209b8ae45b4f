"""Which languages the package itself ships a catalogue for.

Kept apart from :mod:`~flask_customer_portal.i18n` (which needs a request and
Flask-Babel) so that reading the configuration can ask without importing it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

__all__ = ["SOURCE_LANGUAGE", "TRANSLATIONS_DIR", "shipped_languages"]

#: The language the portal's strings are written in; it needs no catalogue.
SOURCE_LANGUAGE = "en"

TRANSLATIONS_DIR = Path(__file__).parent / "translations"


@lru_cache(maxsize=1)
def shipped_languages() -> tuple[str, ...]:
    """English, then every language with a ``customer_portal`` catalogue in
    the package, by code: ``("en", "ar", "de", "es", "fr", "id", "it", "nl")``.

    A catalogue counts once its ``.po`` or its compiled ``.mo`` is there (a
    built wheel has both; a checkout has the ``.po`` until ``make
    translations`` compiles it), so adding a catalogue to the package offers
    it without a change anywhere else.
    """
    found = {
        path.parents[1].name
        for pattern in ("*/LC_MESSAGES/customer_portal.po", "*/LC_MESSAGES/customer_portal.mo")
        for path in TRANSLATIONS_DIR.glob(pattern)
    }
    found.discard(SOURCE_LANGUAGE)
    return (SOURCE_LANGUAGE, *sorted(found))
