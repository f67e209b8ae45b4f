"""Invoice PDFs and the formatting they share with the pages.

A PDF is checked by reading it back with pypdf, the way a customer's viewer
or an accountant's tool would: what matters is the text it says, on which
page, and that the same invoice always gives the same file.
"""

from __future__ import annotations

import io
import re
import threading
import unicodedata
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pypdf import PdfReader

from flask_customer_portal.formatting import (
    format_date,
    format_datetime,
    format_payment_method,
    resolve_timezone,
    to_timezone,
)
from flask_customer_portal.money import Money, format_money
from flask_customer_portal.pdf import (
    FPDFInvoiceRenderer,
    InvoiceDocument,
    InvoiceRenderer,
    default_labels,
    safe_pdf_filename,
)
from flask_customer_portal.pdf import fonts as pdf_fonts
from flask_customer_portal.pdf import layout as pdf_layout
from flask_customer_portal.storage import Customer, Invoice, InvoiceLine, InvoiceStatus, PaymentMethod

ISSUED = datetime(2026, 3, 5, 23, 30, tzinfo=timezone.utc)
PAID = datetime(2026, 3, 6, 1, 15, tzinfo=timezone.utc)

INDONESIAN_LABELS = {
    "invoice": "Faktur",
    "invoice_number": "Nomor faktur",
    "date_issued": "Tanggal terbit",
    "date_paid": "Tanggal dibayar",
    "status": "Status",
    "bill_to": "Ditagihkan kepada",
    "description": "Deskripsi",
    "quantity": "Jml",
    "unit_price": "Harga satuan",
    "amount": "Jumlah",
    "subtotal": "Subtotal",
    "tax": "Pajak",
    "total": "Total",
    "amount_due": "Jumlah terutang",
    "paid_with": "Dibayar dengan",
    "payment_reference": "Referensi pembayaran",
    "page_x_of_y": "Halaman %(page)s dari %(pages)s",
    "status_open": "Terbuka",
    "status_paid": "Lunas",
    "status_void": "Dibatalkan",
    "status_refunded": "Dikembalikan",
}


class PublicFontsRenderer(FPDFInvoiceRenderer):
    """Adds fonts through fpdf2's ``add_font``, as a reference."""

    _share_parsed_fonts = False


SHARED = pdf_layout._SHARED_FONTS

#: Tests of the shared font path itself; on an fpdf2 release it was not
#: proven on, the renderer never uses it (tests/test_pdf_fallback.py).
needs_shared_fonts = pytest.mark.skipif(
    pdf_fonts.fpdf2_release() not in pdf_fonts.PROVEN_FPDF2_RELEASES,
    reason=f"the shared font path is not used on fpdf2 {pdf_fonts.fpdf2_release()}",
)


def make_invoice(
    *,
    lines: tuple[InvoiceLine, ...] | None = None,
    currency: str = "USD",
    status: InvoiceStatus = InvoiceStatus.PAID,
    number: str = "INV-000123",
    customer_id: str = "cus_ava",
    tax: int = 0,
) -> Invoice:
    if lines is None:
        lines = (
            InvoiceLine("Pro plan — March 2026", 1, 1900, 1900),
            InvoiceLine("Extra seats", 3, 500, 1500),
        )
    subtotal = sum(line.amount for line in lines)
    paid = status in (InvoiceStatus.PAID, InvoiceStatus.REFUNDED)
    return Invoice(
        id="in_1",
        number=number,
        customer_id=customer_id,
        status=status,
        currency=currency,
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
        issued_at=ISSUED,
        description="Pro plan — March 2026",
        paid_at=PAID if paid else None,
        payment_reference="pi_3PqXyZ" if paid else None,
        payment_method=PaymentMethod("pm_1", customer_id, "visa", "4242", 12, 2030, "tok_visa")
        if paid
        else None,
        lines=lines,
    )


