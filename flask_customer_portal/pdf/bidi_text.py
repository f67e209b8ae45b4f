"""Right-to-left lines for a layout that places every line itself.

The invoice layout draws each line with ``FPDF.text`` at a position it
computed, which fpdf2 neither shapes nor reorders (its text shaping works
inside ``cell``/``write`` only). So a line with Arabic or Hebrew letters is
turned into what the eye sees before it is measured and drawn: Arabic
letters joined into their contextual forms (arabic-reshaper; DejaVu Sans has
the presentation forms), then the whole line in display order (python-bidi,
the Unicode bidirectional algorithm). Both come with the ``pdf`` extra.
Without them the text is drawn in logical order, unjoined, and a warning is
logged once: a readable-enough file beats an error page.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable

__all__ = ["has_right_to_left", "reshaped", "visual"]

logger = logging.getLogger("flask_customer_portal")

#: Hebrew, Arabic, Syriac, Thaana, N'Ko … and the presentation forms.
_RIGHT_TO_LEFT = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff]")
#: Direction marks (Babel writes one before an Arabic amount): the line is
#: already in display order once drawn, and the font has no glyph for them.
_MARKS = re.compile("[\u200e\u200f\u061c]")


def has_right_to_left(text: str) -> bool:
    return _RIGHT_TO_LEFT.search(text) is not None


@functools.cache
def _tools() -> tuple[Callable[[str], str], Callable[..., str]] | None:
    try:
        from arabic_reshaper import reshape
        from bidi import get_display
    except ImportError as exc:
        logger.warning(
            "PDF: right-to-left text is drawn unshaped because %s is missing; "
            "install it with: pip install 'flask-customer-portal[pdf]'",
            exc.name,
        )
        return None
    return reshape, get_display


def reshaped(text: str) -> str:
    """``text`` in logical order with Arabic letters in their joined forms
    (the forms that are measured and drawn)."""
    text = _MARKS.sub("", text)
    if _ARABIC.search(text) is None:
        return text
    tools = _tools()
    return text if tools is None else tools[0](text)


def visual(text: str, *, right_to_left: bool) -> str:
    """One line, joined and in display order. ``right_to_left`` is the
    document's direction: it decides where neutral characters (spaces,
    punctuation) between runs of different directions go."""
    text = reshaped(text)
    if not right_to_left and not has_right_to_left(text):
        return text
    tools = _tools()
    if tools is None:
        return text
    return str(tools[1](text, base_dir="R" if right_to_left else "L"))
