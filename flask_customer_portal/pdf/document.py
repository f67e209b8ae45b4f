"""What an invoice PDF shows, and the contract of a renderer: an
:class:`InvoiceDocument` holds everything resolved for one reader (translated
labels, locale, time zone); an :class:`InvoiceRenderer` turns it into bytes.
Nothing here needs fpdf2, so a host app can plug in its own renderer."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from babel import Locale, UnknownLocaleError

from ..formatting import resolve_timezone
from ..storage import CreditNote, Customer, Invoice

__all__ = [
    "CreditNoteDocument",
    "CreditNoteRenderer",
    "InvoiceDocument",
    "InvoiceRenderer",
    "default_credit_note_labels",
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

#: Labels added after the first release: a host's own label mapping without
#: them still makes a document, with these English texts.
_LATER_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "status_partially_refunded": N_("Partially refunded"),
        "refunded": N_("Refunded"),
        "credited": N_("Credited to your account"),
        # ``%(number)s`` and ``%(date)s`` are the credit note's.
        "credit_note_issued": N_("Credit note %(number)s, %(date)s"),
    }
)

_CREDIT_NOTE_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "credit_note": N_("Credit note"),
        "credit_note_number": N_("Credit note number"),
        "date_issued": N_("Date issued"),
        "invoice_number": N_("Invoice number"),
        "reason": N_("Reason"),
        "bill_to": N_("Bill to"),
        "description": N_("Description"),
        "quantity": N_("Qty"),
        "unit_price": N_("Unit price"),
        "amount": N_("Amount"),
        "total_credited": N_("Total credited"),
        "refunded": N_("Refunded to your payment method"),
        "credited": N_("Credited to your account"),
        "note": N_("Note"),
        # ``%(number)s`` is the invoice's.
        "credit_for_invoice": N_("Credit for invoice %(number)s"),
        "page_x_of_y": N_("Page %(page)s of %(pages)s"),
        "reason_duplicate": N_("Duplicate charge"),
        "reason_fraudulent": N_("Fraudulent charge"),
        "reason_order_change": N_("Order changed"),
        "reason_product_unsatisfactory": N_("Product unsatisfactory"),
    }
)


def default_credit_note_labels() -> dict[str, str]:
    """English labels for every key :class:`CreditNoteDocument` needs
    (translate them as those of :func:`default_labels`)."""
    return dict(_CREDIT_NOTE_LABELS)


def default_labels() -> dict[str, str]:
    """English labels for every key :class:`InvoiceDocument` needs.

    The keys are the contract; a Flask view translates the values, e.g.
    ``{key: gettext(text) for key, text in default_labels().items()}`` (the
    English texts are marked for ``pybabel extract``).
    """
    return {**_DEFAULT_LABELS, **_LATER_LABELS}


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
        object.__setattr__(self, "labels", _checked_labels({**_LATER_LABELS, **self.labels}, _DEFAULT_LABELS))


def _checked_labels(given: Mapping[str, str], required: Mapping[str, str]) -> Mapping[str, str]:
    """``given`` copied and frozen, once it has every key of ``required``
    and a page label a renderer can fill in."""
    labels = MappingProxyType(dict(given))
    missing = sorted(required.keys() - labels.keys())
    if missing:
        raise ValueError(f"labels missing: {', '.join(missing)}")
    try:
        labels["page_x_of_y"] % {"page": 1, "pages": 1}
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(
            "label 'page_x_of_y' must use only the placeholders %(page)s and %(pages)s, "
            f"got {labels['page_x_of_y']!r}"
        ) from exc
    return labels


@dataclass(frozen=True, slots=True)
class CreditNoteDocument:
    """Everything a credit note PDF shows, resolved for one reader, like
    :class:`InvoiceDocument`; ``invoice`` is the invoice it credits."""

    credit_note: CreditNote
    invoice: Invoice
    customer: Customer
    merchant_name: str
    merchant_address: str = ""
    locale: str = "en"
    timezone: str | None = None
    labels: Mapping[str, str] = field(default_factory=default_credit_note_labels, hash=False)
    """Translated texts keyed like :func:`default_credit_note_labels`."""

    def __post_init__(self) -> None:
        note = self.credit_note
        if note.invoice_id != self.invoice.id or note.customer_id != self.customer.id:
            raise ValueError(
                f"credit note {note.id!r} is not of invoice {self.invoice.id!r} of this customer"
            )
        # The invoice's own checks: the same customer, merchant, locale and zone.
        InvoiceDocument(
            invoice=self.invoice,
            customer=self.customer,
            merchant_name=self.merchant_name,
            locale=self.locale,
            timezone=self.timezone,
        )
        if note.issued_at.tzinfo is None or note.issued_at.tzinfo.utcoffset(note.issued_at) is None:
            raise ValueError(f"credit note {note.id!r} has a naive issued_at; store aware UTC")
        object.__setattr__(self, "labels", _checked_labels(self.labels, _CREDIT_NOTE_LABELS))


@runtime_checkable
class CreditNoteRenderer(Protocol):
    """A renderer that also draws credit notes (the default one does)."""

    def render_credit_note(self, document: CreditNoteDocument) -> bytes:
        """The PDF for ``document``; the same document always gives the same bytes."""


@runtime_checkable
class InvoiceRenderer(Protocol):
    """Turns an invoice into a file the customer downloads (``application/pdf``)."""

    def render(self, document: InvoiceDocument) -> bytes:
        """The PDF for ``document``; the same document always gives the same bytes."""


# -- file names ---------------------------------------------------------------

_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FILENAME_SEPARATOR_RUN = re.compile(r"[._-]{2,}")
_FILENAME_MAX = 100


def safe_pdf_filename(invoice_number: str, prefix: str = "invoice-") -> str:
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
    suffix = ".pdf"
    stem = stem[: _FILENAME_MAX - len(prefix) - len(suffix)].rstrip("._-")
    return f"{prefix}{stem}{suffix}" if stem else f"{prefix.rstrip('-')}{suffix}"
