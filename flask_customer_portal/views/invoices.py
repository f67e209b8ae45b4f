"""Billing history: the list of invoices, one invoice, and its PDF."""

from __future__ import annotations

import re
from typing import Any, cast
from urllib.parse import urlsplit

from babel.numbers import format_decimal
from flask import Response, abort, current_app, redirect, render_template, request
from flask_babel import get_locale

from ..capabilities import LinksInvoicePdfs
from ..i18n import gettext as _
from ..pdf import (
    CreditNoteDocument,
    CreditNoteRenderer,
    InvoiceDocument,
    default_credit_note_labels,
    default_labels,
    safe_pdf_filename,
)
from ..state import PortalState, get_state
from ..storage import CreditNote, CreditNoteReason, Customer, Invoice, InvoiceStatus, SubscriptionStatus
from ._base import blueprint, current_customer_or_401, customer_required, plausible_id

# --- helpers --------------------------------------------------------------

#: ``?page=`` is a positive number written plainly; nine digits is far past
#: any real billing history and keeps the row offset a small integer.
_PAGE_NUMBER = re.compile(r"[1-9][0-9]{0,8}")


#: Page links shown on either side of the current page (plus first and last).
_PAGE_WINDOW = 2


def _page_number() -> int:
    """The ``?page=`` of the request (1 without one); anything that is not
    a positive integer is a page that does not exist."""
    raw = request.args.get("page")
    if raw is None:
        return 1
    if not _PAGE_NUMBER.fullmatch(raw):
        abort(404)
    return int(raw)


def _page_links(page: int, pages: int, window: int = _PAGE_WINDOW) -> list[int | None]:
    """Page numbers to link to: the first, the last and ``window`` pages
    around ``page``, with ``None`` where numbers are left out.

    >>> _page_links(7, 20)
    [1, None, 5, 6, 7, 8, 9, None, 20]
    >>> _page_links(4, 9)
    [1, 2, 3, 4, 5, 6, None, 9]
    """
    shown = sorted({1, pages, *range(max(1, page - window), min(pages, page + window) + 1)})
    links: list[int | None] = []
    previous = 0
    for number in shown:
        if number - previous == 2:
            links.append(previous + 1)  # one page left out: its number is as short as "…"
        elif number - previous > 2:
            links.append(None)
        links.append(number)
        previous = number
    return links


def _own_invoice(state: PortalState, customer: Customer, invoice_id: str) -> Invoice:
    """The customer's invoice with its lines; 404 for anything else."""
    if not plausible_id(invoice_id):
        abort(404)
    invoice = state.storage.get_invoice(customer.id, invoice_id)
    if invoice is None:
        abort(404)
    return invoice


def _locale(state: PortalState) -> str:
    """The language of this request's pages (the ``portal_locale()`` of templates)."""
    return str(get_locale() or state.config.default_locale)


def _timezone(state: PortalState, customer: Customer) -> str:
    """The zone the ``date()`` template helper uses, so that page and PDF agree."""
    return customer.timezone or state.config.default_timezone


# --- pages ----------------------------------------------------------------


@blueprint.route("/invoices")
@customer_required
def invoices() -> Any:
    state = get_state()
    customer = current_customer_or_401()
    page = state.storage.list_invoices(
        customer.id, page=_page_number(), per_page=state.config.invoices_per_page
    )
    if page.page > page.pages:
        abort(404)
    return render_template(
        "customer_portal/invoices.html",
        customer=customer,
        invoices=page,
        page_links=_page_links(page.page, page.pages),
        pdf_available=_pdf_available(state),
    )


@blueprint.route("/invoices/<invoice_id>")
@customer_required
def invoice(invoice_id: str) -> Any:
    state = get_state()
    customer = current_customer_or_401()
    found = _own_invoice(state, customer, invoice_id)
    # An unpaid renewal of a subscription on hold is paid by giving that
    # subscription a working payment method.
    fix_payment_for = None
    if found.status is InvoiceStatus.OPEN and found.subscription_id is not None:
        subscription = state.storage.get_subscription(customer.id, found.subscription_id)
        if subscription is not None and subscription.status is SubscriptionStatus.ON_HOLD:
            fix_payment_for = subscription
    locale = _locale(state)
    return render_template(
        "customer_portal/invoice.html",
        customer=customer,
        invoice=found,
        fix_payment_for=fix_payment_for,
        pdf_available=_pdf_available(state),
        format_quantity=lambda number: str(format_decimal(number, locale=locale)),
        credit_note_pdfs=_credit_note_renderer(state) is not None,
        credit_note_reason=_credit_note_reason,
    )