def make_document(
    invoice: Invoice | None = None,
    *,
    customer_name: str = "Ava Example",
    merchant_name: str = "Acme Software Ltd",
    locale: str = "en",
    tz: str | None = "Asia/Jakarta",
    labels: dict[str, str] | None = None,
) -> InvoiceDocument:
    invoice = invoice or make_invoice()
    return InvoiceDocument(
        invoice=invoice,
        customer=Customer(invoice.customer_id, "ava@example.com", customer_name),
        merchant_name=merchant_name,
        merchant_address="12 High Street\nLondon EC1A 1AA\nUnited Kingdom",
        locale=locale,
        timezone=tz,
        labels=labels if labels is not None else default_labels(),
    )


def render(document: InvoiceDocument) -> bytes:
    return FPDFInvoiceRenderer().render(document)


def pages_text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def all_text(pdf: bytes) -> str:
    return "\n".join(pages_text(pdf))


# -- what an invoice says --------------------------------------------------------


def test_fpdf_renderer_is_an_invoice_renderer() -> None:
    assert isinstance(FPDFInvoiceRenderer(), InvoiceRenderer)


def test_invoice_pdf_states_who_what_and_how_much() -> None:
    invoice = make_invoice(tax=340)
    pdf = render(make_document(invoice))

    assert pdf.startswith(b"%PDF-")
    (text,) = pages_text(pdf)
    for expected in (
        "Acme Software Ltd",
        "London EC1A 1AA",
        "Invoice",
        "INV-000123",
        "Ava Example",
        "ava@example.com",
        "Pro plan — March 2026",
        "Extra seats",
        format_money(Money(500, "USD"), "en"),
        format_money(Money(1500, "USD"), "en"),
        format_money(invoice.subtotal_money, "en"),
        format_money(invoice.tax_money, "en"),
        format_money(invoice.total_money, "en"),
        "Paid",
        "Visa •••• 4242",
        "pi_3PqXyZ",
        "Page 1 of 1",
    ):
        assert expected in text
    assert "$37.40" in text  # the total, spelled out once without format_money


def test_dates_are_shown_in_the_readers_time_zone() -> None:
    jakarta = all_text(render(make_document(tz="Asia/Jakarta")))
    utc = all_text(render(make_document(tz=None)))

    assert "March 6, 2026" in jakarta  # 23:30 UTC is the next morning in Jakarta
    assert "March 5, 2026" not in jakarta
    assert "March 5, 2026" in utc


def test_pdf_metadata_names_the_invoice_and_merchant() -> None:
    reader = PdfReader(io.BytesIO(render(make_document())))

    assert reader.metadata is not None
    assert reader.metadata.title == "Invoice INV-000123"
    assert reader.metadata.author == "Acme Software Ltd"
    assert reader.metadata.creation_date == ISSUED
    assert str(reader.root_object["/Lang"]) == "en"


def test_indonesian_invoice_in_rupiah() -> None:
    lines = (InvoiceLine("Langganan Pro — Maret 2026", 1, 15_000_000, 15_000_000),)
    invoice = make_invoice(lines=lines, currency="IDR", status=InvoiceStatus.OPEN, customer_id="cus_budi")
    document = make_document(
        invoice,
        customer_name="Budi Santoso — Jl. Merdeka No. 5",
        merchant_name="PT Contoh Jaya",
        locale="id",
        labels=INDONESIAN_LABELS,
    )

    pdf = render(document)
    text = all_text(pdf)

    assert format_money(Money(15_000_000, "IDR"), "id") == "Rp150.000"
    for expected in (
        "Faktur",
        "Jumlah",
        "Deskripsi",
        "Budi Santoso — Jl. Merdeka No. 5",
        "Langganan Pro — Maret 2026",
        "Total Rp150.000",
        "Jumlah terutang Rp150.000",
        "Terbuka",
        "6 Maret 2026",
        "Halaman 1 dari 1",
    ):
        assert expected in text
    assert "Rp150.000,00" not in text
    assert "Dibayar dengan" not in text  # an open invoice was not paid with anything
    metadata = PdfReader(io.BytesIO(pdf)).metadata
    assert metadata is not None
    assert metadata.title == "Faktur INV-000123"


