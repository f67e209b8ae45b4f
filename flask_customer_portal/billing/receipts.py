"""Receipts: an email after every payment the portal takes (a renewal, a
reactivation, a plan change charged now or settled later, an invoice paid
from its page) or learns of by a payment company's webhook (the company's
own renewals and retries, a plan change made at the company), and a copy
of an invoice sent on the customer's request.

A receipt is written in the payment's own transaction (the lock's
:class:`~flask_customer_portal.outbox.MailBatch`), so it exists exactly when
the payment was recorded, and is delivered by the outbox after commit. The
invoice's PDF goes with it (``CUSTOMER_PORTAL_RECEIPT_PDF``): the row names
the invoice (``invoice_pdf:<invoice id>``) and the PDF is rendered when the
row is sent, from the invoice as stored then, so rows stay small.
"""

from __future__ import annotations

import logging

from flask_babel import force_locale

from ..i18n import gettext as _
from ..i18n import select_locale
from ..mail import Attachment
from ..outbox.sender import register_attachment
from ..pdf import InvoiceDocument, default_labels, safe_pdf_filename
from ..records import OutboxMail
from ..state import PortalState
from ..storage import Customer, Invoice, InvoiceStatus
from ..urls import external_url
from .notify import MailBatch, send_email

__all__ = [
    "INVOICE_COPY",
    "RECEIPT",
    "email_invoice",
    "invoice_document",
    "invoice_pdf_reference",
    "send_provider_receipt",
    "send_receipt",
]

logger = logging.getLogger("flask_customer_portal")

#: The email sent after a payment, and the copy of an invoice asked for.
RECEIPT = "receipt"
INVOICE_COPY = "invoice_copy"
#: The attachment kind of an invoice's PDF (see :func:`invoice_pdf_reference`).
_INVOICE_PDF = "invoice_pdf"


def invoice_document(
    state: PortalState, customer: Customer, invoice: Invoice, *, locale: str
) -> InvoiceDocument:
    """The PDF document of ``invoice`` in ``locale`` (labels translated in
    the caller's locale: call inside ``force_locale`` or a request)."""
    return InvoiceDocument(
        invoice=invoice,
        customer=customer,
        merchant_name=state.config.merchant_name,
        merchant_address=state.config.merchant_address,
        locale=locale,
        timezone=customer.timezone or state.config.default_timezone,
        labels={key: _(text) for key, text in default_labels().items()},
    )


def invoice_pdf_reference(state: PortalState, invoice: Invoice) -> str | None:
    """What an outbox row carries to have ``invoice``'s PDF attached when it
    is sent; ``None`` when the portal renders no PDFs."""
    if state.invoice_renderer is None:
        return None
    return f"{_INVOICE_PDF}:{invoice.id}"


def _make_invoice_pdf(state: PortalState, invoice_id: str, mail: OutboxMail) -> Attachment | None:
    """The PDF of the row's invoice, rendered now in its customer's
    language; ``None`` when the customer or the invoice is gone (erased)."""
    renderer = state.invoice_renderer
    if renderer is None or mail.customer_id is None:
        return None
    customer = state.storage.get_customer(mail.customer_id)
    invoice = None if customer is None else state.storage.get_invoice(customer.id, invoice_id)
    if customer is None or invoice is None:
        logger.warning("The invoice of outbox row %s is gone; it is sent without its PDF", mail.id)
        return None
    locale = select_locale(state.config, customer)
    with force_locale(locale):
        data = renderer.render(invoice_document(state, customer, invoice, locale=locale))
    return Attachment(safe_pdf_filename(invoice.number), "application/pdf", data)


register_attachment(_INVOICE_PDF, _make_invoice_pdf)


def send_receipt(
    state: PortalState, customer: Customer, invoice: Invoice, *, batch: MailBatch | None
) -> bool:
    """The receipt of ``invoice``, paid just now, in the payment's
    transaction (``batch``, written through its lock; ``None``: in a
    transaction of its own). Nothing for an invoice that took no money
    (paid from credit, or of nothing). Whether one was written."""
    if invoice.status is not InvoiceStatus.PAID or invoice.total <= 0 or not state.config.receipts:
        return False
    attachment = invoice_pdf_reference(state, invoice) if state.config.receipt_pdf else None
    send_email(
        state,
        RECEIPT,
        customer,
        batch=batch,
        attachment=attachment,
        invoice=invoice,
        attached=attachment is not None,
        link=external_url(state, "invoice", invoice_id=invoice.id),
    )
    return True


def send_provider_receipt(
    state: PortalState, customer: Customer, invoice: Invoice, *, batch: MailBatch
) -> bool:
    """The receipt of a payment the payment company took itself (its own
    renewal, its own retry, a plan change made at the company), learnt by
    its webhook: written in ``batch``, which the webhook view writes with
    the event's "handled" mark, so a repeated or concurrent delivery of the
    event writes none. Nothing when ``CUSTOMER_PORTAL_PROVIDER_RECEIPTS``
    is off (the company sends its own)."""
    if not state.config.provider_receipts:
        return False
    return send_receipt(state, customer, invoice, batch=batch)


def email_invoice(state: PortalState, customer: Customer, invoice: Invoice) -> None:
    """Send ``invoice`` (the customer's own) to the customer's address, with
    its PDF where the portal renders PDFs."""
    attachment = invoice_pdf_reference(state, invoice)
    send_email(
        state,
        INVOICE_COPY,
        customer,
        attachment=attachment,
        invoice=invoice,
        attached=attachment is not None,
        link=external_url(state, "invoice", invoice_id=invoice.id),
    )
