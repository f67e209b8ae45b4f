"""The default invoice renderer: :class:`FPDFInvoiceRenderer` lays an
:class:`~flask_customer_portal.pdf.document.InvoiceDocument` out on A4 pages
with fpdf2 (the ``pdf`` extra). fpdf2 is imported only when a PDF is drawn,
so this module imports without it.

Rendering is deterministic: the same document gives byte-identical PDFs (the
creation date is the invoice's issue time), so a PDF can be cached, hashed or
compared in tests.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from babel import Locale
from babel.numbers import format_decimal

from ..formatting import format_date, format_payment_method, localize_dates
from ..money import Money, format_money
from ..storage import InvoiceLine, InvoiceStatus
from ..tax_ids import bill_to_lines
from .bidi_text import reshaped, visual
from .document import CreditNoteDocument, InvoiceDocument, InvoiceRenderer
from .fallback_fonts import FallbackFont, find_fallback_fonts, subset_file, warn_missing_glyph
from .fonts import FontMetrics, SharedFonts

if TYPE_CHECKING:
    from fpdf import FPDF

__all__ = ["FPDFInvoiceRenderer", "default_invoice_renderer"]


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


def _line_rows(lines: Sequence[InvoiceLine], locale: Locale, money: Callable[[int], str]) -> tuple[_Row, ...]:
    """A table row per line of an invoice or a credit note."""
    return tuple(
        _Row(
            _clean(localize_dates(line.description, locale), multiline=True),
            str(format_decimal(line.quantity, locale=locale)),
            money(line.unit_amount),
            money(line.amount),
        )
        for line in lines
    )


def _assemble(
    document: InvoiceDocument | CreditNoteDocument,
    *,
    bill_to: Sequence[str],
    title: str,
    number: str,
    facts: Sequence[tuple[str, str]],
    rows: tuple[_Row, ...],
    totals: Sequence[tuple[str, str]],
    emphasised_totals: int,
    payment: Sequence[tuple[str, str]],
) -> _Content:
    """One document's content: its own facts, rows, totals and payment
    lines (amounts formatted already), under the merchant's header and the
    labels every document shares, each text cleaned."""
    labels = document.labels
    title = _clean(title)
    return _Content(
        title=title,
        merchant_name=_clean(document.merchant_name),
        merchant_address=_clean(document.merchant_address, multiline=True),
        bill_to_label=_clean(labels["bill_to"]),
        bill_to=tuple(text for text in (_clean(line) for line in bill_to) if text),
        facts=tuple((_clean(label), _clean(value)) for label, value in facts),
        header=_Row(
            _clean(labels["description"]),
            _clean(labels["quantity"]),
            _clean(labels["unit_price"]),
            _clean(labels["amount"]),
        ),
        rows=rows,
        totals=tuple((_clean(label), value) for label, value in totals),
        emphasised_totals=emphasised_totals,
        payment=tuple((_clean(label), value) for label, value in payment),
        footer=f"{_clean(document.merchant_name)} \u00b7 {title} {number}",
        page_label=_clean(labels["page_x_of_y"]),
    )


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
    status = "partially_refunded" if invoice.partially_refunded else invoice.status.value
    if invoice.fully_refunded:
        status = "refunded"
    facts.append((labels["status"], labels[f"status_{status}"]))

    # Stored descriptions carry ISO dates; the document reads in its language.
    if invoice.lines:
        rows = _line_rows(invoice.lines, locale, money)
    else:  # an invoice stored without lines still says what it was for
        rows = (
            _Row(
                _clean(localize_dates(invoice.description, locale), multiline=True),
                "",
                "",
                money(invoice.subtotal),
            ),
        )

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
    # Refunds after the payment: what went back, and each credit note.
    if invoice.amount_refunded:
        payment.append((labels["refunded"], money(-invoice.amount_refunded)))
    if invoice.amount_credited > invoice.amount_refunded:
        payment.append((labels["credited"], money(-(invoice.amount_credited - invoice.amount_refunded))))
    for note in invoice.credit_notes:
        payment.append(
            (
                labels["credit_note_issued"] % {"number": _clean(note.number), "date": date(note.issued_at)},
                money(-note.amount),
            )
        )

    return _assemble(
        document,
        bill_to=_bill_to(document),
        title=labels["invoice"],
        number=number,
        facts=facts,
        rows=rows,
        totals=totals,
        emphasised_totals=len(totals) - 2,
        payment=payment,
    )


def _credit_note_content(document: CreditNoteDocument) -> _Content:
    note, invoice, labels = document.credit_note, document.invoice, document.labels
    locale = Locale.parse(document.locale)

    def money(amount: int) -> str:
        return format_money(Money(amount, note.currency), locale)

    number = _clean(note.number)
    facts = [
        (labels["credit_note_number"], number),
        (labels["date_issued"], format_date(note.issued_at, locale, document.timezone)),
        (labels["invoice_number"], _clean(invoice.number)),
    ]
    if note.reason is not None:
        facts.append((labels["reason"], labels[f"reason_{note.reason.value}"]))
    if note.lines:
        rows = _line_rows(note.lines, locale, money)
    else:
        rows = (
            _Row(
                _clean(labels["credit_for_invoice"] % {"number": _clean(invoice.number)}),
                "",
                "",
                money(note.amount),
            ),
        )
    totals = [(labels["total_credited"], money(note.amount))]
    payment = []
    if note.refunded:
        payment.append((labels["refunded"], money(note.refunded)))
    if note.amount > note.refunded:
        payment.append((labels["credited"], money(note.amount - note.refunded)))
    if note.memo:
        payment.append((labels["note"], _clean(note.memo)))
    invoice_document = InvoiceDocument(
        invoice=invoice,
        customer=document.customer,
        merchant_name=document.merchant_name,
        locale=document.locale,
    )
    return _assemble(
        document,
        bill_to=_bill_to(invoice_document),
        title=labels["credit_note"],
        number=number,
        facts=facts,
        rows=rows,
        totals=totals,
        emphasised_totals=1,
        payment=payment,
    )


@dataclass(frozen=True, slots=True)
class _Meta:
    """What the PDF file says about itself."""

    number: str
    subject: str
    created: datetime
    locale: str


# -- fonts --------------------------------------------------------------------

_FONT_FAMILY = "DejaVuSans"
_FONT_DIR = Path(__file__).resolve().parent.parent / "fonts"
_FONT_FILES = {"": _FONT_DIR / "DejaVuSans.ttf", "B": _FONT_DIR / "DejaVuSans-Bold.ttf"}

#: The faces embedded from programs shared by every document of the process,
#: on the fpdf2 releases this was proven on (see :mod:`.fonts`).
_SHARED_FONTS = SharedFonts(_FONT_FAMILY, _FONT_FILES)


@functools.cache
def _metrics(style: str) -> FontMetrics:
    """Widths and characters of one face, read once per process."""
    return FontMetrics.read(_FONT_FILES[style])


@functools.cache
def _supported_codepoints() -> frozenset[int]:
    return _metrics("").codepoints & _metrics("B").codepoints


def _renderable(text: str) -> str:
    """``text`` with characters the fonts lack shown as U+FFFD, not dropped."""
    supported = _supported_codepoints()
    return "".join(ch if ch == "\n" or ord(ch) in supported else "\ufffd" for ch in text)


def _add_public_fonts(pdf: FPDF) -> None:
    """The faces added with fpdf2's public ``add_font`` (any release)."""
    for style, path in _FONT_FILES.items():
        pdf.add_font(_FONT_FAMILY, style, path)
        # Keep glyph bounding boxes as the font has them, as the shared path
        # does (the same bytes either way); a release without this attribute
        # recomputes them, which changes nothing a reader sees.
        ttfont = getattr(pdf.fonts.get(f"{_FONT_FAMILY.lower()}{style}"), "ttfont", None)
        if ttfont is not None and hasattr(ttfont, "recalcBBoxes"):
            ttfont.recalcBBoxes = False


