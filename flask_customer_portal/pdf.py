"""Invoice PDFs a customer can file.

The view resolves everything that needs Flask (translated labels, the
customer's locale and time zone) into an :class:`InvoiceDocument`; an
:class:`InvoiceRenderer` turns that into bytes. :class:`FPDFInvoiceRenderer`
is the default and needs the ``pdf`` extra (fpdf2); everything else in this
module imports without it, so a host app can plug in its own renderer.

Rendering is deterministic: the same document gives byte-identical PDFs (the
creation date is the invoice's issue time), so a PDF can be cached, hashed or
compared in tests.
"""

from __future__ import annotations

import copy
import functools
import io
import re
import threading
import unicodedata
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from babel import Locale, UnknownLocaleError
from babel.numbers import format_decimal

from .formatting import format_date, format_payment_method, resolve_timezone
from .money import Money, format_money
from .storage import Customer, Invoice, InvoiceStatus
from .tax_ids import bill_to_lines

if TYPE_CHECKING:
    from fpdf import FPDF
    from fpdf.fonts import TTFFont

__all__ = [
    "FPDFInvoiceRenderer",
    "InvoiceDocument",
    "InvoiceRenderer",
    "default_invoice_renderer",
    "default_labels",
    "safe_pdf_filename",
]


def N_(message: str) -> str:  # noqa: N802 - pybabel's default keyword is N_
    """Mark ``message`` for ``pybabel extract`` (a default keyword) without translating it."""
    return message


_DEFAULT_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "invoice": N_("Invoice"),
        "invoice_number": N_("Invoice number"),
        "date_issued": N_("Date issued"),
        "date_paid": N_("Date paid"),
        "status": N_("Status"),
        "bill_to": N_("Bill to"),
        "description": N_("Description"),
        "quantity": N_("Qty"),
        "unit_price": N_("Unit price"),
        "amount": N_("Amount"),
        "subtotal": N_("Subtotal"),
        "tax": N_("Tax"),
        "total": N_("Total"),
        "amount_due": N_("Amount due"),
        "paid_with": N_("Paid with"),
        "payment_reference": N_("Payment reference"),
        # ``%(page)s`` and ``%(pages)s`` are filled in by the renderer.
        "page_x_of_y": N_("Page %(page)s of %(pages)s"),
        "status_open": N_("Open"),
        "status_paid": N_("Paid"),
        "status_void": N_("Void"),
        "status_refunded": N_("Refunded"),
    }
)


def default_labels() -> dict[str, str]:
    """English labels for every key :class:`InvoiceDocument` needs.

    The keys are the contract; a Flask view translates the values, e.g.
    ``{key: gettext(text) for key, text in default_labels().items()}`` (the
    English texts are marked for ``pybabel extract``).
    """
    return dict(_DEFAULT_LABELS)


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    """Everything an invoice PDF shows, already resolved for one reader.

    Construction validates the document, so a renderer never meets half a
    document: it raises :class:`ValueError` for an invoice of another
    customer, a naive issue time, an unknown locale or time zone, or labels
    missing a key of :func:`default_labels`.
    """

    invoice: Invoice
    """With its lines (as :meth:`BillingStore.get_invoice` returns it)."""
    customer: Customer
    merchant_name: str
    merchant_address: str = ""
    """Several lines separated by newlines."""
    locale: str = "en"
    """For amounts, numbers and dates (``"en"``, ``"id"``, ``"pt_BR"``)."""
    timezone: str | None = None
    """IANA name the dates are shown in; ``None`` is UTC."""
    labels: Mapping[str, str] = field(default_factory=default_labels, hash=False)
    """Translated texts keyed like :func:`default_labels`; copied and frozen."""

    def __post_init__(self) -> None:
        if self.invoice.customer_id != self.customer.id:
            raise ValueError(
                f"invoice {self.invoice.id!r} belongs to customer {self.invoice.customer_id!r}, "
                f"not {self.customer.id!r}"
            )
        if not self.merchant_name.strip():
            raise ValueError("merchant_name must not be empty")
        for name in ("issued_at", "paid_at"):
            moment: datetime | None = getattr(self.invoice, name)
            if moment is not None and (moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None):
                raise ValueError(f"invoice {self.invoice.id!r} has a naive {name}; store aware UTC")
        try:
            Locale.parse(self.locale)
        except (UnknownLocaleError, ValueError, TypeError) as exc:
            raise ValueError(f"unknown locale: {self.locale!r}") from exc
        resolve_timezone(self.timezone)
        labels = MappingProxyType(dict(self.labels))
        missing = sorted(_DEFAULT_LABELS.keys() - labels.keys())
        if missing:
            raise ValueError(f"labels missing: {', '.join(missing)}")
        try:
            labels["page_x_of_y"] % {"page": 1, "pages": 1}
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(
                "label 'page_x_of_y' must use only the placeholders %(page)s and %(pages)s, "
                f"got {labels['page_x_of_y']!r}"
            ) from exc
        object.__setattr__(self, "labels", labels)


