"""The fonts of the invoice PDFs, and the shared font path that makes them fast.

Two parts:

* :class:`FontMetrics` reads a shipped TTF file with fontTools (its public
  API) for what the layout needs: each character's width, computed as fpdf2
  computes it, and which characters the font has. Every fpdf2 release uses
  these.
* :class:`SharedFonts` embeds the fonts from programs parsed and subset
  once per process instead of once per document, several times faster than
  fpdf2's ``add_font`` for the same bytes. It carries the fallback fonts for
  the scripts DejaVu Sans lacks (:mod:`.fallback_fonts`) the same way: a
  4 MB CJK font is parsed once per process, and each set of glyphs a
  document draws from it is subset once and kept. It reaches into fpdf2's private
  classes (``OutputProducer``, ``TTFFont``'s attributes,
  ``_build_cmap_blocks``), which change between releases, so it is used only
  on the fpdf2 releases in :data:`PROVEN_FPDF2_RELEASES`, whose output the
  test suite compares byte for byte with fpdf2's own. On any other release it
  is never tried, and after any exception inside it the renderer falls back
  to fpdf2's public path for the rest of the process (logged once, as a
  warning). No private name of fpdf2 is imported before the release is known
  to be proven; nothing in this module imports fpdf2 when it is imported.
"""

from __future__ import annotations

import copy
import io
import logging
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from fpdf import FPDF
    from fpdf.fonts import TTFFont

__all__ = ["PROVEN_FPDF2_RELEASES", "FontMetrics", "SharedFonts", "fpdf2_release"]

logger = logging.getLogger("flask_customer_portal")

#: fpdf2 releases on which the shared font path was proven: the test suite
#: renders the same invoices through it and through fpdf2's ``add_font`` and
#: compares the files byte for byte. Every other release, older or newer,
#: gets fpdf2's public path (the same PDF, slower). Add a release here only
#: after the whole ``tests/test_pdf.py`` passes on it.
PROVEN_FPDF2_RELEASES: frozenset[str] = frozenset({"2.8.9"})


def fpdf2_release() -> str | None:
    """The installed fpdf2's version (``fpdf.FPDF_VERSION``), or ``None``
    without fpdf2."""
    try:
        import fpdf
    except ImportError:
        return None
    version = getattr(fpdf, "FPDF_VERSION", None)
    return version if isinstance(version, str) else None


# -- metrics (every fpdf2 release) ------------------------------------------------


class Widths(dict[int, float]):
    """Character widths in thousandths of an em, shared read-only.

    fpdf2 keeps them in a ``defaultdict``, which stores the default width for
    each character looked up that the font lacks; this gives the same width
    without storing anything, so sharing it between threads and documents is
    safe.
    """

    def __init__(self, widths: Mapping[int, float], default: float) -> None:
        super().__init__(widths)
        self.default = default

    def __missing__(self, key: int) -> float:
        return self.default


@dataclass(frozen=True, slots=True)
class FontMetrics:
    """What the layout needs of one font file, read with fontTools."""

    widths: Widths
    """Width of each character, as fpdf2's ``TTFFont.cw`` has it (the width
    of ``.notdef`` for characters the font lacks)."""
    codepoints: frozenset[int]
    """The characters the font has a glyph for."""

    @classmethod
    def read(cls, path: Path) -> FontMetrics:
        """The metrics of the TrueType font at ``path``: the same numbers
        fpdf2 computes when it adds the font (``round(1000 / unitsPerEm *
        advance + 0.001)`` for each character of the best Unicode cmap)."""
        from fontTools import ttLib

        with ttLib.TTFont(path, lazy=True) as font:
            scale = 1000 / float(font["head"].unitsPerEm)
            metrics = font["hmtx"].metrics
            cmap: dict[int, str] = font.getBestCmap() or {}
            widths: dict[int, float] = {}
            for codepoint, glyph in cmap.items():
                advance = metrics[glyph][0]
                widths[codepoint] = round(scale * (0 if advance == 65535 else advance) + 0.001)
            default = round(scale * metrics[".notdef"][0])
        return cls(widths=Widths(widths, default), codepoints=frozenset(cmap))


# -- the shared font path (proven fpdf2 releases only) ------------------------------