@pytest.mark.parametrize(
    ("customer_name", "description"),
    [
        ("Zoë Ångström", "Pro plan — Łódź office, façade & Ærø"),  # the common (trimmed) fonts
        ("Ζωή Σμιθ", "Подписка Pro — март 2026"),  # glyphs beyond them: the full fonts
    ],
)
def test_names_and_descriptions_print_as_written(customer_name: str, description: str) -> None:
    lines = (InvoiceLine(description, 1, 1900, 1900),)
    pdf = render(make_document(make_invoice(lines=lines), customer_name=customer_name))

    text = all_text(pdf)
    assert customer_name in text
    assert description in text


def test_characters_the_font_lacks_show_as_replacement_not_silence() -> None:
    # No font has Egyptian hieroglyphs (CJK comes from a fallback font: tests/test_pdf_languages.py).
    lines = (InvoiceLine("Support \U00013000 plan", 1, 1900, 1900),)
    text = all_text(render(make_document(make_invoice(lines=lines))))

    assert "Support \ufffd plan" in text


def test_control_and_bidi_characters_are_dropped() -> None:
    # U+202E would make a reader show "exe.TXT" as "TXT.exe"; NUL and ESC are invisible.
    lines = (InvoiceLine("Invoice\u202eTXT.exe\x00\x1b plan", 1, 1900, 1900),)
    text = all_text(render(make_document(make_invoice(lines=lines), customer_name="Ava\tExample\r\n")))

    assert "InvoiceTXT.exe plan" in text
    assert "Ava Example" in text


def test_text_that_looks_like_an_fpdf_alias_prints_as_written() -> None:
    lines = (InvoiceLine("Seats {nb} and more", 1, 1900, 1900),)
    assert "Seats {nb} and more" in all_text(render(make_document(make_invoice(lines=lines))))


def test_open_invoice_shows_the_amount_due() -> None:
    invoice = make_invoice(status=InvoiceStatus.OPEN)
    text = all_text(render(make_document(invoice)))

    assert f"Amount due {format_money(invoice.total_money, 'en')}" in text
    assert "Open" in text
    assert "Date paid" not in text
    assert "Paid with" not in text


def test_invoice_stored_without_lines_still_says_what_it_was_for() -> None:
    invoice = replace(make_invoice(), lines=())
    text = all_text(render(make_document(invoice)))

    assert "Pro plan — March 2026" in text
    assert format_money(invoice.subtotal_money, "en") in text


# -- long invoices ---------------------------------------------------------------


def test_sixty_lines_span_pages_with_the_table_header_on_each() -> None:
    lines = tuple(InvoiceLine(f"Line item {n:03d} usage", n, 100, 100 * n) for n in range(1, 61))
    invoice = make_invoice(lines=lines)

    pages = pages_text(render(make_document(invoice)))

    assert len(pages) >= 2
    text = "\n".join(pages)
    for n in range(1, 61):
        assert text.count(f"Line item {n:03d} usage") == 1
    for number, page in enumerate(pages, start=1):
        assert "Description" in page
        assert f"Page {number} of {len(pages)}" in page
    assert format_money(invoice.total_money, "en") in pages[-1]


def test_a_line_longer_than_a_page_continues_on_the_next_one() -> None:
    words = " ".join(f"w{n:04d}" for n in range(1, 901))
    lines = (InvoiceLine(f"Custom work: {words}", 1, 1900, 1900), InvoiceLine("Hosting", 1, 500, 500))

    pages = pages_text(render(make_document(make_invoice(lines=lines))))

    assert len(pages) >= 2
    text = "\n".join(pages)
    assert re.findall(r"w\d{4}", text) == [f"w{n:04d}" for n in range(1, 901)]
    assert text.index("w0900") < text.index("Hosting") < text.index("Total")


