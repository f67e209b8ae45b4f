"""Finding English left on a page that should be in another language.

For a shipped catalogue, the tell-tale texts are its msgids whose
translation differs from the msgid ("Billing history" but not "Total",
which is Spanish too): a text of the page equal to such a msgid, or
containing a piece of one of at least two words (the English between its
placeholders), is English that escaped translation. Brand names and the
demo shop's own data (product and plan names are the merchant's, in the
merchant's language) are in :data:`ALLOWED`.

Used by ``tests/test_every_language.py`` (HTML through the test client) and
the browser walk in ``tests/browser/test_languages_walk_browser.py`` (the
text a reader sees).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from html.parser import HTMLParser

from babel.messages.pofile import read_po

from flask_customer_portal.catalogues import TRANSLATIONS_DIR, shipped_languages

__all__ = ["ALLOWED", "Tells", "page_texts", "tells_for", "translated_languages"]

#: Texts that stay as they are in every language: names, not words.
ALLOWED = frozenset({"Acme Software", "American Express", "Stripe", "Visa", "Mastercard"})

_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[a-zA-Z%]")
_SPACE = re.compile(r"\s+")
_EDGES = " \t\n.,:;!?()\u201c\u201d\"'\u00ab\u00bb\u2026-\u2013\u2014/"


def translated_languages() -> list[str]:
    """Every shipped language but English."""
    return [code for code in shipped_languages() if code != "en"]


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Tells:
    whole: frozenset[str]  # msgids without placeholders, as a whole text
    pieces: tuple[str, ...]  # English runs of two or more words

    def find(self, texts: Iterable[str]) -> list[str]:
        """The texts that hold English, each with what gave it away."""
        found = []
        for text in texts:
            if text in ALLOWED or not re.search(r"[A-Za-z]", text):
                continue
            if text.strip(_EDGES) in self.whole:
                found.append(f"{text!r}")
                continue
            for piece in self.pieces:
                if piece in text and re.search(rf"(?<![A-Za-z]){re.escape(piece)}(?![A-Za-z])", text):
                    found.append(f"{text!r} (holds {piece!r})")
                    break
        return found


@cache
def tells_for(language: str) -> Tells:
    with (TRANSLATIONS_DIR / language / "LC_MESSAGES" / "customer_portal.po").open("rb") as file:
        catalog = read_po(file)
    whole: set[str] = set()
    pieces: set[str] = set()
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, (list, tuple)) else (message.id,)
        forms = message.string if isinstance(message.string, (list, tuple)) else (message.string,)
        translated = " ".join(forms)
        for msgid in ids:
            if msgid in forms:
                continue  # the same in this language ("Total", "Portal")
            parts = [_normal(part).strip(_EDGES) for part in _PLACEHOLDER.split(msgid)]
            if len(parts) == 1 and parts[0] not in ALLOWED:
                whole.add(parts[0])
            for part in parts:
                if (
                    len(part.split()) >= 2
                    and len(part) >= 8
                    and part not in translated
                    and part not in ALLOWED
                ):
                    pieces.add(part)
    return Tells(frozenset(whole), tuple(sorted(pieces, key=len, reverse=True)))


class _Texts(HTMLParser):
    """The text a reader meets: text nodes, and the labels, titles and
    placeholders of elements; minus scripts, styles and anything marked
    with another ``lang`` than the page's (the picker's "English")."""

    _SKIP = frozenset({"script", "style", "template", "noscript"})
    _VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._stack: list[tuple[str, bool]] = []
        self._page_lang = ""

    def _hidden(self) -> bool:
        return any(skip for _, skip in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self._page_lang = values.get("lang") or ""
        lang = values.get("lang")
        skip = tag in self._SKIP or (lang is not None and tag != "html" and lang != self._page_lang)
        if not (skip or self._hidden()):
            for name in ("aria-label", "title", "placeholder", "alt"):
                if values.get(name):
                    self.texts.append(_normal(values[name] or ""))
            if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
                self.texts.append(_normal(values["value"] or ""))
        if tag not in self._VOID:
            self._stack.append((tag, skip))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._stack) - 1, -1, -1):
            if self._stack[index][0] == tag:
                del self._stack[index:]
                return

    def handle_data(self, data: str) -> None:
        text = _normal(data)
        if text and not self._hidden():
            self.texts.append(text)


def page_texts(html: str) -> list[str]:
    parser = _Texts()
    parser.feed(html)
    parser.close()
    return parser.texts
