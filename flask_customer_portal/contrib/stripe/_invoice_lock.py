"""A Stripe invoice of no subscription (a one-off invoice), seen by the
money path while it is paid from its page
(:class:`~flask_customer_portal.storage.InvoiceLock`).

Stripe has no lock: what holds the invoice still is the local database's
lock, which :class:`~flask_customer_portal.contrib.composite.CompositeStorage`
takes around :meth:`StripeBillingStore.lock_invoice
<flask_customer_portal.contrib.stripe.StripeBillingStore.lock_invoice>`
for the whole of the read, the check, the payment (``POST
/v1/invoices/{id}/pay`` with the portal's idempotency key) and what is
recorded. Every read under it goes to Stripe, so an invoice paid a moment
ago elsewhere (another tab, Stripe's own retry, the dashboard) is seen as
paid, and never paid again. The attempts are kept in the invoice's
metadata, as a subscription's invoices keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

import stripe

from ...storage import AuditEvent, ChargeAttempt, Invoice, InvoiceStatus, StateConflict
from ._attempts import attempt_metadata, attempts_in
from ._convert import invoice_subscription_id

__all__ = ["StripeInvoiceLock", "locked_invoice"]


class _Store(Protocol):
    """What the lock needs of :class:`~.store.StripeBillingStore`."""

    client: stripe.StripeClient

    def _retrieve_invoice(self, customer_id: str, invoice_id: str) -> dict[str, Any] | None: ...

    def _invoice(self, data: Mapping[str, Any], customer_id: str, *, lines: bool) -> Invoice | None: ...


def _one_off(store: _Store, customer_id: str, invoice_id: str) -> dict[str, Any] | None:
    """The customer's Stripe invoice ``invoice_id`` if it bills no
    subscription (a subscription's invoices are paid under its own lock)."""
    data = store._retrieve_invoice(customer_id, invoice_id)
    if data is None or invoice_subscription_id(data) is not None or data.get("status") in (None, "draft"):
        return None
    return data


@contextmanager
def locked_invoice(store: _Store, customer_id: str, invoice_id: str) -> Iterator[StripeInvoiceLock | None]:
    """:class:`StripeInvoiceLock` of the customer's one-off invoice, or ``None``."""
    yield (
        None
        if _one_off(store, customer_id, invoice_id) is None
        else StripeInvoiceLock(store, customer_id, invoice_id)
    )


class StripeInvoiceLock:
    """The invoice as Stripe has it, read again at each step."""

    def __init__(self, store: _Store, customer_id: str, invoice_id: str) -> None:
        self._store = store
        self._customer_id = customer_id
        self._invoice_id = invoice_id

    def _data(self, invoice_id: str) -> dict[str, Any]:
        if invoice_id != self._invoice_id:
            raise ValueError("an invoice lock reads and writes only its own invoice")
        data = _one_off(self._store, self._customer_id, invoice_id)
        if data is None:  # pragma: no cover - Stripe never deletes a finalised invoice
            raise StateConflict(f"Stripe no longer has invoice {invoice_id!r} of this customer")
        return data

    @property
    def invoice(self) -> Invoice:
        found = self._store._invoice(self._data(self._invoice_id), self._customer_id, lines=True)
        if found is None:  # pragma: no cover - drafts are never locked
            raise StateConflict(f"invoice {self._invoice_id!r} is a draft")
        return found

    def attempts(self, invoice_id: str) -> Sequence[ChargeAttempt]:
        return attempts_in(self._data(invoice_id), self._customer_id)

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        self._data(attempt.invoice_id)
        self._store.client.v1.invoices.update(
            attempt.invoice_id, params={"metadata": attempt_metadata(attempt)}
        )

    def mark_invoice_paid(
        self, invoice_id: str, *, paid_at: datetime, payment_reference: str, payment_method_id: str | None
    ) -> Invoice:
        """The invoice as Stripe has it now, which must be ``paid`` (Stripe
        marked it when the payment went through)."""
        self._data(invoice_id)
        invoice = self.invoice
        if invoice.status is not InvoiceStatus.PAID:
            raise StateConflict(f"Stripe does not show invoice {invoice_id!r} as paid")
        return invoice

    def record_event(self, event: AuditEvent) -> None:
        """Refused: the audit log is local; mount the store in a
        :class:`~flask_customer_portal.contrib.composite.CompositeStorage`."""
        raise TypeError("StripeBillingStore keeps no audit log: use it inside a CompositeStorage")