def test_very_long_names_are_cut_short_not_run_off_the_page() -> None:
    name = "Ava " + "Longname" * 200
    pages = pages_text(render(make_document(customer_name=name)))

    assert len(pages) == 1
    assert "Ava\nLongnameLongname" in pages[0]
    assert re.search(r"\n[A-Za-z]+\u2026\nava@example\.com\n", pages[0])  # three lines at most


# -- the same invoice, the same bytes ------------------------------------------------


def test_same_document_renders_identical_bytes() -> None:
    document = make_document()
    first = FPDFInvoiceRenderer().render(document)

    assert FPDFInvoiceRenderer().render(document) == first
    assert render(make_document()) == first
    assert render(make_document(make_invoice(status=InvoiceStatus.REFUNDED))) != first


@pytest.mark.parametrize(
    "description",
    ["Pro plan — March 2026", "Подписка Pro — март 2026"],
    ids=["common-glyphs", "other-glyphs"],
)
def test_shared_font_parsing_renders_what_fpdf_add_font_renders(description: str) -> None:
    lines = tuple(InvoiceLine(f"{description} #{n}", 1, 1900, 1900) for n in range(25))
    document = make_document(make_invoice(lines=lines), customer_name="Zoë Ångström")

    assert FPDFInvoiceRenderer().render(document) == PublicFontsRenderer().render(document)


def test_renderer_is_safe_to_share_between_threads() -> None:
    documents = [
        make_document(),
        make_document(make_invoice(lines=(InvoiceLine("Подписка", 1, 1, 1),))),
        make_document(make_invoice(status=InvoiceStatus.OPEN), locale="id", labels=INDONESIAN_LABELS),
    ]
    expected = [render(document) for document in documents]
    renderer = FPDFInvoiceRenderer()
    results: dict[tuple[int, int], bytes] = {}

    def work(worker: int) -> None:
        for index, document in enumerate(documents):
            results[(worker, index)] = renderer.render(document)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(results[(worker, index)] == expected[index] for worker in range(4) for index in range(3))


@needs_shared_fonts
def test_font_subsets_are_made_once_per_glyph_set(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, frozenset[str]]] = []
    original = pdf_fonts._FontFace._make_subset

    def counting(face: pdf_fonts._FontFace, glyph_names: frozenset[str]) -> pdf_fonts._Program:
        made.append((face.style, glyph_names))
        return original(face, glyph_names)

    monkeypatch.setattr(pdf_fonts._FontFace, "_make_subset", counting)
    for face in SHARED.faces.values():
        monkeypatch.setattr(face, "_subsets", pdf_fonts.LRU(pdf_fonts._FontFace.subset_cache_size))
    document = make_document(make_invoice(lines=(InvoiceLine("Quarterly audit — Ωmega", 1, 1, 1),)))

    first = render(document)
    assert sorted(style for style, _ in made) == ["", "B"]
    assert render(document) == first
    assert len(made) == 2  # the second render reused both subsets

    render(make_document(make_invoice(lines=(InvoiceLine("Quarterly audit — Ψ", 1, 1, 1),))))
    assert len(made) == 3  # only the regular face draws the new glyph


def test_font_subset_cache_is_bounded_and_evictions_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for face in SHARED.faces.values():
        monkeypatch.setattr(face, "_subsets", pdf_fonts.LRU(2))
    documents = [
        make_document(make_invoice(lines=(InvoiceLine(f"Seat {letter}", 1, 1, 1),)))
        for letter in ("Ж", "Щ", "Ю", "Ф")
    ]

    first_pass = [render(document) for document in documents]
    second_pass = [render(document) for document in reversed(documents)][::-1]

    assert all(len(face._subsets) <= 2 for face in SHARED.faces.values())
    assert second_pass == first_pass
    assert first_pass == [PublicFontsRenderer().render(document) for document in documents]
    assert all(f"Seat {letter}" in all_text(pdf) for letter, pdf in zip("ЖЩЮФ", first_pass, strict=True))