@runtime_checkable
class InvoiceRenderer(Protocol):
    """Turns an invoice into a file the customer downloads (``application/pdf``)."""

    def render(self, document: InvoiceDocument) -> bytes:
        """The PDF for ``document``; the same document always gives the same bytes."""


# -- file names ---------------------------------------------------------------

_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FILENAME_SEPARATOR_RUN = re.compile(r"[._-]{2,}")
_FILENAME_MAX = 100


def safe_pdf_filename(invoice_number: str) -> str:
    """A download name for the invoice, safe in any ``Content-Disposition``.

    ASCII letters, digits, ``.``, ``_`` and ``-`` only (accents are dropped:
    ``Ré-7`` → ``Re-7``), no path separators, never starting with a dot, at
    most 100 characters, always ending in ``.pdf``:

    >>> safe_pdf_filename("INV-000123")
    'invoice-INV-000123.pdf'
    >>> safe_pdf_filename("../../etc/passwd")
    'invoice-etc-passwd.pdf'
    """
    ascii_only = unicodedata.normalize("NFKD", invoice_number).encode("ascii", "ignore").decode("ascii")
    stem = _FILENAME_UNSAFE.sub("-", ascii_only)
    stem = _FILENAME_SEPARATOR_RUN.sub("-", stem).strip("._-")
    prefix, suffix = "invoice-", ".pdf"
    stem = stem[: _FILENAME_MAX - len(prefix) - len(suffix)].rstrip("._-")
    return f"{prefix}{stem}{suffix}" if stem else f"invoice{suffix}"


# -- text ---------------------------------------------------------------------

_LINE_BREAKS = re.compile("\r\n|[\n\r\x0b\x0c\x85\u2028\u2029]")
# Control, format (bidi overrides, zero-width), surrogate, private-use and
# unassigned code points: invisible at best, spoofing at worst.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_SPACES = re.compile(r"[ \t]+")


def _clean(text: str, *, multiline: bool = False) -> str:
    """``text`` as it may appear on an invoice: NFC, no control characters,
    whitespace tidied, line breaks kept only where ``multiline``."""
    # Printable text has no line breaks and nothing in _DROPPED_CATEGORIES.
    if not (text.isprintable() and unicodedata.is_normalized("NFC", text)):
        text = _LINE_BREAKS.sub("\n" if multiline else " ", unicodedata.normalize("NFC", text))
        text = "".join(
            ch
            for ch in text
            if ch == "\n" or ch == "\t" or unicodedata.category(ch) not in _DROPPED_CATEGORIES
        )
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


# -- what the PDF says ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    description: str
    quantity: str
    unit_price: str
    amount: str


@dataclass(frozen=True, slots=True)
class _Content:
    """Every string the PDF shows, cleaned and formatted, before any drawing."""

    title: str
    merchant_name: str
    merchant_address: str
    bill_to_label: str
    bill_to: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]
    header: _Row
    rows: tuple[_Row, ...]
    totals: tuple[tuple[str, str], ...]
    emphasised_totals: int
    """How many of the last ``totals`` are drawn in bold."""
    payment: tuple[tuple[str, str], ...]
    footer: str
    page_label: str