#: Code points most invoices are written in (Latin scripts, punctuation,
#: currency signs). Fonts are trimmed to these once per process, which makes
#: embedding the glyphs a document uses several times faster; a document
#: using any other glyph embeds from the full font, with the same result.
_COMMON_RANGES = (
    (0x0020, 0x007E),
    (0x00A0, 0x017F),
    (0x0218, 0x021B),
    (0x2000, 0x206F),
    (0x20A0, 0x20CF),
    (0x2116, 0x2116),
    (0x2122, 0x2122),
    (0x2212, 0x2212),
    (0xFFFD, 0xFFFD),
)

#: The tables fpdf2 drops when it embeds a font subset: dropping them when
#: trimming too keeps the two embeddings byte-identical.
_FPDF_DROPPED_TABLES = (
    "FFTM", "GDEF", "GPOS", "GSUB", "MATH", "hdmx", "meta", "sbix",
    "CBDT", "CBLC", "EBDT", "EBLC", "EBSC", "SVG ", "CPAL", "COLR",
)  # fmt: skip

#: Hinting sources some fallback fonts carry (Microsoft VTT's): fontTools
#: cannot subset them and drops them with a warning per subset; a PDF
#: never uses them.
_VTT_SOURCE_TABLES = ("TSI0", "TSI1", "TSI2", "TSI3", "TSI5")


class SharedFonts:
    """The invoice fonts of one family, embedded from programs shared by
    every document of the process, on the fpdf2 releases this was proven on.

    ``files`` maps fpdf2 styles (``""``, ``"B"``) to TTF files. A renderer
    asks :meth:`output_type`; when it is not ``None``, it calls
    :meth:`attach` instead of ``FPDF.add_font`` and :meth:`output` instead
    of ``FPDF.output``. If either raises, the renderer draws the document
    again through fpdf2's public path and calls :meth:`give_up`, which logs
    the reason once and turns the shared path off for this process.
    """

    def __init__(self, family: str, files: Mapping[str, Path]) -> None:
        self.family = family
        self.faces = {style: _FontFace(family, style, path) for style, path in files.items()}
        self._lock = threading.Lock()
        # Keyed by fpdf2's font key and the file: two renderers may give the
        # same fallback family name to different files.
        self._fallback_faces: dict[tuple[str, str], _FontFace] = {}
        self._output_types: dict[str, type[Any] | None] = {}
        self._given_up = False

    @property
    def given_up(self) -> bool:
        """Whether the shared path failed once in this process (and is off)."""
        return self._given_up

    def output_type(self) -> type[Any] | None:
        """fpdf2's ``OutputProducer`` writing the shared faces, or ``None``:
        on an fpdf2 release not in :data:`PROVEN_FPDF2_RELEASES`, one
        lacking what the path needs, or after :meth:`give_up`."""
        if self._given_up:
            return None
        release = fpdf2_release()
        if release is None or release not in PROVEN_FPDF2_RELEASES:
            return None
        with self._lock:
            known = release in self._output_types
            output_type = self._output_types.get(release)
        if known:
            return output_type
        try:
            output_type = _make_output_type(self)
        except Exception as exc:  # a proven release lacking what it needs: patched, or broken
            self.give_up(exc)
            return None
        with self._lock:
            return self._output_types.setdefault(release, output_type)

    def attach(self, pdf: FPDF, fallbacks: Iterable[tuple[str, Path]] = ()) -> None:
        """Make every face usable in ``pdf`` as ``add_font`` would, without
        parsing the files again; ``fallbacks`` adds the regular face of each
        ``(family, file)`` after them, parsed once per process too."""
        for face in self.faces.values():
            face.attach(pdf)
        for family, path in fallbacks:
            self.fallback_face(family, path).attach(pdf)

    def fallback_face(self, family: str, path: Path) -> _FontFace:
        """The shared regular face of the fallback font ``family`` at ``path``."""
        key = (family.lower(), str(path))
        with self._lock:
            face = self._fallback_faces.get(key)
            if face is None:
                # A CJK font has no Latin core worth trimming to: its
                # documents' glyphs are subset from the whole font.
                face = self._fallback_faces[key] = _FontFace(family, "", path, trim_to_common=False)
            return face

    def face_of(self, font: Any) -> _FontFace | None:
        """The shared face ``font`` was attached from, or ``None``."""
        fontkey = getattr(font, "fontkey", "")
        path = getattr(font, "ttffile", None)
        for face in self.faces.values():
            if face.fontkey == fontkey and face.path == path:
                return face
        with self._lock:
            return self._fallback_faces.get((fontkey, str(path)))

    def output(self, pdf: FPDF) -> bytes:
        """``pdf`` written with the shared faces' cached programs."""
        output_type = self.output_type()
        if output_type is None:
            raise RuntimeError("the shared font path is not available")
        return bytes(pdf.output(output_producer_class=output_type))

    def give_up(self, error: BaseException) -> None:
        """Turn the shared path off for this process, logging why once."""
        with self._lock:
            if self._given_up:
                return
            self._given_up = True
        logger.warning(
            "Invoice PDFs: the shared font path failed on fpdf2 %s (%s: %s); "
            "PDFs are made with fpdf2's add_font from now on (the same files, slower)",
            fpdf2_release(),
            type(error).__name__,
            error,
            exc_info=error,
        )