def test_threads_sharing_a_small_subset_cache_get_each_documents_own_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for face in SHARED.faces.values():
        monkeypatch.setattr(face, "_subsets", pdf_fonts.LRU(1))
    documents = [
        make_document(make_invoice(lines=(InvoiceLine(description, 1, 1, 1),)), locale=locale, labels=labels)
        for description, locale, labels in (
            ("Langganan Pro — Maret 2026", "id", INDONESIAN_LABELS),
            ("Подписка Pro — март 2026", "en", default_labels()),
            ("Συνδρομή Pro — Μάρτιος 2026", "en", default_labels()),
        )
    ]
    expected = [PublicFontsRenderer().render(document) for document in documents]
    renderer = FPDFInvoiceRenderer()
    results: dict[tuple[int, int], bytes] = {}

    def work(worker: int) -> None:
        for round_ in range(3):
            for step in range(len(documents)):
                index = (step + worker + round_) % len(documents)
                results[(worker, index)] = renderer.render(documents[index])

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 4 * len(documents)
    assert all(results[key] == expected[key[1]] for key in results)
    assert "Langganan Pro — Maret 2026" in all_text(results[(0, 0)])


@needs_shared_fonts
def test_shared_fonts_are_written_by_the_renderers_own_output_step(monkeypatch: pytest.MonkeyPatch) -> None:
    output_type = SHARED.output_type()
    assert output_type is not None  # else the comparisons with PublicFontsRenderer compare fpdf2 with itself
    written: list[str] = []
    original = output_type._add_face

    def counting(self: object, font: object, face: pdf_fonts._FontFace) -> object:
        written.append(face.style)
        return original(self, font, face)

    monkeypatch.setattr(output_type, "_add_face", counting)
    render(make_document())
    assert written == ["", "B"]


@needs_shared_fonts
def test_the_same_glyphs_first_used_in_another_order_get_their_own_glyph_map(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pdf_fonts, "CID_TO_GID_MAPS", pdf_fonts.LRU(256))
    # The same glyphs, so the same subset; but the codes are numbered in the
    # order the text first uses each glyph, so the glyph maps differ.
    documents = [
        make_document(make_invoice(lines=(InvoiceLine(description, 1, 1, 1),)))
        for description in ("Ψ Ж Щ", "Щ Ж Ψ")
    ]

    pdfs = [render(document) for document in documents]

    assert pdfs == [PublicFontsRenderer().render(document) for document in documents]
    assert "Ψ Ж Щ" in all_text(pdfs[0])
    assert "Щ Ж Ψ" in all_text(pdfs[1])
    # One map of the bold face (its text is the same in both), two of the regular one.
    assert len(pdf_fonts.CID_TO_GID_MAPS) == 3


@needs_shared_fonts
def test_glyph_map_cache_is_bounded_and_hits_give_what_misses_give(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_fonts, "CID_TO_GID_MAPS", pdf_fonts.LRU(2))
    documents = [
        make_document(make_invoice(lines=(InvoiceLine(f"Seat {letter}", 1, 1, 1),)))
        for letter in ("A", "Ж", "Ω", "Ю")
    ]

    first_pass = [render(document) for document in documents]
    assert len(pdf_fonts.CID_TO_GID_MAPS) == 2
    hits = [render(document) for document in documents[-1:]]
    second_pass = [render(document) for document in documents]

    assert hits == first_pass[-1:]
    assert second_pass == first_pass
    assert first_pass == [PublicFontsRenderer().render(document) for document in documents]
    assert all(f"Seat {letter}" in all_text(pdf) for letter, pdf in zip("AЖΩЮ", first_pass, strict=True))


@needs_shared_fonts
def test_shared_character_widths_are_never_written() -> None:
    template = SHARED.faces[""].template()
    before = dict(template.cw)

    assert template.cw[0x10FFFF] == template.desc.missing_width
    render(make_document(make_invoice(lines=(InvoiceLine("Support 王 plan", 1, 1, 1),))))
    assert dict(template.cw) == before