def _bill_to(document: InvoiceDocument) -> tuple[str, ...]:
    """Who the invoice is made out to: its billing details (name, address,
    country, tax ID) when it has them, then the customer's email."""
    details = document.invoice.billing_details
    # An erased customer's placeholder address is nobody's to show.
    email = () if document.customer.is_erased else (document.customer.email,)
    if details is None:
        return (document.customer.name, *email)
    return (*bill_to_lines(details, document.locale), *email)


def _content(document: InvoiceDocument) -> _Content:
    invoice, labels, locale = document.invoice, document.labels, Locale.parse(document.locale)

    @functools.cache  # amounts repeat: a line's price and amount, the subtotal and total
    def money(amount: int) -> str:
        return format_money(Money(amount, invoice.currency), locale)

    def date(dt: datetime) -> str:
        return format_date(dt, locale, document.timezone)

    number = _clean(invoice.number)
    facts = [(labels["invoice_number"], number), (labels["date_issued"], date(invoice.issued_at))]
    if invoice.paid_at is not None:
        facts.append((labels["date_paid"], date(invoice.paid_at)))
    facts.append((labels["status"], labels[f"status_{invoice.status.value}"]))

    if invoice.lines:
        rows = tuple(
            _Row(
                _clean(line.description, multiline=True),
                str(format_decimal(line.quantity, locale=locale)),
                money(line.unit_amount),
                money(line.amount),
            )
            for line in invoice.lines
        )
    else:  # an invoice stored without lines still says what it was for
        rows = (_Row(_clean(invoice.description, multiline=True), "", "", money(invoice.subtotal)),)

    totals = [
        (labels["subtotal"], money(invoice.subtotal)),
        (labels["tax"], money(invoice.tax)),
        (labels["total"], money(invoice.total)),
    ]
    if invoice.status is InvoiceStatus.OPEN:
        totals.append((labels["amount_due"], money(invoice.total)))

    payment: list[tuple[str, str]] = []
    if invoice.status in (InvoiceStatus.PAID, InvoiceStatus.REFUNDED):
        if invoice.payment_method is not None:
            payment.append((labels["paid_with"], _clean(format_payment_method(invoice.payment_method))))
        if invoice.payment_reference:
            payment.append((labels["payment_reference"], _clean(invoice.payment_reference)))

    title = _clean(labels["invoice"])
    return _Content(
        title=title,
        merchant_name=_clean(document.merchant_name),
        merchant_address=_clean(document.merchant_address, multiline=True),
        bill_to_label=_clean(labels["bill_to"]),
        bill_to=tuple(text for text in (_clean(line) for line in _bill_to(document)) if text),
        facts=tuple((_clean(label), _clean(value)) for label, value in facts),
        header=_Row(
            _clean(labels["description"]),
            _clean(labels["quantity"]),
            _clean(labels["unit_price"]),
            _clean(labels["amount"]),
        ),
        rows=rows,
        totals=tuple((_clean(label), value) for label, value in totals),
        emphasised_totals=len(totals) - 2,
        payment=tuple((_clean(label), value) for label, value in payment),
        footer=f"{_clean(document.merchant_name)} \u00b7 {title} {number}",
        page_label=_clean(labels["page_x_of_y"]),
    )


# -- fonts --------------------------------------------------------------------

_FONT_FAMILY = "DejaVuSans"
_FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}

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