class _FontFace:
    """One shipped TTF file, parsed once per process and shared read-only.

    fpdf2 parses a font file each time a document adds it and subsets the
    whole font when the document is saved; for DejaVu Sans that is most of
    the time spent on an invoice. Each document instead gets a copy of the
    parsed metrics with its own glyph usage, and, when it is saved, the font
    already subset to the glyphs it used and compressed. A subset is made
    once per glyph set (from the trimmed common program when that covers the
    glyphs, from the full font otherwise) and kept in a small LRU cache:
    invoices keep using the same few glyphs.
    """

    #: Glyph sets whose subset is kept, per face (a subset is 10-30 kB).
    subset_cache_size: ClassVar[int] = 64

    def __init__(self, family: str, style: str, path: Path, *, trim_to_common: bool = True) -> None:
        self.style = style
        self.fontkey = f"{family.lower()}{style}"
        self.path = path
        self.trim_to_common = trim_to_common
        self._lock = threading.Lock()
        self._template: TTFFont | None = None
        self._data = b""
        self._common: tuple[bytes, frozenset[str]] | None = None
        self._subsets: LRU[frozenset[str], _Program] = LRU(self.subset_cache_size)

    def template(self) -> TTFFont:
        with self._lock:
            if self._template is None:
                from fpdf import FPDF
                from fpdf.fonts import TTFFont

                self._data = self.path.read_bytes()
                template = TTFFont(FPDF(), self.path, self.fontkey, self.style)
                template.cw = Widths(template.cw, template.desc.missing_width)
                # Everything the documents use was read when it was made; the
                # programs to embed come from self._data (see _make_subset).
                template.ttfont.close()
                template.ttfont = None
                self._template = template
            return self._template

    def attach(self, pdf: FPDF) -> TTFFont:
        """Make this face usable in ``pdf`` as ``add_font`` would, without parsing it again."""
        from fpdf.fonts import SubsetMap

        template = self.template()
        font = copy.copy(template)
        # Everything a document changes while it is written gets its own copy;
        # the widths are only read (see Widths).
        font.i = len(pdf.fonts) + 1
        font.desc = copy.copy(template.desc)
        font.missing_glyphs = []
        font.biggest_size_pt = 0
        font.subset = SubsetMap(font)
        font.ttfont = None
        pdf.fonts[self.fontkey] = font
        return font

    def program_for(self, glyph_names: Iterable[str]) -> _Program:
        """The font program to embed for a document that uses ``glyph_names``.

        Made once per glyph set and kept in a small LRU cache keyed by the
        set: a document always gets the subset of exactly its own glyphs.
        """
        return self._subsets.get(frozenset(glyph_names), self._make_subset)

    def _make_subset(self, glyph_names: frozenset[str]) -> _Program:
        """The font program fpdf2 would embed for ``glyph_names``.

        Subset with the options fpdf2's ``OutputProducer._add_fonts`` uses, so
        the embedded bytes are the ones fpdf2 itself would write.
        """
        from fontTools import subset

        self.template()
        if self.trim_to_common:
            common, common_glyphs = self._common_program()
            font = _open_font(common if common_glyphs.issuperset(glyph_names) else self._data)
        else:
            font = _open_font(self._data)
        options = subset.Options(notdef_outline=True, recommended_glyphs=True)
        options.drop_tables += list(_FPDF_DROPPED_TABLES)
        if not self.trim_to_common:
            # A fallback font is ours to cut as we like (no byte-for-byte
            # twin to match): its hinting only grows the file.
            options.drop_tables += list(_VTT_SOURCE_TABLES)
            options.hinting = False
        subsetter = subset.Subsetter(options)
        subsetter.populate(glyphs=sorted(glyph_names))
        subsetter.subset(font)
        glyph_ids = MappingProxyType({name: index for index, name in enumerate(font.getGlyphOrder())})
        buffer = io.BytesIO()
        font.save(buffer)
        font.close()
        program = buffer.getvalue()
        return _Program(glyph_ids=glyph_ids, length=len(program), compressed=_flate(program))

    def _common_program(self) -> tuple[bytes, frozenset[str]]:
        with self._lock:
            if self._common is None:
                from fontTools import subset

                font = _open_font(self._data)
                options = subset.Options(notdef_outline=True, recommended_glyphs=True, glyph_names=True)
                options.drop_tables += list(_FPDF_DROPPED_TABLES)
                subsetter = subset.Subsetter(options)
                subsetter.populate(
                    unicodes=[cp for low, high in _COMMON_RANGES for cp in range(low, high + 1)]
                )
                subsetter.subset(font)
                buffer = io.BytesIO()
                font.save(buffer)
                self._common = (buffer.getvalue(), frozenset(font.getGlyphOrder()))
            return self._common


