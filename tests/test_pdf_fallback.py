"""Invoice PDFs on every fpdf2 release the ``pdf`` extra allows.

The shared font path (``flask_customer_portal.pdf.fonts``) uses fpdf2's
private classes, so it runs only on the releases it was proven on; any
other release, and any exception inside it, gets fpdf2's public path: the
same PDF, a warning in the log once, never an error page.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import zipfile

import fpdf
import pytest
from flask import Flask
from flask.testing import FlaskClient
from fpdf.fonts import TTFFont
from pypdf import PdfReader

from flask_customer_portal.pdf import FPDFInvoiceRenderer, InvoiceDocument
from flask_customer_portal.pdf import fonts as pdf_fonts
from flask_customer_portal.pdf import layout as pdf_layout
from flask_customer_portal.pdf.fonts import PROVEN_FPDF2_RELEASES, FontMetrics, SharedFonts
from flask_customer_portal.storage import Customer, Invoice, InvoiceLine, InvoiceStatus

PROVEN = max(PROVEN_FPDF2_RELEASES)
INSTALLED = pdf_fonts.fpdf2_release()

#: For tests that break one thing inside the shared path: on a release it
#: was not proven on, other things break first (see the last test of the
#: next section, which runs on every release).
on_a_proven_release = pytest.mark.skipif(
    INSTALLED not in PROVEN_FPDF2_RELEASES, reason=f"fpdf2 {INSTALLED} is not a proven release"
)


class PublicFontsRenderer(FPDFInvoiceRenderer):
    _share_parsed_fonts = False


def document(description: str = "Pro plan — Ж Ψ ü") -> InvoiceDocument:
    from datetime import datetime, timezone

    invoice = Invoice(
        id="in_1",
        number="INV-7",
        customer_id="cus_1",
        status=InvoiceStatus.OPEN,
        currency="EUR",
        subtotal=1900,
        tax=0,
        total=1900,
        issued_at=datetime(2026, 3, 5, 9, 30, tzinfo=timezone.utc),
        description=description,
        lines=(InvoiceLine(description, 1, 1900, 1900),),
    )
    return InvoiceDocument(invoice, Customer(id="cus_1", email="ava@example.com", name="Ava"), "Acme")


def text_of(pdf: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> SharedFonts:
    """The renderer's shared fonts, new for this test (so a test that makes
    them give up leaves the process's own untouched)."""
    fresh = SharedFonts(pdf_layout._FONT_FAMILY, pdf_layout._FONT_FILES)
    monkeypatch.setattr(pdf_layout, "_SHARED_FONTS", fresh)
    return fresh


@pytest.fixture
def warnings_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="flask_customer_portal")
    return caplog


def portal_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "flask_customer_portal" and record.levelno >= logging.WARNING
    ]


