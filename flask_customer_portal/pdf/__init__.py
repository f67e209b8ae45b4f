"""Invoice PDFs a customer can file.

The view resolves everything that needs Flask (translated labels, the
customer's locale and time zone) into an :class:`InvoiceDocument`; an
:class:`InvoiceRenderer` turns that into bytes. :class:`FPDFInvoiceRenderer`
is the default and needs the ``pdf`` extra (fpdf2); nothing in this package
imports fpdf2 until a PDF is drawn, so a host app can plug in its own
renderer without it.

:mod:`.document` holds the document and the renderer's contract,
:mod:`.layout` draws the default invoice, and :mod:`.fonts` the fonts with
the fast shared-font path, which relies on fpdf2's private classes and is
kept apart for that reason.
"""

from __future__ import annotations

from .document import (
    CreditNoteDocument,
    CreditNoteRenderer,
    InvoiceDocument,
    InvoiceRenderer,
    default_credit_note_labels,
    default_labels,
    safe_pdf_filename,
)
from .layout import FPDFInvoiceRenderer, default_invoice_renderer

__all__ = [
    "CreditNoteDocument",
    "CreditNoteRenderer",
    "FPDFInvoiceRenderer",
    "InvoiceDocument",
    "InvoiceRenderer",
    "default_credit_note_labels",
    "default_invoice_renderer",
    "default_labels",
    "safe_pdf_filename",
]