class _FontFace:
    """One shipped TTF file, parsed once per process and shared read-only.

    fpdf2 parses a font file each time a document adds it and subsets the
    whole font when the document is saved; for DejaVu Sans that is most of
    the time spent on an invoice. Each document instead gets a copy of the
    parsed metrics with its own glyph usage, and, when it is saved, the font
    already subset to the glyphs it used and compressed (see
    :func:`_invoice_output_type`). A subset is made once per glyph set (from
    the trimmed common program when that covers the glyphs, from the full
    font otherwise) and kept in a small LRU cache: invoices keep using the
    same few glyphs.
    """

    #: Glyph sets whose subset is kept, per face (a subset is 10-30 kB).
    subset_cache_size: ClassVar[int] = 64

    def __init__(self, style: str, filename: str) -> None:
        self.style = style
        self.fontkey = f"{_FONT_FAMILY.lower()}{style}"
        self.path = Path(__file__).with_name("fonts") / filename
        self._lock = threading.Lock()
        self._template: TTFFont | None = None
        self._data = b""
        self._common: tuple[bytes, frozenset[str]] | None = None
        self._subsets: _LRU[frozenset[str], _Program] = _LRU(self.subset_cache_size)

    def template(self) -> TTFFont:
        with self._lock:
            if self._template is None:
                from fpdf import FPDF
                from fpdf.fonts import TTFFont

                self._data = self.path.read_bytes()
                template = TTFFont(FPDF(), self.path, self.fontkey, self.style)
                template.cw = _Widths(template.cw, template.desc.missing_width)
                self._template = template
            return self._template

    def codepoints(self) -> frozenset[int]:
        return frozenset(self.template().cmap)

    def attach(self, pdf: FPDF) -> TTFFont:
        """Make this face usable in ``pdf`` as ``add_font`` would, without parsing it again."""
        from fpdf.fonts import SubsetMap

        template = self.template()
        font = copy.copy(template)
        # Everything a document changes while it is written gets its own copy;
        # the widths are only read (see _Widths).
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
        common, common_glyphs = self._common_program()
        font = _open_font(common if common_glyphs.issuperset(glyph_names) else self._data)
        options = subset.Options(notdef_outline=True, recommended_glyphs=True)
        options.drop_tables += list(_FPDF_DROPPED_TABLES)
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


class _Widths(dict[int, float]):
    """A face's character widths, shared by every document using the face.

    fpdf2 keeps them in a ``defaultdict``, which stores the default width
    for each character looked up that the face lacks; this gives the same
    width without storing anything, so documents never write to it.
    """

    def __init__(self, widths: Mapping[int, float], default: float) -> None:
        super().__init__(widths)
        self.default = default

    def __missing__(self, key: int) -> float:
        return self.default


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


class _LRU(Generic[K, V]):
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
_CID_TO_GID_MAPS: _LRU[bytes, bytes] = _LRU(256)


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


def _to_unicode_cmap(code_to_text: Iterable[tuple[int, str]]) -> bytes:
    """The ``ToUnicode`` CMap saying which text each two-byte code stands for
    (so the PDF can be searched and copied from), written as fpdf2 writes it."""
    from fpdf.output import _build_cmap_blocks

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
        f"{_build_cmap_blocks(entries, 'bfchar')}"
        "endcmap\n"
        "CMapName currentdict /CMap defineresource pop\n"
        "end\n"
        "end"
    ).encode("latin-1")


_FACES = {style: _FontFace(style, filename) for style, filename in _FONT_FILES.items()}


@functools.cache
def _supported_codepoints() -> frozenset[int]:
    return _FACES[""].codepoints() & _FACES["B"].codepoints()


def _renderable(text: str) -> str:
    """``text`` with characters the fonts lack shown as U+FFFD, not dropped."""
    supported = _supported_codepoints()
    return "".join(ch if ch == "\n" or ord(ch) in supported else "\ufffd" for ch in text)


_FACES_BY_KEY = {face.fontkey: face for face in _FACES.values()}


#: fpdf2 releases whose output step the test suite compares, byte for byte,
#: with the renderer's own font writing. Others get fpdf2's public path.
_OUTPUT_STEP_PROVEN_ON = ("2.8.",)


@functools.cache
def _invoice_output_type() -> type[Any] | None:
    """fpdf2's ``OutputProducer`` embedding the shared faces from cached
    programs (see :class:`_FontFace`), or ``None`` if this fpdf2 release is
    not one it was proven on, or lacks what it needs: documents then add
    their fonts with ``add_font`` (slower, the same document)."""
    from fpdf import FPDF_VERSION

    if not str(FPDF_VERSION).startswith(_OUTPUT_STEP_PROVEN_ON):
        return None
    try:
        from fpdf.fonts import TTFFont
        from fpdf.output import CIDSystemInfo, OutputProducer, PDFFont, _tt_font_widths
        from fpdf.syntax import Name, PDFArray, PDFContentStream
    except ImportError:  # pragma: no cover - depends on the fpdf2 release
        return None
    if not all(callable(getattr(OutputProducer, name, None)) for name in ("_add_fonts", "_add_pdf_obj")):
        return None  # pragma: no cover - depends on the fpdf2 release

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
                face = _FACES_BY_KEY.get(getattr(font, "fontkey", ""))
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
                    (code, "".join(map(chr, glyph.unicode)))
                    for glyph, code in used
                    if isinstance(glyph.unicode, tuple) and glyph.unicode
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
                _CID_TO_GID_MAPS.get(_cid_to_gid_map(code_to_glyph), _compress_cid_to_gid_map)
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