def count_attaches(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    attached: list[object] = []
    original = SharedFonts.attach

    def counting(self: SharedFonts, pdf: object, *fallbacks: object) -> None:
        attached.append(pdf)
        original(self, pdf, *fallbacks)  # type: ignore[arg-type]

    monkeypatch.setattr(SharedFonts, "attach", counting)
    return attached


# -- which release gets which path ---------------------------------------------------


@pytest.mark.parametrize("release", ["2.8.1", "2.8.4", "2.8.5", "2.8.8", "2.8.10", "2.9.0", "3.0.0"])
def test_a_release_the_shared_path_was_not_proven_on_never_tries_it(
    release: str,
    shared: SharedFonts,
    monkeypatch: pytest.MonkeyPatch,
    warnings_logged: pytest.LogCaptureFixture,
) -> None:
    made: list[object] = []
    monkeypatch.setattr(pdf_fonts, "_make_output_type", lambda fonts: made.append(fonts))
    attached = count_attaches(monkeypatch)
    monkeypatch.setattr(fpdf, "FPDF_VERSION", release)

    pdf = FPDFInvoiceRenderer().render(document())

    assert shared.output_type() is None
    assert made == [] and attached == []  # no private name of fpdf2 was even imported
    assert pdf == PublicFontsRenderer().render(document())
    assert "Pro plan — Ж Ψ ü" in text_of(pdf)
    assert portal_warnings(warnings_logged) == []
    assert not shared.given_up


def test_an_fpdf2_without_a_version_gets_the_public_path(
    shared: SharedFonts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(fpdf, "FPDF_VERSION")
    assert shared.output_type() is None
    assert FPDFInvoiceRenderer().render(document()) == PublicFontsRenderer().render(document())


def test_only_exact_releases_are_proven() -> None:
    assert all(release.count(".") == 2 and not release.endswith(".") for release in PROVEN_FPDF2_RELEASES)


# -- failures inside the shared path -----------------------------------------------


@on_a_proven_release
def test_an_exception_while_writing_the_shared_fonts_falls_back_and_warns_once(
    shared: SharedFonts,
    monkeypatch: pytest.MonkeyPatch,
    warnings_logged: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(fpdf, "FPDF_VERSION", PROVEN)

    def glyph_missing(self: object, glyph_names: object) -> object:
        raise KeyError("uni0416")  # as a subset lacking a glyph the document uses would

    monkeypatch.setattr(pdf_fonts._FontFace, "program_for", glyph_missing)
    expected = [PublicFontsRenderer().render(document(text)) for text in ("Seat Ж", "Seat Ψ")]
    attached = count_attaches(monkeypatch)

    pdfs = [FPDFInvoiceRenderer().render(document(text)) for text in ("Seat Ж", "Seat Ψ")]

    assert pdfs == expected
    assert len(attached) == 1  # tried once; after the failure the process uses the public path
    assert shared.given_up and shared.output_type() is None
    [warning] = portal_warnings(warnings_logged)
    assert f"fpdf2 {PROVEN}" in warning and "KeyError" in warning and "add_font" in warning


def _cannot_copy(self: TTFFont) -> TTFFont:
    # fpdf2 2.8.1 to 2.8.4 fail here too: their fonts have no biggest_size_pt.
    raise AttributeError("'TTFFont' object has no attribute 'biggest_size_pt'")


@on_a_proven_release
def test_a_font_fpdf2_cannot_copy_falls_back_before_drawing(
    shared: SharedFonts,
    monkeypatch: pytest.MonkeyPatch,
    warnings_logged: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(fpdf, "FPDF_VERSION", PROVEN)
    monkeypatch.setattr(TTFFont, "__copy__", _cannot_copy, raising=False)

    pdf = FPDFInvoiceRenderer().render(document())

    assert pdf == PublicFontsRenderer().render(document())
    assert shared.given_up
    assert len(portal_warnings(warnings_logged)) == 1


@on_a_proven_release
def test_a_proven_release_missing_a_private_name_gives_up_without_rendering_twice(
    shared: SharedFonts,
    monkeypatch: pytest.MonkeyPatch,
    warnings_logged: pytest.LogCaptureFixture,
) -> None:
    import fpdf.output

    monkeypatch.setattr(fpdf, "FPDF_VERSION", PROVEN)
    monkeypatch.delattr(fpdf.output, "_build_cmap_blocks")  # as in fpdf2 2.8.5 to 2.8.8

    assert shared.output_type() is None
    assert shared.output_type() is None
    [warning] = portal_warnings(warnings_logged)
    assert "ImportError" in warning and "_build_cmap_blocks" in warning


def test_a_document_the_public_path_cannot_render_either_raises_its_error(
    shared: SharedFonts, monkeypatch: pytest.MonkeyPatch, warnings_logged: pytest.LogCaptureFixture
) -> None:
    def broken(self: object) -> None:
        raise ValueError("the layout itself is broken")

    monkeypatch.setattr(pdf_layout._Layout, "draw", broken)
    with pytest.raises(ValueError, match="layout itself"):
        FPDFInvoiceRenderer().render(document())
    assert not shared.given_up  # the shared fonts were not the cause
    assert portal_warnings(warnings_logged) == []


def test_the_shared_path_on_the_installed_release_as_if_proven(
    shared: SharedFonts, monkeypatch: pytest.MonkeyPatch, warnings_logged: pytest.LogCaptureFixture
) -> None:
    """On the installed release (any the extra allows), forced onto the shared
    path: the PDF is fpdf2's own either way, with at most one warning."""
    monkeypatch.setattr(fpdf, "FPDF_VERSION", PROVEN)
    pdfs = [FPDFInvoiceRenderer().render(document(text)) for text in ("Seat Ж", "Seat Ψ")]
    assert pdfs == [PublicFontsRenderer().render(document(text)) for text in ("Seat Ж", "Seat Ψ")]
    assert len(portal_warnings(warnings_logged)) == (1 if shared.given_up else 0)
    if INSTALLED in PROVEN_FPDF2_RELEASES:
        assert not shared.given_up


# -- through the portal --------------------------------------------------------------


def test_pdf_and_zip_downloads_work_when_the_shared_path_breaks(
    app: Flask,
    ava_client: FlaskClient,
    shared: SharedFonts,
    monkeypatch: pytest.MonkeyPatch,
    warnings_logged: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(fpdf, "FPDF_VERSION", PROVEN)
    monkeypatch.setattr(TTFFont, "__copy__", _cannot_copy, raising=False)

    single = ava_client.get("/portal/invoices/inv_demo_ava_sync_01/pdf")
    archive = ava_client.get("/portal/invoices/export.zip")

    assert single.status_code == 200 and single.mimetype == "application/pdf"
    assert "Ava Thompson" in text_of(single.data)
    assert archive.status_code == 200
    files = zipfile.ZipFile(io.BytesIO(archive.data))
    assert files.testzip() is None
    names = files.namelist()
    assert len(names) > 1 and all(files.read(name).startswith(b"%PDF-") for name in names)
    assert all("Ava Thompson" in text_of(files.read(name)) for name in names[:2])
    assert shared.given_up
    assert len(portal_warnings(warnings_logged)) == 1


# -- what every release relies on ------------------------------------------------------


@pytest.mark.parametrize("style", ["", "B"])
def test_layout_widths_are_the_ones_fpdf2_computes(style: str) -> None:
    pdf = fpdf.FPDF()
    pdf.add_font(pdf_layout._FONT_FAMILY, style, pdf_layout._FONT_FILES[style])
    font = pdf.fonts[f"{pdf_layout._FONT_FAMILY.lower()}{style}"]
    metrics = FontMetrics.read(pdf_layout._FONT_FILES[style])
    font.ttfont.close()

    assert dict(metrics.widths) == dict(font.cw)
    assert metrics.widths[0x10FFFF] == font.desc.missing_width
    assert metrics.codepoints == frozenset(font.cmap)


def test_the_pdf_modules_import_without_fpdf2() -> None:
    script = (
        "import sys; sys.modules['fpdf'] = None\n"
        "from flask_customer_portal import pdf\n"
        "from flask_customer_portal.pdf import fonts, layout\n"
        "assert pdf.default_invoice_renderer() is None\n"
        "assert fonts.fpdf2_release() is None\n"
        "assert layout._SHARED_FONTS.output_type() is None\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_importing_the_pdf_modules_imports_no_fpdf2() -> None:
    script = (
        "import sys\n"
        "import flask_customer_portal.pdf, flask_customer_portal.pdf.fonts, flask_customer_portal.pdf.layout\n"
        "assert not [name for name in sys.modules if name == 'fpdf' or name.startswith('fpdf.')], 'fpdf imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
