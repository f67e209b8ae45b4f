"""Downloads for the customer's own records: every invoice PDF in one ZIP,
the billing history as CSV, and renewal dates as an iCalendar file.

All three are GETs that change nothing, scoped to the signed-in customer,
sent as attachments with the portal's ``Cache-Control: no-store``. The
invoice files are streamed: the history is read in keyset batches
(:func:`~flask_customer_portal.exports.invoice_batches`), so a customer
with thousands of invoices costs the same memory as one with ten.

Each download counts against ``CUSTOMER_PORTAL_EXPORT_RATE_LIMIT`` (per
customer and per file, 429 over it), and the ZIP, which renders every
invoice's PDF, is not made for more than ``CUSTOMER_PORTAL_EXPORT_MAX_INVOICES``
invoices (422, pointing to the CSV and the single PDFs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, render_template, url_for
from flask_babel import get_locale

from ..billing.lifecycle import describe
from ..clock import utcnow
from ..exports import (
    CalendarEvent,
    invoice_batches,
    invoice_csv_row,
    render_calendar,
    stream_csv,
    stream_zip,
    unique_name,
)
from ..formatting import to_timezone
from ..i18n import gettext as _
from ..i18n import ngettext
from ..money import format_money
from ..pdf import InvoiceDocument, default_labels, safe_pdf_filename
from ..ratelimit import retry_after
from ..state import PortalState, get_state
from ..storage import Customer, Invoice, InvoiceStatus
from ..urls import external_url
from ._base import blueprint, current_customer_or_401, customer_required, when

logger = logging.getLogger("flask_customer_portal")

__all__ = ["EXPORT_BATCH_SIZE", "export_invoices_csv", "export_invoices_zip", "export_renewals_ics"]

#: Invoices read from the store at a time while a file is being sent.
EXPORT_BATCH_SIZE = 100


def _timezone(state: PortalState, customer: Customer) -> str:
    return customer.timezone or state.config.default_timezone


def _locale(state: PortalState) -> str:
    return str(get_locale() or state.config.default_locale)


def _today(state: PortalState, customer: Customer) -> str:
    return to_timezone(utcnow(), _timezone(state, customer)).date().isoformat()


def _app_context() -> Callable[[], AbstractContextManager[object]]:
    """A maker of fresh application contexts of this app, for reading the
    store while a download is sent, after its request context is gone (see
    :func:`~flask_customer_portal.exports.invoice_batches`). Unlike
    :func:`flask.stream_with_context`, no context stays pushed between
    chunks, so a download that is dropped half-read leaves none behind."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app.app_context