def _close_public_fonts(pdf: FPDF) -> None:
    """Close the font files ``add_font`` opened, for a document never written."""
    for font in pdf.fonts.values():
        ttfont = getattr(font, "ttfont", None)
        if ttfont is not None and callable(getattr(ttfont, "close", None)):
            ttfont.close()


def _texts(content: _Content) -> Iterator[str]:
    """Every string of ``content``."""
    yield from (content.title, content.merchant_name, content.merchant_address, content.bill_to_label)
    yield from content.bill_to
    for pair in (*content.facts, *content.totals, *content.payment):
        yield from pair
    for row in (content.header, *content.rows):
        yield from (row.description, row.quantity, row.unit_price, row.amount)
    yield from (content.footer, content.page_label)


@functools.cache
def _fallback_fonts(paths: tuple[str, ...] | None) -> tuple[FallbackFont, ...]:
    return find_fallback_fonts(paths)


def _right_to_left(locale: str) -> bool:
    return bool(Locale.parse(locale).character_order == "right-to-left")


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


class _Layout:
    """Draws one :class:`_Content` on an A4 fpdf2 document.

    It runs twice: a dry run that only measures, to count the pages, then
    the drawing, which puts "Page 1 of 3" on each page as it finishes it.
    Every piece of text goes through :meth:`_text`, which draws with
    ``FPDF.text``: fpdf2 never breaks pages or rewrites text on its own.
    """

    def __init__(
        self,
        pdf: FPDF,
        content: _Content,
        *,
        right_to_left: bool = False,
        fallbacks: tuple[FallbackFont, ...] = (),
    ) -> None:
        self.pdf = pdf
        self.content = content
        #: Fonts added for characters DejaVu Sans lacks, in the order tried.
        self.fallbacks = fallbacks
        self._dejavu = _supported_codepoints()
        #: Mirror the page: every box and rule is drawn at its mirror image
        #: across the page's middle, and left and right alignments swap.
        self.right_to_left = right_to_left
        self.dry_run = True
        self.pages = 0
        self.page = 0
        self._font_key: tuple[bool, float] = (False, 0.0)
        self._size_pt = 0.0
        self._applied: tuple[bool, float, tuple[int, int, int]] | None = None
        self._face_widths = {bold: _metrics(face).widths for bold, face in ((False, ""), (True, "B"))}
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
        text = reshaped(text)
        if not self.fallbacks:
            widths = self._widths
            return sum(widths[ord(ch)] for ch in text) * self._size_pt * 0.001 / self.pdf.k
        return sum(self._run_width(face, run) for face, run in self._runs(text))

    def _face(self, ch: str) -> int:
        """0 for DejaVu Sans, 1 + the index of the first fallback font that
        has ``ch``; 0 too when none has it (it is drawn as U+FFFD anyway)."""
        code = ord(ch)
        if code in self._dejavu:
            return 0
        for index, fallback in enumerate(self.fallbacks):
            if code in fallback.metrics.codepoints:
                return index + 1
        return 0

    def _runs(self, text: str) -> Iterator[tuple[int, str]]:
        """``text`` cut where the font that draws it changes."""
        start, face = 0, -1
        for index, ch in enumerate(text):
            this = self._face(ch)
            if this != face and index > start:
                yield face, text[start:index]
                start = index
            face = this
        if start < len(text):
            yield face, text[start:]

    def _run_width(self, face: int, run: str) -> float:
        widths = self._widths if face == 0 else self.fallbacks[face - 1].metrics.widths
        return sum(widths[ord(ch)] for ch in run) * self._size_pt * 0.001 / self.pdf.k

    def _renderable(self, text: str) -> str:
        """``text`` with characters no font has shown as U+FFFD, not dropped."""
        if not self.fallbacks:
            shown = _renderable(text)
            if "\ufffd" in shown:
                for ch in set(text) - set(shown):
                    warn_missing_glyph(ch)
            return shown
        kept = []
        for ch in text:
            code = ord(ch)
            if (
                ch == "\n"
                or code in self._dejavu
                or any(code in f.metrics.codepoints for f in self.fallbacks)
            ):
                kept.append(ch)
            else:
                warn_missing_glyph(ch)
                kept.append("\ufffd")
        return "".join(kept)

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
        for paragraph in self._renderable(reshaped(text)).split("\n"):
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
        text = self._renderable(reshaped(text))
        room = width - 2 * pdf.c_margin
        text_w = self._measure(text)
        if truncate and text_w > room:
            while text and self._measure(text + "\u2026") > room:
                text = text[:-1]
            text = text.rstrip() + "\u2026"
            text_w = self._measure(text)
        if self.right_to_left:
            x, align = _PAGE_W - x - width, "R" if align == "L" else "L"
        left = x + pdf.c_margin if align == "L" else x + width - pdf.c_margin - text_w
        baseline = y + 0.5 * height + 0.3 * pdf.font_size
        text = visual(text, right_to_left=self.right_to_left)
        if not self.fallbacks:
            pdf.text(left, baseline, text)
            return
        bold, size = self._font_key
        style = "B" if bold else ""
        for face, run in self._runs(text):
            if face == 0:
                pdf.set_font(_FONT_FAMILY, style, size)
            else:
                pdf.set_font(self.fallbacks[face - 1].family, "", size)
            pdf.text(left, baseline, run)
            left += self._run_width(face, run)
        pdf.set_font(_FONT_FAMILY, style, size)

    def _rule(self, x1: float, y: float, x2: float, *, width: float = 0.2) -> None:
        if self.dry_run:
            return
        if self.right_to_left:
            x1, x2 = _PAGE_W - x2, _PAGE_W - x1
        self.pdf.set_draw_color(*_RULE)
        self.pdf.set_line_width(width)
        self.pdf.line(x1, y, x2, y)


