"""Invoice PDFs in every shipped language: translated, every character
drawn, right to left where the language is, and small.

Text is read back with pypdf, as a viewer would (it gives right-to-left
runs back in reading order, so a label is found as
:func:`~flask_customer_portal.pdf.bidi_text.reshaped` writes it); positions
come from its text visitor (x of each drawn string, in points from the left
edge)."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import pytest
from babel import Locale
from flask_babel import force_locale
from fontTools.ttLib import TTFont
from portal_fixtures import running_in_ci
from pypdf import PdfReader
from test_pdf import PublicFontsRenderer, all_text, make_document, make_invoice, needs_shared_fonts, render
from untranslated import translated_languages

from flask_customer_portal import i18n
from flask_customer_portal.pdf import FPDFInvoiceRenderer, bidi_text, default_labels
from flask_customer_portal.pdf import fonts as pdf_fonts
from flask_customer_portal.pdf import layout as pdf_layout
from flask_customer_portal.pdf.fallback_fonts import DEBIAN_FALLBACK_FONTS, warn_missing_glyph
from flask_customer_portal.storage import InvoiceLine

LANGUAGES = translated_languages()
PAGE_WIDTH_PT = 595.28
#: A one-page invoice with its fonts subset stays well under this.
MAX_BYTES = 60_000


def _labels(app_language: str, app: object) -> dict[str, str]:
    with app.test_request_context("/portal/"), force_locale(app_language):  # type: ignore[attr-defined]
        return {key: i18n.gettext(text) for key, text in default_labels().items()}


def _strings(pdf: bytes) -> list[tuple[float, str]]:
    """Every string drawn on the first page, with its x."""
    found: list[tuple[float, str]] = []

    def visit(text: str, cm: list[float], tm: list[float], *_: object) -> None:
        if text.strip():
            found.append((tm[4], text.strip()))

    PdfReader(io.BytesIO(pdf)).pages[0].extract_text(visitor_text=visit)
    return found


def _right_to_left(language: str) -> bool:
    return Locale.parse(language).character_order == "right-to-left"


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_invoice_in_each_language(app: object, language: str) -> None:
    labels = _labels(language, app)
    assert labels["total"] != "Total" or language in ("es", "fr", "id", "pt_BR"), (
        "the catalogue is not in use"
    )
    pdf = render(make_document(locale=language, labels=labels))
    drawn = _strings(pdf)
    text = " ".join(string for _, string in drawn)
    assert "\ufffd" not in text, "a character the font lacks"
    rtl = _right_to_left(language)
    for key in ("invoice", "bill_to", "description", "total"):
        expected = bidi_text.reshaped(labels[key])
        assert expected in text, (key, expected)
    assert len(pdf) < MAX_BYTES, len(pdf)
    # The title sits at the right edge left to right, at the left edge right to left.
    title = bidi_text.reshaped(labels["invoice"])
    title_x = next(x for x, string in drawn if string == title)
    assert (title_x < PAGE_WIDTH_PT / 2) == rtl, title_x


def test_arabic_prints_joined_and_in_reading_order(app: object) -> None:
    labels = _labels("ar", app)
    pdf = render(make_document(locale="ar", labels=labels))
    text = " ".join(string for _, string in _strings(pdf))
    # "الإجمالي" (Total) in its joined forms, read back in reading order.
    joined = bidi_text.reshaped("الإجمالي")
    assert joined in text
    assert joined != "الإجمالي" and all(0xFE70 <= ord(ch) <= 0xFEFF for ch in joined), joined
    # Unjoined letters in logical order would be the bug this prevents.
    assert "الإجمالي" not in text


def test_an_arabic_name_on_an_english_invoice_reads_right_to_left() -> None:
    lines = (InvoiceLine("اشتراك Pro — مارس", 1, 1900, 1900),)
    pdf = render(make_document(make_invoice(lines=lines), customer_name="سارة أحمد"))
    text = " ".join(string for _, string in _strings(pdf))
    assert bidi_text.reshaped("سارة أحمد") in text
    assert "\ufffd" not in text
    # English stays laid out left to right: the merchant's name starts at the left margin.
    merchant_x = next(x for x, string in _strings(pdf) if string.startswith("Acme Software Ltd"))
    assert merchant_x < 100


def test_without_the_shaping_libraries_a_pdf_is_still_made(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, app: object
) -> None:
    bidi_text._tools.cache_clear()
    real_import = __import__

    def no_shaping(name: str, *args: object, **kwargs: object) -> object:
        if name in ("arabic_reshaper", "bidi"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", no_shaping)
    try:
        with caplog.at_level(logging.WARNING, logger="flask_customer_portal"):
            pdf = render(make_document(locale="ar", labels=_labels("ar", app)))
    finally:
        monkeypatch.undo()
        bidi_text._tools.cache_clear()
    assert pdf.startswith(b"%PDF")
    assert "pip install 'flask-customer-portal[pdf]'" in caplog.text


# -- scripts DejaVu Sans lacks: a fallback font, embedded only when needed ------

needs_cjk_font = pytest.mark.skipif(
    not all(Path(font).is_file() for font in DEBIAN_FALLBACK_FONTS) and not running_in_ci(),
    reason="CJK fonts missing (apt-get install fonts-droid-fallback fonts-nanum; scripts/system-deps.sh)",
)
CJK_LINES = (InvoiceLine("プロプラン 年額 — 专业版 — 프로 요금제", 1, 1900, 1900),)


@needs_cjk_font
def test_chinese_japanese_and_korean_print_from_a_fallback_font() -> None:
    pdf = render(make_document(make_invoice(lines=CJK_LINES), customer_name="山田太郎"))
    text = all_text(pdf)
    assert "山田太郎" in text
    assert "プロプラン 年額 — 专业版 — 프로 요금제" in text
    assert "\ufffd" not in text
    # Subset to the few glyphs used, not the 4 MB font.
    assert len(pdf) < MAX_BYTES, len(pdf)


@needs_cjk_font
def test_the_fallback_font_is_embedded_only_when_a_document_needs_it() -> None:
    latin = render(make_document())
    cjk = render(make_document(customer_name="山田太郎"))
    assert b"PortalFallback" not in latin and b"Droid" not in latin
    assert b"Droid" in cjk and b"Nanum" not in cjk  # Japanese only: the Korean font stays out


def _embedded_fonts(pdf: bytes) -> dict[str, tuple[TTFont, set[int]]]:
    """Each embedded font by its name: its program, and the glyph ids its
    codes map to (from the ``CIDToGIDMap``), without the two codes fpdf2
    reserves for ``.notdef`` and the space."""
    fonts: dict[str, tuple[TTFont, set[int]]] = {}
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descendant = font["/DescendantFonts"][0].get_object()
            program = descendant["/FontDescriptor"]["/FontFile2"].get_data()
            cid_to_gid = descendant["/CIDToGIDMap"].get_data()
            glyph_ids = {
                int.from_bytes(cid_to_gid[2 * code : 2 * code + 2], "big")
                for code in range(len(cid_to_gid) // 2)
                if code not in (0x00, 0x20)
            }
            fonts[str(font["/BaseFont"])] = (TTFont(io.BytesIO(program)), glyph_ids - {0})
    return fonts


@needs_cjk_font
@pytest.mark.parametrize(
    ("name", "line", "font"),
    [
        ("山田太郎", "プロプラン 年額 3月", "Droid"),
        ("王芳", "专业版订阅 — 3月", "Droid"),
        ("김민준", "프로 요금제 — 3월", "Nanum"),
    ],
)
def test_a_fallback_font_on_the_shared_path_draws_every_glyph(name: str, line: str, font: str) -> None:
    """The shared font path carries the fallback font: the same text as
    fpdf2's own ``add_font`` gives, each character drawn from a glyph with
    an outline, and the font subset to the glyphs used."""
    document = make_document(make_invoice(lines=(InvoiceLine(line, 1, 1900, 1900),)), customer_name=name)
    shared, public = render(document), PublicFontsRenderer().render(document)
    assert name in all_text(shared) and line in all_text(shared)
    assert all_text(shared) == all_text(public)
    fallback = [(program, ids) for key, (program, ids) in _embedded_fonts(shared).items() if font in key]
    assert len(fallback) == 1
    program, glyph_ids = fallback[0]
    drawn = {ch for ch in name + line if ord(ch) > 0x2FFF}
    assert len(glyph_ids) >= len(drawn)
    glyf = program["glyf"]
    assert all(glyf[program.getGlyphName(glyph_id)].numberOfContours != 0 for glyph_id in glyph_ids)
    assert program["maxp"].numGlyphs < 60  # a subset, not the font's tens of thousands
    assert len(shared) < MAX_BYTES and len(shared) < 1.2 * len(public)


@needs_cjk_font
@needs_shared_fonts
def test_a_fallback_font_is_parsed_once_and_each_glyph_set_subset_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[str] = []
    original = pdf_fonts._FontFace._make_subset

    def counting(face: pdf_fonts._FontFace, glyph_names: frozenset[str]) -> pdf_fonts._Program:
        made.append(face.fontkey)
        return original(face, glyph_names)

    monkeypatch.setattr(pdf_fonts._FontFace, "_make_subset", counting)
    fresh = pdf_fonts.SharedFonts(pdf_layout._FONT_FAMILY, pdf_layout._FONT_FILES)
    monkeypatch.setattr(pdf_layout, "_SHARED_FONTS", fresh)
    first = render(make_document(customer_name="山田太郎"))
    assert render(make_document(customer_name="山田太郎")) == first
    assert made.count("portalfallback0") == 1
    render(make_document(customer_name="山田花子"))
    assert made.count("portalfallback0") == 2  # a new glyph: its own subset


@needs_cjk_font
def test_fallback_family_names_of_different_renderers_never_mix_their_fonts() -> None:
    """Each renderer numbers its own fallback fonts: the same family name
    may stand for another file in another renderer."""
    korean_only = FPDFInvoiceRenderer(fallback_fonts=[DEBIAN_FALLBACK_FONTS[1]])
    document = make_document(customer_name="김민준")
    default_pdf, korean_pdf = render(document), korean_only.render(document)
    assert b"Nanum" in default_pdf and b"Nanum" in korean_pdf
    assert "김민준" in all_text(korean_pdf)
    japanese = make_document(customer_name="山田太郎")
    assert b"Droid" in render(japanese)
    assert "\ufffd" in all_text(korean_only.render(japanese))  # Nanum has no kanji; no Droid here


@needs_cjk_font
def test_cjk_documents_rendered_by_threads_at_once_are_each_their_own() -> None:
    names = ["山田太郎", "王芳", "김민준", "佐藤花子", "李明"]
    documents = [make_document(customer_name=name) for name in names]
    expected = [render(document) for document in documents]
    renderer = FPDFInvoiceRenderer()
    results: dict[tuple[int, int], bytes] = {}

    def work(worker: int) -> None:
        for index in range(len(documents)):
            index = (index + worker) % len(documents)
            results[(worker, index)] = renderer.render(documents[index])

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[(worker, i)] == expected[i] for worker in range(4) for i in range(len(documents)))


def test_without_a_font_for_a_script_the_pdf_says_so_and_is_still_made(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    warn_missing_glyph.cache_clear()
    not_a_font = tmp_path / "broken.ttf"
    not_a_font.write_bytes(b"not a font")
    for fonts in ((), (str(tmp_path / "missing.ttf"), str(not_a_font))):
        renderer = FPDFInvoiceRenderer(fallback_fonts=fonts)
        with caplog.at_level(logging.WARNING, logger="flask_customer_portal"):
            pdf = renderer.render(make_document(make_invoice(lines=CJK_LINES), customer_name="山田太郎"))
        assert pdf.startswith(b"%PDF")
        assert "\ufffd\ufffd\ufffd\ufffd" in all_text(pdf)
    assert "CUSTOMER_PORTAL_PDF_FALLBACK_FONTS" in caplog.text
    assert "fonts-droid-fallback" in caplog.text
    assert "cannot use" in caplog.text and "broken.ttf" in caplog.text
    warn_missing_glyph.cache_clear()


def test_the_fallback_fonts_setting(tmp_path: Path) -> None:
    from portal_fixtures import close_app, make_portal_app, sign_in

    from flask_customer_portal.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_PDF_FALLBACK_FONTS"):
        make_portal_app(f"sqlite:///{tmp_path / 'bad.db'}", CUSTOMER_PORTAL_PDF_FALLBACK_FONTS="font.ttf")
    # No fonts at all: a Japanese name prints as U+FFFD, and the page still answers 200.
    app = make_portal_app(f"sqlite:///{tmp_path / 'none.db'}", CUSTOMER_PORTAL_PDF_FALLBACK_FONTS=[])
    try:
        store = app.extensions["customer_portal"].get_state(app).storage
        with app.app_context():
            store.update_profile("cus_demo_ava", name="山田太郎", phone=None)
        client = app.test_client()
        sign_in(app, client, "cus_demo_ava")
        pdf = client.get("/portal/invoices/inv_demo_ava_sync_01/pdf")
        assert pdf.status_code == 200
        assert "\ufffd\ufffd\ufffd\ufffd" in all_text(pdf.data)
    finally:
        close_app(app)
