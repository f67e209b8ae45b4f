"""A right-to-left pseudo-locale, built at test time and never shipped.

Every message of the portal's template, with its Latin letters replaced by
Arabic ones (placeholders kept), compiled as an ``ar`` catalogue into a
directory of the test's own. An app with
``CUSTOMER_PORTAL_TRANSLATION_DIRECTORIES=[that directory]`` and ``"ar"`` in
``CUSTOMER_PORTAL_LANGUAGES`` then renders every page right to left, which
shows whether the layout holds up in that direction.
"""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from flask_customer_portal.i18n import TRANSLATIONS_DIR

__all__ = ["PSEUDO_LOCALE", "build_rtl_catalogue", "pseudo"]

PSEUDO_LOCALE = "ar"
_ARABIC = "ابتثجحخدذرزسشصضطظعغفقكلمنه"
_PLACEHOLDER = re.compile(r"(%(?:\([a-z_]+\))?[-#0 +]*\d*(?:\.\d+)?[sdif]|%%)")


def pseudo(text: str) -> str:
    """``text`` in Arabic letters, its ``%(name)s`` placeholders untouched."""
    parts = _PLACEHOLDER.split(text)
    for index in range(0, len(parts), 2):  # even indices are the text between placeholders
        parts[index] = "".join(
            _ARABIC[ord(c.lower()) - ord("a")] if "a" <= c.lower() <= "z" else c for c in parts[index]
        )
    return "".join(parts)


def build_rtl_catalogue(directory: Path) -> Path:
    """Compile the pseudo-locale under ``directory``; returns ``directory``."""
    with (TRANSLATIONS_DIR / "customer_portal.pot").open("rb") as source:
        template = read_po(source)
    catalogue = Catalog(locale=PSEUDO_LOCALE, domain="customer_portal")
    for message in template:
        if not message.id:
            continue
        if isinstance(message.id, (list, tuple)):
            singular, plural = message.id[0], message.id[1]
            forms = [pseudo(singular)] + [pseudo(plural)] * (catalogue.num_plurals - 1)
            catalogue.add(message.id, tuple(forms))
        else:
            catalogue.add(message.id, pseudo(message.id))
    target = directory / PSEUDO_LOCALE / "LC_MESSAGES"
    target.mkdir(parents=True, exist_ok=True)
    with (target / "customer_portal.mo").open("wb") as compiled:
        write_mo(compiled, catalogue)
    return directory