def _clean_every_character(text: str, *, multiline: bool = False) -> str:
    """:func:`pdf.layout._clean` without its shortcut for text that needs no cleaning."""
    text = pdf_layout._LINE_BREAKS.sub("\n" if multiline else " ", unicodedata.normalize("NFC", text))
    text = "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in pdf_layout._DROPPED_CATEGORIES
    )
    lines = (pdf_layout._SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


@given(
    st.text(
        st.one_of(
            st.characters(),
            st.sampled_from("e\u0301\u212b \t\n\r\u2028\u00a0\u202e\u200b\x00\ue000\ufffd"),
        )
    ),
    st.booleans(),
)
@example("e\u0301cole \u212bngstr\u00f6m", False)  # printable, but not NFC
@example("Line one\u2028line\ttwo\x00", True)
def test_clean_gives_what_cleaning_every_character_gives(text: str, multiline: bool) -> None:
    assert pdf_layout._clean(text, multiline=multiline) == _clean_every_character(text, multiline=multiline)


# -- InvoiceDocument -------------------------------------------------------------


def test_document_refuses_another_customers_invoice() -> None:
    invoice = make_invoice(customer_id="cus_other")
    with pytest.raises(ValueError, match="belongs to customer 'cus_other'"):
        InvoiceDocument(invoice, Customer("cus_ava", "ava@example.com", "Ava"), "Acme")


@pytest.mark.parametrize("field", ["issued_at", "paid_at"])
def test_document_refuses_naive_times(field: str) -> None:
    naive = datetime(2026, 3, 5, 23, 30)
    invoice = (
        replace(make_invoice(), issued_at=naive)
        if field == "issued_at"
        else replace(make_invoice(), paid_at=naive)
    )
    with pytest.raises(ValueError, match=f"naive {field}"):
        make_document(invoice)


def test_document_lists_missing_labels() -> None:
    labels = default_labels()
    del labels["total"], labels["status_void"]
    with pytest.raises(ValueError, match="labels missing: status_void, total"):
        make_document(labels=labels)


@pytest.mark.parametrize("page_label", ["Page %(n)s", "Page %s of %s", "Page %(page)d of %(pages)"])
def test_document_refuses_a_page_label_with_other_placeholders(page_label: str) -> None:
    with pytest.raises(ValueError, match="page_x_of_y"):
        make_document(labels=default_labels() | {"page_x_of_y": page_label})


def test_document_refuses_unknown_time_zone_and_locale() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        make_document(tz="Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="unknown locale"):
        make_document(locale="xx_NOPE")


def test_document_labels_are_a_frozen_copy() -> None:
    labels = default_labels()
    document = make_document(labels=labels)
    labels["invoice"] = "Changed"

    assert document.labels["invoice"] == "Invoice"
    with pytest.raises(TypeError):
        document.labels["invoice"] = "Changed"  # type: ignore[index]
    assert hash(document) == hash(make_document())


def test_default_labels_are_english_and_fresh() -> None:
    labels = default_labels()
    labels["invoice"] = "Changed"

    assert default_labels()["invoice"] == "Invoice"
    assert default_labels()["page_x_of_y"] % {"page": 1, "pages": 2} == "Page 1 of 2"


# -- file names --------------------------------------------------------------------

SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,96}\.pdf")


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("INV-000123", "invoice-INV-000123.pdf"),
        ("2026.03_7", "invoice-2026.03_7.pdf"),
        ("FKT/2026/0001", "invoice-FKT-2026-0001.pdf"),
        ("../../etc/passwd", "invoice-etc-passwd.pdf"),
        ("..\\..\\boot.ini", "invoice-boot.ini.pdf"),
        ("INV\x00-1", "invoice-INV-1.pdf"),
        ("INV-1\r\nSet-Cookie: a=b", "invoice-INV-1-Set-Cookie-a-b.pdf"),
        ('INV"; filename="evil.exe', "invoice-INV-filename-evil.exe.pdf"),
        ("Faktur №12 Ünïcode", "invoice-Faktur-No12-Unicode.pdf"),
        ("王小明", "invoice.pdf"),
        ("", "invoice.pdf"),
        ("...", "invoice.pdf"),
    ],
)
def test_safe_pdf_filename(number: str, expected: str) -> None:
    assert safe_pdf_filename(number) == expected