def _credit_note_reason(note: CreditNote) -> str:
    """Why the credit note was issued, in the customer's words: the
    merchant's note, else the reason's name."""
    if note.memo:
        return note.memo
    reasons = {
        CreditNoteReason.DUPLICATE: _("Duplicate charge"),
        CreditNoteReason.FRAUDULENT: _("Fraudulent charge"),
        CreditNoteReason.ORDER_CHANGE: _("Order changed"),
        CreditNoteReason.PRODUCT_UNSATISFACTORY: _("Product unsatisfactory"),
    }
    return "" if note.reason is None else reasons[note.reason]


def _credit_note_renderer(state: PortalState) -> CreditNoteRenderer | None:
    renderer = state.invoice_renderer
    return renderer if isinstance(renderer, CreditNoteRenderer) else None


def _provider_pdf(state: PortalState) -> LinksInvoicePdfs | None:
    """The store, if its billing back end issues its own invoice PDFs
    (Stripe's ``invoice_pdf``): the portal's PDF link then goes there."""
    return cast(LinksInvoicePdfs, state.storage) if state.capabilities.invoice_pdf_links else None


def _pdf_available(state: PortalState) -> bool:
    return state.invoice_renderer is not None or _provider_pdf(state) is not None


@blueprint.route("/invoices/<invoice_id>/pdf")
@customer_required
def invoice_pdf(invoice_id: str) -> Response:
    state = get_state()
    customer = current_customer_or_401()
    provider_pdf = _provider_pdf(state)
    if provider_pdf is not None:
        found = _own_invoice(state, customer, invoice_id)
        url = provider_pdf.invoice_pdf_url(customer.id, found.id)
        if url and urlsplit(url).scheme == "https":
            return redirect(url, code=303)  # type: ignore[return-value]
        if url:
            current_app.logger.error("Refused a PDF link of invoice %s that is not https", found.id)
    renderer = state.invoice_renderer
    if renderer is None:
        abort(404)
    found = _own_invoice(state, customer, invoice_id)
    document = InvoiceDocument(
        invoice=found,
        customer=customer,
        merchant_name=state.config.merchant_name,
        merchant_address=state.config.merchant_address,
        locale=_locale(state),
        timezone=_timezone(state, customer),
        labels={key: _(text) for key, text in default_labels().items()},
    )
    response = Response(renderer.render(document), mimetype="application/pdf")
    response.headers.set("Content-Disposition", "attachment", filename=safe_pdf_filename(found.number))
    return response


@blueprint.route("/invoices/<invoice_id>/credit-notes/<credit_note_id>/pdf")
@customer_required
def credit_note_pdf(invoice_id: str, credit_note_id: str) -> Response:
    """A credit note of one of the customer's invoices; found only through
    that invoice, so another customer's is a 404 like a missing one."""
    state = get_state()
    customer = current_customer_or_401()
    renderer = _credit_note_renderer(state)
    if renderer is None or not plausible_id(credit_note_id):
        abort(404)
    found = _own_invoice(state, customer, invoice_id)
    note = next((note for note in found.credit_notes if note.id == credit_note_id), None)
    if note is None:
        abort(404)
    document = CreditNoteDocument(
        credit_note=note,
        invoice=found,
        customer=customer,
        merchant_name=state.config.merchant_name,
        merchant_address=state.config.merchant_address,
        locale=_locale(state),
        timezone=_timezone(state, customer),
        labels={key: _(text) for key, text in default_credit_note_labels().items()},
    )
    response = Response(renderer.render_credit_note(document), mimetype="application/pdf")
    response.headers.set(
        "Content-Disposition", "attachment", filename=safe_pdf_filename(note.number, prefix="credit-note-")
    )
    return response