# -- drawing ------------------------------------------------------------------

_PAGE_W, _PAGE_H = 210.0, 297.0
_MARGIN_X, _MARGIN_TOP, _MARGIN_BOTTOM = 18.0, 18.0, 24.0
_CONTENT_W = _PAGE_W - 2 * _MARGIN_X
_BOTTOM = _PAGE_H - _MARGIN_BOTTOM
_FOOTER_Y = _PAGE_H - 15.0
#: Description, quantity, unit price and amount column widths (mm).
_COLUMNS = (88.0, 20.0, 33.0, 33.0)
_ROW_LINE_H = 4.8
_ROW_PAD = 1.8

_INK = (33, 37, 41)
_MUTED = (108, 117, 125)
_RULE = (206, 212, 218)


def _character_widths(pdf: FPDF, style: str) -> Mapping[int, float]:
    from fpdf.fonts import TTFFont

    font = pdf.fonts[_FACES[style].fontkey]
    if not isinstance(font, TTFFont):  # pragma: no cover - fonts are added by the renderer
        raise TypeError(f"expected the embedded {_FONT_FAMILY} font, got {font!r}")
    return font.cw


class _Layout:
    """Draws one :class:`_Content` on an A4 fpdf2 document.

    It runs twice: a dry run that only measures, to count the pages, then
    the drawing, which puts "Page 1 of 3" on each page as it finishes it.
    Every piece of text goes through :meth:`_text`, which draws with
    ``FPDF.text``: fpdf2 never breaks pages or rewrites text on its own.
    """

    def __init__(self, pdf: FPDF, content: _Content) -> None:
        self.pdf = pdf
        self.content = content
        self.dry_run = True
        self.pages = 0
        self.page = 0
        self._font_key: tuple[bool, float] = (False, 0.0)
        self._size_pt = 0.0
        self._applied: tuple[bool, float, tuple[int, int, int]] | None = None
        self._face_widths = {bold: _character_widths(pdf, face) for bold, face in ((False, ""), (True, "B"))}
        self._widths = self._face_widths[False]
        self._splits: dict[tuple[bool, float, float, str], list[str]] = {}

    def draw(self) -> None:
        self.dry_run, self.page = True, 0
        self._run()
        self.pages = self.page
        self.dry_run, self.page = False, 0
        self._run()

    def _run(self) -> None:
        self._start_page()
        y = self._heading(_MARGIN_TOP)
        y = self._parties(y + 9)
        y = self._lines(y + 9)
        y = self._totals(y + 4)
        self._payment(y + 8)
        self._finish_page()

    # one block each, taking the top y and returning the bottom y

    def _heading(self, y: float) -> float:
        c = self.content
        left_w = _CONTENT_W * 0.58
        self._font(12, bold=True)
        bottom = self._wrap(_MARGIN_X, y, left_w, 6, c.merchant_name, max_lines=2)
        if c.merchant_address:
            self._font(9, color=_MUTED)
            bottom = self._wrap(_MARGIN_X, bottom + 1, left_w, 4.4, c.merchant_address, max_lines=8)
        self._font(20, bold=True)
        title_w = _CONTENT_W - left_w
        title_bottom = self._wrap(_MARGIN_X + left_w, y - 1, title_w, 9, c.title, align="R", max_lines=2)
        return max(bottom, title_bottom)

    def _parties(self, y: float) -> float:
        c = self.content
        left_w = 80.0
        self._font(8.5, color=_MUTED)
        left = self._wrap(_MARGIN_X, y, left_w, 4.6, c.bill_to_label, max_lines=2)
        for index, text in enumerate(c.bill_to):
            self._font(10 if index == 0 else 9.5, bold=index == 0)
            left = self._wrap(_MARGIN_X, left + 0.6, left_w, 5, text, max_lines=3)

        label_x, label_w = _MARGIN_X + 94.0, 32.0
        value_x = label_x + label_w
        value_w = _MARGIN_X + _CONTENT_W - value_x
        right = y
        for label, value in c.facts:
            self._font(8.5, color=_MUTED)
            label_bottom = self._wrap(label_x, right + 0.3, label_w, 4.6, label, max_lines=2)
            self._font(9.5)
            value_bottom = self._wrap(value_x, right, value_w, 5, value, align="R", max_lines=3)
            right = max(label_bottom, value_bottom) + 0.6
        return max(left, right)

    def _lines(self, y: float) -> float:
        y = self._table_header(y)
        room_on_fresh_page = _BOTTOM - self._table_header(_MARGIN_TOP, measure_only=True)
        for row in self.content.rows:
            self._font(9.5)
            wrapped = self._split(_COLUMNS[0], row.description)
            height = 2 * _ROW_PAD + len(wrapped) * _ROW_LINE_H
            # A row stays on one page, unless it is longer than a page.
            if y + height > _BOTTOM and height <= room_on_fresh_page:
                y = self._table_header(self._new_page())
            first = True
            while wrapped:
                fitting = int((_BOTTOM - y - 2 * _ROW_PAD) // _ROW_LINE_H)
                if fitting < 1:
                    y = self._table_header(self._new_page())
                    continue
                y = self._row(y, wrapped[:fitting], row if first else None)
                wrapped, first = wrapped[fitting:], False
        return y

    def _totals(self, y: float) -> float:
        c = self.content
        if y + len(c.totals) * 6.2 + 1.4 > _BOTTOM:
            y = self._new_page()
        label_w, value_w = 48.0, _COLUMNS[2] + _COLUMNS[3] - 6
        value_x = _MARGIN_X + _CONTENT_W - value_w
        label_x = value_x - label_w
        first_bold = len(c.totals) - c.emphasised_totals
        for index, (label, value) in enumerate(c.totals):
            bold = index >= first_bold
            if index == first_bold:
                self._rule(label_x, y + 0.6, _MARGIN_X + _CONTENT_W)
                y += 1.4
            self._font(10.5 if bold else 9.5, bold=bold)
            self._text(label_x, y, label_w, 6, label, align="R", truncate=True)
            self._text(value_x, y, value_w, 6, value, align="R")
            y += 6.2
        return y

    def _payment(self, y: float) -> float:
        payment = self.content.payment
        if not payment:
            return y
        label_w = 42.0
        value_w = _CONTENT_W - label_w
        height = 0.0
        for label, value in payment:
            self._font(8.5, color=_MUTED)
            label_h = 0.3 + min(len(self._split(label_w, label)), 2) * 4.6
            self._font(9.5)
            height += max(label_h, min(len(self._split(value_w, value)), 2) * 5) + 0.6
        if y + height > _BOTTOM:
            y = self._new_page()
        for label, value in payment:
            self._font(8.5, color=_MUTED)
            label_bottom = self._wrap(_MARGIN_X, y + 0.3, label_w, 4.6, label, max_lines=2)
            self._font(9.5)
            value_bottom = self._wrap(_MARGIN_X + label_w, y, value_w, 5, value, max_lines=2)
            y = max(label_bottom, value_bottom) + 0.6
        return y

    def _footer(self) -> None:
        self._rule(_MARGIN_X, _FOOTER_Y - 2, _MARGIN_X + _CONTENT_W)
        self._font(8, color=_MUTED)
        page_text = self.content.page_label % {"page": self.page, "pages": self.pages}
        page_w = min(self._measure(page_text) + 2 * self.pdf.c_margin + 1, _CONTENT_W / 2)
        left_w = _CONTENT_W - page_w
        self._text(_MARGIN_X, _FOOTER_Y, left_w, 5, self.content.footer, truncate=True)
        self._text(_MARGIN_X + left_w, _FOOTER_Y, page_w, 5, page_text, align="R", truncate=True)

    # table pieces

    def _table_header(self, y: float, *, measure_only: bool = False) -> float:
        """Column titles, on the first page of the table and each page after."""
        header = self.content.header
        self._font(8.5, bold=True, color=_MUTED)
        cells = list(
            zip(
                _COLUMNS, (header.description, header.quantity, header.unit_price, header.amount), strict=True
            )
        )
        height = max(len(self._split(width, text)[:2]) for width, text in cells) * 4.6
        if not measure_only:
            x = _MARGIN_X
            for index, (width, text) in enumerate(cells):
                self._wrap(x, y + _ROW_PAD, width, 4.6, text, align="L" if index == 0 else "R", max_lines=2)
                x += width
            self._rule(_MARGIN_X, y + 2 * _ROW_PAD + height, _MARGIN_X + _CONTENT_W, width=0.35)
        return y + 2 * _ROW_PAD + height

    def _row(self, y: float, description: Sequence[str], row: _Row | None) -> float:
        """Lines of one invoice line; the numbers only next to its first lines."""
        self._font(9.5)
        top = y + _ROW_PAD
        for index, text in enumerate(description):
            self._text(_MARGIN_X, top + index * _ROW_LINE_H, _COLUMNS[0], _ROW_LINE_H, text)
        if row is not None:
            x = _MARGIN_X + _COLUMNS[0]
            numbers = (row.quantity, row.unit_price, row.amount)
            for width, text in zip(_COLUMNS[1:], numbers, strict=True):
                self._text(x, top, width, _ROW_LINE_H, text, align="R", truncate=True)
                x += width
        y = top + len(description) * _ROW_LINE_H + _ROW_PAD
        self._rule(_MARGIN_X, y, _MARGIN_X + _CONTENT_W)
        return y

    # pages

    def _start_page(self) -> None:
        self.page += 1
        if not self.dry_run:
            self.pdf.add_page()

    def _finish_page(self) -> None:
        if not self.dry_run:
            self._footer()

    def _new_page(self) -> float:
        self._finish_page()
        self._start_page()
        return _MARGIN_TOP

    # primitives

    def _font(self, size: float, *, bold: bool = False, color: tuple[int, int, int] = _INK) -> None:
        self._font_key = (bold, size)
        self._size_pt = size
        self._widths = self._face_widths[bold]
        if not self.dry_run and (bold, size, color) != self._applied:
            # fpdf2 keeps font and colour across pages: only changes need telling.
            self._applied = (bold, size, color)
            self.pdf.set_font(_FONT_FAMILY, "B" if bold else "", size)
            self.pdf.set_text_color(*color)

    def _measure(self, text: str) -> float:
        """Width of ``text`` in the current font, as ``FPDF.get_string_width``
        computes it for unshaped text, without its per-call overhead."""
        widths = self._widths
        return sum(widths[ord(ch)] for ch in text) * self._size_pt * 0.001 / self.pdf.k

    def _split(self, width: float, text: str) -> list[str]:
        """``text`` broken into lines that fit ``width``: at spaces, or inside
        a word only when the word alone is wider than the line."""
        key = (*self._font_key, width, text)
        cached = self._splits.get(key)
        if cached is not None:
            return cached
        room = width - 2 * self.pdf.c_margin
        measure = self._measure
        lines: list[str] = []
        for paragraph in _renderable(text).split("\n"):
            line = ""
            for word in paragraph.split(" "):
                candidate = f"{line} {word}" if line else word
                if measure(candidate) <= room:
                    line = candidate
                    continue
                if line:
                    lines.append(line)
                while len(word) > 1 and measure(word) > room:
                    cut = 1
                    while cut < len(word) - 1 and measure(word[: cut + 1]) <= room:
                        cut += 1
                    lines.append(word[:cut])
                    word = word[cut:]
                line = word
            lines.append(line)
        self._splits[key] = lines
        return lines

    def _wrap(
        self,
        x: float,
        y: float,
        width: float,
        line_h: float,
        text: str,
        *,
        align: str = "L",
        max_lines: int,
    ) -> float:
        """``text`` over as many lines as it needs, up to ``max_lines`` (the
        last one then ends in an ellipsis); returns the y below it."""
        lines = self._split(width, text)
        if len(lines) > max_lines:
            lines = [*lines[: max_lines - 1], f"{lines[max_lines - 1]} {' '.join(lines[max_lines:])}"]
        for index, line in enumerate(lines):
            self._text(x, y + index * line_h, width, line_h, line, align=align, truncate=True)
        return y + len(lines) * line_h

    def _text(
        self,
        x: float,
        y: float,
        width: float,
        height: float,
        text: str,
        *,
        align: str = "L",
        truncate: bool = False,
    ) -> None:
        """One line in the box at ``x, y``, vertically centred as ``FPDF.cell`` would;
        cut short with an ellipsis if ``truncate`` and it does not fit."""
        if self.dry_run or not text:
            return
        pdf = self.pdf
        text = _renderable(text)
        room = width - 2 * pdf.c_margin
        text_w = self._measure(text)
        if truncate and text_w > room:
            while text and self._measure(text + "\u2026") > room:
                text = text[:-1]
            text = text.rstrip() + "\u2026"
            text_w = self._measure(text)
        left = x + pdf.c_margin if align == "L" else x + width - pdf.c_margin - text_w
        pdf.text(left, y + 0.5 * height + 0.3 * pdf.font_size, text)

    def _rule(self, x1: float, y: float, x2: float, *, width: float = 0.2) -> None:
        if self.dry_run:
            return
        self.pdf.set_draw_color(*_RULE)
        self.pdf.set_line_width(width)
        self.pdf.line(x1, y, x2, y)


class FPDFInvoiceRenderer:
    """The default :class:`InvoiceRenderer`: an A4 invoice drawn with fpdf2.

    DejaVu Sans (shipped in the package) is embedded, subset to the glyphs
    used, so names and addresses in Latin, Greek and Cyrillic scripts print
    as written; a character the font lacks prints as U+FFFD rather than
    vanishing. Right-to-left and complex scripts would need text shaping
    (uharfbuzz), which this renderer does not use. Safe to share between
    threads.
    """

    #: Reuse each font's parsed metrics across documents (see :class:`_FontFace`).
    #: Off, fonts go through fpdf2's public ``add_font``; the PDF is the same.
    _share_parsed_fonts: ClassVar[bool] = True

    def render(self, document: InvoiceDocument) -> bytes:
        try:
            from fpdf import FPDF
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "FPDFInvoiceRenderer needs fpdf2: pip install 'flask-customer-portal[pdf]'"
            ) from exc

        content = _content(document)
        pdf = FPDF(orientation="P", unit="mm", format="A4")
        # fpdf2 replaces "{nb}" in text by the page count unless told not to;
        # an invoice line must print as written.
        pdf.alias_nb_pages("")
        pdf.set_margins(_MARGIN_X, _MARGIN_TOP, _MARGIN_X)
        pdf.set_auto_page_break(False)  # the layout breaks pages itself
        pdf.set_title(f"{content.title} {_clean(document.invoice.number)}")
        pdf.set_author(content.merchant_name)
        pdf.set_subject(_clean(document.invoice.description))
        pdf.set_creator("flask-customer-portal")
        pdf.set_lang(document.locale.replace("_", "-"))
        # Also seeds the file identifier: the same invoice gives the same bytes.
        pdf.set_creation_date(document.invoice.issued_at)

        output_type = _invoice_output_type() if self._share_parsed_fonts else None
        for face in _FACES.values():
            if output_type is not None:
                face.attach(pdf)
            else:
                from fpdf.fonts import TTFFont

                pdf.add_font(_FONT_FAMILY, face.style, face.path)
                added = pdf.fonts[face.fontkey]
                if isinstance(added, TTFFont):
                    added.ttfont.recalcBBoxes = False  # as _open_font does

        _Layout(pdf, content).draw()
        if output_type is None:
            return bytes(pdf.output())
        return bytes(pdf.output(output_producer_class=output_type))


def default_invoice_renderer() -> InvoiceRenderer | None:
    """The renderer the portal uses when the app gives none: an
    :class:`FPDFInvoiceRenderer` if fpdf2 can be imported, else ``None``
    (the portal then offers no PDFs)."""
    try:
        import fpdf  # noqa: F401 - imported only to learn whether it is installed
    except ImportError:
        return None
    return FPDFInvoiceRenderer()