class FPDFInvoiceRenderer:
    """The default :class:`InvoiceRenderer`: an A4 invoice drawn with fpdf2.

    DejaVu Sans (shipped in the package) is embedded, subset to the glyphs
    used, so names and addresses in Latin, Greek and Cyrillic scripts print
    as written; a character the font lacks prints as U+FFFD rather than
    vanishing. Arabic and Hebrew print joined and in reading order (see
    :mod:`flask_customer_portal.pdf.bidi_text`), and a document in a
    right-to-left language is laid out mirrored. Safe to share between
    threads.
    """

    #: Embed the fonts from programs shared across documents, on the fpdf2
    #: releases that was proven on (see :mod:`flask_customer_portal.pdf.fonts`).
    #: Off, fonts go through fpdf2's public ``add_font``; the PDF is the same.
    _share_parsed_fonts: ClassVar[bool] = True

    def __init__(self, *, fallback_fonts: Sequence[str] | None = None) -> None:
        """``fallback_fonts``: TrueType files tried, in order, for characters
        DejaVu Sans lacks (``None``: the Debian locations of
        :data:`~flask_customer_portal.pdf.fallback_fonts.DEBIAN_FALLBACK_FONTS`)."""
        self.fallback_fonts = None if fallback_fonts is None else tuple(fallback_fonts)

    def _needed_fallbacks(self, content: _Content) -> tuple[FallbackFont, ...]:
        """The fallback fonts this document draws with: none for most, so
        the fonts are looked for only when a character needs one."""
        supported = _supported_codepoints()
        missing = {
            ord(ch)
            for ch in set("".join(_texts(content)))
            if ord(ch) not in supported and unicodedata.category(ch) not in ("Cf", "Cc")
        }
        if not missing:
            return ()
        needed = []
        for fallback in _fallback_fonts(self.fallback_fonts):
            if missing & fallback.metrics.codepoints:
                needed.append(fallback)
                missing -= fallback.metrics.codepoints
        return tuple(needed)

    def render(self, document: InvoiceDocument) -> bytes:
        try:
            import fpdf  # noqa: F401 - imported only to learn whether it is installed
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "FPDFInvoiceRenderer needs fpdf2: pip install 'flask-customer-portal[pdf]'"
            ) from exc

        invoice = document.invoice
        subject = localize_dates(invoice.description, document.locale)
        meta = _Meta(invoice.number, subject, invoice.issued_at, document.locale)
        return self._render(meta, _content(document))

    def render_credit_note(self, document: CreditNoteDocument) -> bytes:
        """The credit note, laid out as the invoices are (see
        :class:`~flask_customer_portal.pdf.document.CreditNoteRenderer`)."""
        note = document.credit_note
        content = _credit_note_content(document)
        return self._render(
            _Meta(note.number, content.rows[0].description, note.issued_at, document.locale), content
        )

    def _render(self, meta: _Meta, content: _Content) -> bytes:
        try:
            import fpdf  # noqa: F401 - imported only to learn whether it is installed
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "FPDFInvoiceRenderer needs fpdf2: pip install 'flask-customer-portal[pdf]'"
            ) from exc
        fallbacks = self._needed_fallbacks(content)
        shared = _SHARED_FONTS if self._share_parsed_fonts else None
        if shared is None or shared.output_type() is None:
            return self._draw(meta, content, None, fallbacks)
        try:
            return self._draw(meta, content, shared, fallbacks)
        except Exception as exc:  # fpdf2's private classes are not what the shared path expects
            failure = exc
        # The public path draws the same document; if it fails too, the
        # shared fonts were not the cause and its exception is the one raised.
        public = self._draw(meta, content, None, fallbacks)
        shared.give_up(failure)
        return public

    @staticmethod
    def _draw(
        meta: _Meta,
        content: _Content,
        shared: SharedFonts | None,
        fallbacks: tuple[FallbackFont, ...] = (),
    ) -> bytes:
        """The PDF of ``content``, its fonts from ``shared`` or, without it,
        added through fpdf2's public ``add_font``."""
        from fpdf import FPDF

        pdf = FPDF(orientation="P", unit="mm", format="A4")
        # fpdf2 replaces "{nb}" in text by the page count unless told not to;
        # an invoice line must print as written.
        pdf.alias_nb_pages("")
        pdf.set_margins(_MARGIN_X, _MARGIN_TOP, _MARGIN_X)
        pdf.set_auto_page_break(False)  # the layout breaks pages itself
        pdf.set_title(f"{content.title} {_clean(meta.number)}")
        pdf.set_author(content.merchant_name)
        pdf.set_subject(_clean(meta.subject))
        pdf.set_creator("flask-customer-portal")
        pdf.set_lang(meta.locale.replace("_", "-"))
        # Also seeds the file identifier: the same invoice gives the same bytes.
        pdf.set_creation_date(meta.created)

        if shared is not None:
            # Each fallback font whole: its programs are subset per glyph set, once.
            shared.attach(pdf, ((fallback.family, fallback.path) for fallback in fallbacks))
            _Layout(pdf, content, right_to_left=_right_to_left(meta.locale), fallbacks=fallbacks).draw()
            return shared.output(pdf)
        try:
            _add_public_fonts(pdf)
            used = frozenset("".join(_texts(content)))
            for fallback in fallbacks:
                # One face, for bold text too: these fonts rarely come in bold.
                chars = frozenset(ch for ch in used if ord(ch) in fallback.metrics.codepoints)
                pdf.add_font(fallback.family, "", subset_file(fallback.path, chars))
            _Layout(pdf, content, right_to_left=_right_to_left(meta.locale), fallbacks=fallbacks).draw()
            return bytes(pdf.output())
        except BaseException:
            _close_public_fonts(pdf)  # fpdf2 closes them only when the output is written
            raise


def default_invoice_renderer(*, fallback_fonts: Sequence[str] | None = None) -> InvoiceRenderer | None:
    """The renderer the portal uses when the app gives none: an
    :class:`FPDFInvoiceRenderer` if fpdf2 can be imported, else ``None``
    (the portal then offers no PDFs)."""
    try:
        import fpdf  # noqa: F401 - imported only to learn whether it is installed
    except ImportError:
        return None
    return FPDFInvoiceRenderer(fallback_fonts=fallback_fonts)