def test_safe_pdf_filename_caps_the_length() -> None:
    name = safe_pdf_filename("INV-" + "9" * 500)
    assert len(name) <= 100
    assert name.startswith("invoice-INV-999")
    assert name.endswith(".pdf")


@given(st.text())
def test_safe_pdf_filename_is_always_a_plain_pdf_name(number: str) -> None:
    name = safe_pdf_filename(number)
    assert SAFE_NAME.fullmatch(name)
    assert len(name) <= 100
    assert not name.startswith(".")
    assert ".." not in name


# -- formatting ----------------------------------------------------------------------


def test_format_date_converts_to_the_time_zone_first() -> None:
    assert format_date(ISSUED, "en", None) == "March 5, 2026"
    assert format_date(ISSUED, "en", "UTC") == "March 5, 2026"
    assert format_date(ISSUED, "en", "Asia/Jakarta") == "March 6, 2026"
    assert format_date(ISSUED, "id", "Asia/Jakarta") == "6 Maret 2026"
    assert format_date(ISSUED, "en", "America/Los_Angeles") == "March 5, 2026"
    assert format_date(ISSUED, "en", "Asia/Jakarta", format="short") == "3/6/26"


def test_format_date_accepts_any_aware_datetime() -> None:
    jakarta_evening = datetime(2026, 3, 6, 6, 30, tzinfo=timezone(timedelta(hours=7)))
    assert format_date(jakarta_evening, "en", None) == "March 5, 2026"


def test_format_datetime_shows_local_wall_clock_time() -> None:
    assert format_datetime(ISSUED, "en", "Asia/Jakarta") == "Mar 6, 2026, 6:30:00\u202fAM"
    assert format_datetime(ISSUED, "id", "Asia/Jakarta") == "6 Mar 2026 06.30.00"
    assert format_datetime(ISSUED, "en", None) == "Mar 5, 2026, 11:30:00\u202fPM"


@pytest.mark.parametrize("formatter", [format_date, format_datetime])
def test_formatting_refuses_naive_datetimes(formatter: object) -> None:
    assert callable(formatter)
    with pytest.raises(ValueError, match="naive datetime"):
        formatter(datetime(2026, 3, 5, 23, 30), "en", "Asia/Jakarta")


def test_unknown_time_zones_are_refused() -> None:
    for name in ("Mars/Olympus_Mons", "../../etc/passwd", ""):
        with pytest.raises(ValueError, match="unknown time zone"):
            resolve_timezone(name)
    with pytest.raises(ValueError, match="unknown time zone"):
        format_date(ISSUED, "en", "Not/AZone")


def test_to_timezone_keeps_the_instant() -> None:
    local = to_timezone(ISSUED, "Asia/Jakarta")
    assert local == ISSUED
    assert (local.day, local.hour) == (6, 6)


@pytest.mark.parametrize(
    ("brand", "expected"),
    [
        ("visa", "Visa •••• 4242"),
        ("mastercard", "Mastercard •••• 4242"),
        ("amex", "American Express •••• 4242"),
        ("AMEX", "American Express •••• 4242"),
        ("cartes_bancaires", "Cartes Bancaires •••• 4242"),
        ("", "Card •••• 4242"),
    ],
)
def test_format_payment_method(brand: str, expected: str) -> None:
    method = PaymentMethod("pm_1", "cus_ava", brand, "4242", 12, 2030, "tok")
    assert format_payment_method(method) == expected