def _attachment(body: Any, *, mimetype: str, filename: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers.set("Content-Disposition", "attachment", filename=filename)
    return response


def _back(page: str) -> str:
    """The page the export was offered on."""
    return url_for(f".{page}")


def _over_rate(state: PortalState, customer: Customer, export: str) -> Any | None:
    """The 429 page if the customer downloaded ``export`` too often lately;
    ``None`` (and the download counted) otherwise."""
    retry_at = state.customer_limits.hit_export(customer.id, export)
    if retry_at is None:
        return None
    logger.warning(
        "Customer portal refused a %s export for customer %s: over the export limit", export, customer.id
    )
    page = render_template(
        "customer_portal/export_refused.html",
        customer=customer,
        reason="rate",
        retry_at=when(state, customer, retry_at),
        back=_back("subscriptions" if export == "ics" else "invoices"),
    )
    return page, 429, retry_after(retry_at, utcnow())


def _status_labels() -> dict[str, str]:
    # The words of the status badges on the billing history page.
    return {
        InvoiceStatus.OPEN.value: _("Open"),
        InvoiceStatus.PAID.value: _("Paid"),
        InvoiceStatus.VOID.value: _("Void"),
        InvoiceStatus.REFUNDED.value: _("Refunded"),
        "partially_refunded": _("Partially refunded"),
    }


@blueprint.route("/invoices/export.zip")
@customer_required
def export_invoices_zip() -> Any:
    """Every invoice as a PDF, one file per invoice, in a ZIP; refused
    (422) above ``CUSTOMER_PORTAL_EXPORT_MAX_INVOICES`` invoices."""
    state = get_state()
    customer = current_customer_or_401()
    renderer = state.invoice_renderer
    if renderer is None:
        abort(404)
    refused = _over_rate(state, customer, "zip")
    if refused is not None:
        return refused
    limit = state.config.export_max_invoices
    count = state.storage.list_invoices(customer.id, page=1, per_page=1).total
    if count > limit:
        logger.info("Customer portal made no invoice ZIP for customer %s: %d invoices", customer.id, count)
        page = render_template(
            "customer_portal/export_refused.html",
            customer=customer,
            reason="too_many_invoices",
            count=count,
            limit=limit,
            back=_back("invoices"),
        )
        return page, 422
    locale = _locale(state)
    tz = _timezone(state, customer)
    labels = {key: _(text) for key, text in default_labels().items()}
    around = _app_context()
    made_at = to_timezone(utcnow(), tz)
    # Only for invoices that arrive while the archive is being made (or a
    # store whose count was short): the archive then says what it lacks.
    readme = ngettext(
        "This archive holds only your newest invoice, the most one download can hold. "
        "Older invoices are not in it: open them from your billing history, or download the "
        "billing history as a spreadsheet (CSV).",
        "This archive holds only your newest %(num)d invoices, the most one download can hold. "
        "Older invoices are not in it: open them from your billing history, or download the "
        "billing history as a spreadsheet (CSV).",
        limit,
    )

    def files() -> Iterator[tuple[str, datetime, bytes]]:
        taken: set[str] = set()
        batches = invoice_batches(
            state.storage, customer.id, batch_size=EXPORT_BATCH_SIZE, with_lines=True, around=around
        )
        invoice: Invoice | None = None
        made = 0
        try:
            for batch in batches:
                for invoice in batch:
                    if made == limit:
                        yield unique_name("README.txt", taken), made_at, (readme + "\r\n").encode("utf-8")
                        return
                    made += 1
                    document = InvoiceDocument(
                        invoice=invoice,
                        customer=customer,
                        merchant_name=state.config.merchant_name,
                        merchant_address=state.config.merchant_address,
                        locale=locale,
                        timezone=tz,
                        labels=labels,
                    )
                    name = unique_name(safe_pdf_filename(invoice.number), taken)
                    yield name, to_timezone(invoice.issued_at, tz), renderer.render(document)
        except Exception:
            # The status line is long gone: the archive ends without its
            # index (so it reads as damaged) and the reason goes to the log.
            logger.exception(
                "invoice ZIP for customer %s stopped at invoice %s",
                customer.id,
                None if invoice is None else invoice.id,
            )
            raise

    return _attachment(
        stream_zip(files()),
        mimetype="application/zip",
        filename=f"invoices-{_today(state, customer)}.zip",
    )


@blueprint.route("/invoices/export.csv")
@customer_required
def export_invoices_csv() -> Any:
    """The billing history as a spreadsheet: one row per invoice."""
    state = get_state()
    customer = current_customer_or_401()
    refused = _over_rate(state, customer, "csv")
    if refused is not None:
        return refused
    tz = _timezone(state, customer)
    statuses = _status_labels()
    locale = _locale(state)
    around = _app_context()
    header = [
        _("Invoice number"),
        _("Date issued"),
        _("Description"),
        _("Status"),
        _("Currency"),
        _("Subtotal"),
        _("Tax"),
        _("Total"),
        _("Date paid"),
        _("Payment reference"),
        _("Refunded"),
        _("Credited to your account"),
        _("Credit notes"),
    ]

    def rows() -> Iterator[list[list[str]]]:
        batches = invoice_batches(
            state.storage, customer.id, batch_size=EXPORT_BATCH_SIZE, with_lines=False, around=around
        )
        for batch in batches:
            yield [_row(invoice) for invoice in batch]

    def _row(invoice: Invoice) -> list[str]:
        status = invoice.display_status
        return invoice_csv_row(invoice, tz=tz, status_label=statuses.get(status, status), locale=locale)

    return _attachment(
        stream_csv(header, rows()),
        mimetype="text/csv",  # charset added by Flask: utf-8
        filename=f"invoices-{_today(state, customer)}.csv",
    )


def _renewal_events(state: PortalState, customer: Customer) -> Sequence[CalendarEvent]:
    now = utcnow()
    tz = _timezone(state, customer)
    locale = _locale(state)
    host = urlsplit(state.config.base_url).hostname or "localhost"
    events = []
    for subscription in state.storage.list_subscriptions(customer.id):
        renews_at = describe(subscription, now).renews_at
        if renews_at is None:
            continue
        names = {"product": subscription.product_name, "plan": subscription.plan_name}
        link = external_url(state, "subscription", subscription_id=subscription.id)
        description = _(
            "%(price)s for %(product)s (%(plan)s) is charged on this day.",
            price=format_money(subscription.price, locale),
            **names,
        )
        manage = _("Manage this subscription: %(url)s", url=link)
        events.append(
            CalendarEvent(
                # Same subscription and period → same event, so importing
                # the file again updates the calendar instead of doubling it.
                uid=f"renewal-{subscription.id}-{renews_at.timestamp():.0f}@{host}",
                day=to_timezone(renews_at, tz).date(),
                summary=_("%(product)s renews", **names),
                description=f"{description}\n{manage}",
                url=link,
            )
        )
    return events


@blueprint.route("/subscriptions/renewals.ics")
@customer_required
def export_renewals_ics() -> Any:
    """The next renewal date of every subscription that renews, as all-day
    events (an ``on_hold`` subscription or one set to end never renews)."""
    state = get_state()
    customer = current_customer_or_401()
    refused = _over_rate(state, customer, "ics")
    if refused is not None:
        return refused
    calendar = render_calendar(
        _renewal_events(state, customer),
        product_id="-//flask-customer-portal//Renewals//EN",
        name=_("%(merchant)s renewals", merchant=state.config.merchant_name),
        stamp=utcnow(),
    )
    return _attachment(calendar.encode("utf-8"), mimetype="text/calendar", filename="renewals.ics")
