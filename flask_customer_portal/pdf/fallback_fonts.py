"""Fonts for the scripts the shipped DejaVu Sans lacks (Chinese, Japanese,
Korean …), found on the machine at run time and embedded only in a document
that needs one.

DejaVu Sans (in the package) covers Latin, Greek, Cyrillic, Arabic and
Hebrew. A CJK font is several megabytes, so none is shipped: the renderer
looks for the TrueType files named in ``CUSTOMER_PORTAL_PDF_FALLBACK_FONTS``
or, by default, in :data:`DEBIAN_FALLBACK_FONTS` (``apt-get install
fonts-droid-fallback fonts-nanum``: Chinese and Japanese in one 4 MB file,
Korean in another).
fpdf2 subsets every embedded font to the glyphs the document uses, so a
Japanese invoice grows by its few dozen characters, not by the font.

A character no font has prints as U+FFFD, and the first such character
logs a warning naming the setting and the package; the PDF is still made.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import io
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .fonts import FontMetrics

__all__ = [
    "DEBIAN_FALLBACK_FONTS",
    "DEBIAN_FALLBACK_PACKAGES",
    "FallbackFont",
    "find_fallback_fonts",
    "subset_file",
    "warn_missing_glyph",
]

logger = logging.getLogger("flask_customer_portal")

#: Where Debian and Ubuntu packages put fonts for the scripts DejaVu lacks.
DEBIAN_FALLBACK_FONTS: tuple[str, ...] = (
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback: Chinese, Japanese
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",  # fonts-nanum: Korean
)

#: The Debian packages of :data:`DEBIAN_FALLBACK_FONTS`.
DEBIAN_FALLBACK_PACKAGES = "fonts-droid-fallback fonts-nanum"


@dataclass(frozen=True)
class FallbackFont:
    """One font file the renderer may embed, and what it covers."""

    family: str
    path: Path
    metrics: FontMetrics


#: The first four bytes of a TrueType font file (outlines in ``glyf``).
_TRUETYPE_TAGS = (b"\x00\x01\x00\x00", b"true")


@functools.cache
def _read(path: str) -> FontMetrics | None:
    try:
        with open(path, "rb") as file:
            tag = file.read(4)
        if tag not in _TRUETYPE_TAGS:
            raise ValueError("not a TrueType font file (.ttf)")
        return FontMetrics.read(Path(path))
    except Exception as exc:  # a file that is not a TrueType font: said once, then skipped
        logger.warning("PDF: cannot use %s as a fallback font: %s", path, exc)
        return None


def find_fallback_fonts(paths: Sequence[str] | None) -> tuple[FallbackFont, ...]:
    """The readable fonts among ``paths`` (``None``: the Debian locations),
    in order; a missing file is skipped."""
    found = []
    for index, path in enumerate(DEBIAN_FALLBACK_FONTS if paths is None else paths):
        if not Path(path).is_file():
            continue
        metrics = _read(str(path))
        if metrics is not None:
            found.append(FallbackFont(f"PortalFallback{index}", Path(path), metrics))
    return tuple(found)


@functools.cache
def warn_missing_glyph(character: str) -> None:
    """Logged once per character and process: a PDF showed U+FFFD for it."""
    logger.warning(
        "PDF: no font has %r (U+%04X), so it prints as U+FFFD. Name a TrueType font that has it in "
        "CUSTOMER_PORTAL_PDF_FALLBACK_FONTS, or on Debian: apt-get install %s",
        character,
        ord(character),
        DEBIAN_FALLBACK_PACKAGES,
    )


_SUBSET_DIR: str | None = None
_SUBSET_LOCK = threading.Lock()


def _subset_dir() -> str:
    global _SUBSET_DIR
    with _SUBSET_LOCK:
        if _SUBSET_DIR is None:
            _SUBSET_DIR = tempfile.mkdtemp(prefix="portal-pdf-fonts-")
            atexit.register(shutil.rmtree, _SUBSET_DIR, True)
        return _SUBSET_DIR


@functools.lru_cache(maxsize=128)
def subset_file(path: Path, characters: frozenset[str]) -> Path:
    """A TrueType file with only ``characters`` of the font at ``path``.

    fpdf2's ``add_font`` reads the whole font for every document (seconds
    for a 4 MB CJK font); handed this instead, it reads a few kilobytes. Made
    once per set of characters and process, in a private temporary
    directory removed at exit.
    """
    from fontTools import subset, ttLib

    options = subset.Options()
    options.notdef_outline = True
    options.name_IDs = ["*"]
    options.hinting = False
    options.layout_features = []
    with ttLib.TTFont(io.BytesIO(path.read_bytes()), lazy=True) as font:
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=sorted(ord(ch) for ch in characters))
        subsetter.subset(font)
        buffer = io.BytesIO()
        font.save(buffer)
    data = buffer.getvalue()
    target = Path(_subset_dir()) / f"{path.stem}-{hashlib.sha256(data).hexdigest()[:16]}.ttf"
    if not target.exists():
        partial = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.partial")
        partial.write_bytes(data)
        os.replace(partial, target)  # another thread may have made the same file: same bytes
    return target


def characters(texts: Iterable[str]) -> frozenset[str]:
    return frozenset("".join(texts))