def _open_font(data: bytes) -> Any:
    """``data`` as a ``fontTools`` font to subset.

    Glyph bounding boxes are kept as the font has them instead of being
    recomputed, as ``pyftsubset`` does by default: glyph outlines are then
    copied as they are rather than decoded and re-encoded, the slowest part
    of saving a subset.
    """
    from fontTools import ttLib

    return ttLib.TTFont(io.BytesIO(data), recalcTimestamp=False, recalcBBoxes=False, lazy=True)


@dataclass(frozen=True, slots=True)
class _Program:
    """One face subset to one glyph set, ready to embed."""

    glyph_ids: Mapping[str, int]
    """The glyph id of each glyph name in the subset."""
    length: int
    """Size of the font program (the stream's ``/Length1``)."""
    compressed: bytes
    """The font program, Flate-compressed as fpdf2 compresses streams."""


def _flate(data: bytes) -> bytes:
    """``data`` compressed as fpdf2 compresses a stream."""
    from fpdf.syntax import PDFContentStream

    return zlib.compress(data, level=PDFContentStream._COMPRESSION_LEVEL)


#: Bytes in a ``CIDToGIDMap``: two for each of the 65,536 codes ``Identity-H`` allows.
_CID_TO_GID_MAP_SIZE = 2 * 0x10000


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A small least-recently-used cache shared by threads. A value not
    cached is made outside the lock: two threads may both make the value of
    a new key, and get equal values."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K, make: Callable[[K], V]) -> V:
        """The value of ``key``, made with ``make(key)`` if not cached."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make(key)
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


#: Compressed ``CIDToGIDMap`` streams keyed by the mapping they encode.
#: The map is 128 kB, almost all zeros: only the codes a document uses
#: (numbered from 1 in the order its text first uses each glyph) are set.
#: The key is the map up to its last used code, which determines the whole
#: map, so two documents share a stream only when their maps are equal
#: byte for byte.
CID_TO_GID_MAPS: LRU[bytes, bytes] = LRU(256)


def _compress_cid_to_gid_map(used: bytes) -> bytes:
    """The whole map of which ``used`` is the start, compressed."""
    return _flate(used + bytes(_CID_TO_GID_MAP_SIZE - len(used)))


def _cid_to_gid_map(code_to_glyph: Mapping[int, int]) -> bytes:
    """The ``CIDToGIDMap`` up to its highest used code (the rest is zeros):
    two big-endian bytes per code, the glyph id it draws."""
    used = bytearray(2 * (max(code_to_glyph, default=-1) + 1))
    for code, glyph_id in code_to_glyph.items():
        used[2 * code : 2 * code + 2] = glyph_id.to_bytes(2, "big")
    return bytes(used)


def _to_unicode_cmap(code_to_text: Iterable[tuple[int, str]], build_cmap_blocks: Callable[..., str]) -> bytes:
    """The ``ToUnicode`` CMap saying which text each two-byte code stands for
    (so the PDF can be searched and copied from), written as fpdf2 writes it."""
    entries = [
        f"<{code:04X}> <{text.encode('utf-16-be', 'surrogatepass').hex().upper()}>\n"
        for code, text in code_to_text
    ]
    return (
        "/CIDInit /ProcSet findresource begin\n"
        "12 dict begin\n"
        "begincmap\n"
        "/CIDSystemInfo\n"
        "<</Registry (Adobe)\n"
        "/Ordering (UCS)\n"
        "/Supplement 0\n"
        ">> def\n"
        "/CMapName /Adobe-Identity-UCS def\n"
        "/CMapType 2 def\n"
        "1 begincodespacerange\n"
        "<0000> <FFFF>\n"
        "endcodespacerange\n"
        f"{build_cmap_blocks(entries, 'bfchar')}"
        "endcmap\n"
        "CMapName currentdict /CMap defineresource pop\n"
        "end\n"
        "end"
    ).encode("latin-1")


def _make_output_type(shared: SharedFonts) -> type[Any]:
    """fpdf2's ``OutputProducer`` embedding ``shared``'s faces from cached
    programs. Called only on a proven release, where every private name it
    imports exists (else it raises ``ImportError`` or ``TypeError``)."""
    from fpdf.fonts import TTFFont
    from fpdf.output import CIDSystemInfo, OutputProducer, PDFFont, _build_cmap_blocks, _tt_font_widths
    from fpdf.syntax import Name, PDFArray, PDFContentStream

    missing = [
        name for name in ("_add_fonts", "_add_pdf_obj") if not callable(getattr(OutputProducer, name, None))
    ]
    if missing:
        raise TypeError(f"fpdf2's OutputProducer has no {', '.join(missing)}")

    class CompressedStream(PDFContentStream):
        """A stream whose Flate-compressed contents are already at hand
        (``length1``: the size of a font program before compression)."""

        def __init__(self, compressed: bytes, length1: int | None = None) -> None:
            super().__init__(b"")
            self._contents = compressed
            self.filter = Name("FlateDecode")
            self.length = len(compressed)
            self.length1 = length1

    class InvoiceOutput(OutputProducer):
        """Writes a document whose fonts are all shared faces.

        Each face goes in as fpdf2 embeds a TrueType font (a ``Type0`` font
        over a ``CIDFontType2`` with its widths, ``ToUnicode`` CMap,
        ``CIDToGIDMap`` and the font program, in the same objects and order),
        with the compressed font program and ``CIDToGIDMap`` taken from
        caches keyed by exactly what they encode.
        """

        def _add_fonts(self, *resources: Any) -> dict[int, Any]:
            objects: dict[int, Any] = {}
            for font in sorted(self.fpdf.fonts.values(), key=lambda font: font.i):
                face = shared.face_of(font)
                if face is None or not isinstance(font, TTFFont) or font.ttfont is not None:
                    raise TypeError(f"{font!r} is not a face attached by the invoice renderer")
                objects[font.i] = self._add_face(font, face)
            return objects

        def _add_face(self, font: TTFFont, face: _FontFace) -> Any:
            used = [(glyph, code) for glyph, code in font.subset.items() if glyph is not None]
            program = face.program_for(glyph.glyph_name for glyph, _ in used)
            name = f"MPDFAA+{font.name}"

            composite = PDFFont(subtype="Type0", base_font=name, encoding="Identity-H")
            self._add_pdf_obj(composite, "fonts")
            descendant = PDFFont(
                subtype="CIDFontType2", base_font=name, d_w=font.desc.missing_width, w=_tt_font_widths(font)
            )
            self._add_pdf_obj(descendant, "fonts")
            composite.descendant_fonts = PDFArray([descendant])

            to_unicode = PDFContentStream(
                _to_unicode_cmap(
                    (
                        (code, "".join(map(chr, glyph.unicode)))
                        for glyph, code in used
                        if isinstance(glyph.unicode, tuple) and glyph.unicode
                    ),
                    _build_cmap_blocks,
                )
            )
            self._add_pdf_obj(to_unicode, "fonts")
            composite.to_unicode = to_unicode

            system_info = CIDSystemInfo()
            self._add_pdf_obj(system_info, "fonts")
            descendant.c_i_d_system_info = system_info

            descriptor = font.desc
            descriptor.font_name = Name(name)
            self._add_pdf_obj(descriptor, "fonts")
            descendant.font_descriptor = descriptor

            code_to_glyph = {code: program.glyph_ids[glyph.glyph_name] for glyph, code in used}
            cid_to_gid = CompressedStream(
                CID_TO_GID_MAPS.get(_cid_to_gid_map(code_to_glyph), _compress_cid_to_gid_map)
            )
            self._add_pdf_obj(cid_to_gid, "fonts")
            descendant.c_i_d_to_g_i_d_map = cid_to_gid

            font_file = CompressedStream(program.compressed, length1=program.length)
            self._add_pdf_obj(font_file, "fonts")
            descriptor.font_file2 = font_file  # type: ignore[attr-defined]

            # fpdf2 caches glyph look-ups per class; they are done with.
            font.subset.pick.cache_clear()
            font.subset.get_glyph.cache_clear()
            return composite

    return InvoiceOutput
