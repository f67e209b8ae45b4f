"""Billing history: the list of invoices, one invoice, its PDF, and paying
an open one (the decision is :mod:`flask_customer_portal.billing.invoice_payment`)."""

from __future__ import annotations

import re
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

from babel.numbers import format_decimal
from flask import Response, abort, current_app, redirect, render_template, request, url_for
from flask_babel import get_locale

from ..billing import receipts
from ..billing.invoice_payment import (
    InvoiceNotFound,
    ProviderError,
    Refusal,
    pay_open_invoice,
    payable,
    refusal,
    settle_on_visit,
)
from ..billing.outcomes import PaymentOutcome
from ..capabilities import LinksInvoicePdfs
from ..clock import utcnow
from ..formatting import format_payment_method
from ..forms import ConfirmForm
from ..forms.payment import PaymentMethodForm, card_expired
from ..i18n import gettext as _
from ..money import Money
from ..pdf import (
    CreditNoteDocument,
    CreditNoteRenderer,
    default_credit_note_labels,
    safe_pdf_filename,
)
from ..ratelimit import retry_after
from ..state import PortalState, get_state
from ..storage import (
    CreditNote,
    CreditNoteReason,
    Customer,
    Invoice,
    InvoiceStatus,
    PaymentMethod,
    SubscriptionStatus,
)
from ._base import blueprint, current_customer_or_401, customer_required, notify, plausible_id, when
from .payment_methods import (
    Problem,
    amount_field,
    checked_choice,
    chosen_method,
    expired_methods,
    new_card_context,
    posted_payment_form,
    raw_cards_allowed,
    safe_redirect_target,
    shown_amount,
    unreachable,
)

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
        payable=payable(state, customer, page.items),
    )


@blueprint.route("/invoices/<invoice_id>")
@customer_required
def invoice(invoice_id: str) -> Any:
    state = get_state()
    customer = current_customer_or_401()
    found = settle_on_visit(state, customer, _own_invoice(state, customer, invoice_id))
    return _render_invoice(state, customer, found)


def _render_invoice(
    state: PortalState,
    customer: Customer,
    found: Invoice,
    *,
    email_problem: str | None = None,
    status: int = 200,
) -> Any:
    # An unpaid renewal of a subscription on hold is paid by giving that
    # subscription a working payment method.
    fix_payment_for = None
    if found.status is InvoiceStatus.OPEN and found.subscription_id is not None:
        subscription = state.storage.get_subscription(customer.id, found.subscription_id)
        if subscription is not None and subscription.status is SubscriptionStatus.ON_HOLD:
            fix_payment_for = subscription
    locale = _locale(state)
    page = render_template(
        "customer_portal/invoice.html",
        customer=customer,
        invoice=found,
        fix_payment_for=fix_payment_for,
        pay_link=refusal(state, customer, found) is None,
        email_form=ConfirmForm(formdata=None),
        email_problem=email_problem,
        pdf_available=_pdf_available(state),
        format_quantity=lambda number: str(format_decimal(number, locale=locale)),
        credit_note_pdfs=_credit_note_renderer(state) is not None,
        credit_note_reason=_credit_note_reason,
    )
    return page, status


@blueprint.route("/invoices/<invoice_id>/email", methods=["POST"])
@customer_required
def email_invoice(invoice_id: str) -> Any:
    """Email the invoice (with its PDF) to the signed-in customer's own
    address; limited per customer (``CUSTOMER_PORTAL_INVOICE_EMAIL_RATE_LIMIT``)."""
    state = get_state()
    customer = current_customer_or_401()
    form = ConfirmForm()
    if not form.validate():
        abort(400)
    found = _own_invoice(state, customer, invoice_id)
    retry_at = state.customer_limits.hit_invoice_email(customer.id)
    if retry_at is not None:
        current_app.logger.warning(
            "Customer portal refused to email an invoice to customer %s: over the limit", customer.id
        )
        problem = _(
            "You have asked for many invoices by email recently, so we cannot send this one now. "
            "Try again after %(time)s, or download the PDF.",
            time=when(state, customer, retry_at),
        )
        body, status = _render_invoice(state, customer, found, email_problem=problem, status=429)
        return body, status, retry_after(retry_at, utcnow())
    receipts.email_invoice(state, customer, found)
    notify(_("We are sending invoice %(number)s to %(email)s.", number=found.number, email=customer.email))
    return redirect(url_for(".invoice", invoice_id=found.id), code=303)


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
    document = receipts.invoice_document(state, customer, found, locale=_locale(state))
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
        timezone=customer.timezone or state.config.default_timezone,
        labels={key: _(text) for key, text in default_credit_note_labels().items()},
    )
    response = Response(renderer.render_credit_note(document), mimetype="application/pdf")
    response.headers.set(
        "Content-Disposition", "attachment", filename=safe_pdf_filename(note.number, prefix="credit-note-")
    )
    return response


# --- paying an open invoice -------------------------------------------------------------


def _refusal_message(refused: Refusal) -> str:
    if refused is Refusal.NOT_OPEN:
        return _("This invoice is not open, so there is nothing to pay. Nothing was charged.")
    if refused is Refusal.REACTIVATE:
        return _(
            "This invoice is an unpaid renewal of a subscription on hold: pay it by updating the "
            "subscription's payment method. Nothing was charged."
        )
    if refused is Refusal.ENDED:
        return _(
            "This invoice is for a subscription that has ended, so it is not paid here. Nothing was charged."
        )
    return _("This invoice cannot be paid here. Nothing was charged.")


def _render_pay(
    state: PortalState,
    customer: Customer,
    invoice: Invoice,
    form: PaymentMethodForm | None = None,
    *,
    problem: Problem | None = None,
    refused: Refusal | None = None,
    status: int = 200,
) -> Any:
    now = utcnow()
    methods = list(state.storage.list_payment_methods(customer.id))
    raw_cards = raw_cards_allowed(state)
    if form is None:
        form = PaymentMethodForm(formdata=None, methods=methods, raw_cards=raw_cards, now=now)
        usable = [m for m in methods if not card_expired(m.exp_month, m.exp_year, now)]
        default = next((m for m in usable if m.is_default), usable[0] if usable else None)
        form.payment_method.data = default.id if default is not None else None
    selected = checked_choice(form, methods, problem)
    fix_payment_for = None
    if refused is Refusal.REACTIVATE and invoice.subscription_id is not None:
        fix_payment_for = invoice.subscription_id
    return (
        render_template(
            "customer_portal/pay_invoice.html",
            customer=customer,
            invoice=invoice,
            form=form,
            methods=methods,
            expired=expired_methods(methods, now),
            selected=selected,
            new_method_page=False,
            **new_card_context(state),
            amount_field=amount_field(invoice.total_money),
            problem=problem,
            refused=refused,
            refused_message=_refusal_message(refused) if refused is not None else None,
            fix_payment_for=fix_payment_for,
        ),
        status,
    )


@blueprint.route("/invoices/<invoice_id>/pay", methods=["GET", "POST"])
@customer_required
def pay_invoice(invoice_id: str) -> Any:
    """Pay one open invoice with a saved card or a new one. Another
    customer's invoice is a 404; a paid or void one is said so, and never
    charged."""
    state = get_state()
    customer = current_customer_or_401()
    found = _own_invoice(state, customer, invoice_id)
    if request.method == "GET":
        found = settle_on_visit(state, customer, found)
    refused = refusal(state, customer, found)
    if request.method == "GET":
        return _render_pay(state, customer, found, refused=refused)

    methods = state.storage.list_payment_methods(customer.id)
    form, valid = posted_payment_form(state, customer, methods)
    if refused is Refusal.NOT_OPEN and found.status is InvoiceStatus.PAID:
        # A double click or a second tab: paid already, charged once.
        return redirect(url_for(".invoice", invoice_id=found.id), code=303)
    if refused is not None:
        return _render_pay(state, customer, found, form, refused=refused, status=409)
    shown = shown_amount()
    if shown is False or (isinstance(shown, Money) and shown != found.total_money):
        problem = Problem(
            _(
                "The amount due changed since this page was shown, so nothing was charged. "
                "Check the new amount, then confirm again."
            )
        )
        return _render_pay(state, customer, found, form, problem=problem, status=409)
    render = partial(_render_pay, state, customer, found)
    if not valid:
        return _render_pay(state, customer, found, form, status=422)
    method = chosen_method(state, customer, form, len(methods), render)
    if not isinstance(method, PaymentMethod):
        return method
    return _pay(state, customer, found, form, method, shown if isinstance(shown, Money) else None)


def _pay(
    state: PortalState,
    customer: Customer,
    invoice: Invoice,
    form: PaymentMethodForm,
    method: PaymentMethod,
    expected: Money | None,
) -> Any:
    try:
        result = pay_open_invoice(state, customer, invoice.id, method, expected=expected)
    except InvoiceNotFound:
        abort(404)
    except ProviderError:
        current_app.logger.exception("Payment provider failed while paying invoice %s", invoice.id)
        return _render_pay(state, customer, invoice, form, problem=unreachable(), status=502)
    if result.paid or result.outcome is PaymentOutcome.ALREADY_PAID:
        if result.paid:
            notify(_("Thank you: invoice %(number)s is paid.", number=result.invoice.number))
        return redirect(url_for(".invoice", invoice_id=invoice.id), code=303)
    if result.refused is not None:
        return _render_pay(state, customer, result.invoice, form, refused=result.refused, status=409)
    outcome = result.outcome
    if outcome is PaymentOutcome.DECLINED:
        problem = Problem(
            _(
                "%(card)s was declined, so nothing was charged. Choose another card or add a new one.",
                card=format_payment_method(method),
            ),
            decline_reason=result.decline_reason or "generic_decline",
            method_id=method.id,
        )
        return _render_pay(state, customer, result.invoice, form, problem=problem, status=422)
    if outcome is PaymentOutcome.AMOUNT_CHANGED:
        problem = Problem(
            _(
                "The amount due changed since this page was shown, so nothing was charged. "
                "Check the new amount, then confirm again."
            )
        )
        return _render_pay(state, customer, result.invoice, form, problem=problem, status=409)
    if outcome is PaymentOutcome.AMOUNT_MISMATCH:
        problem = Problem(
            _(
                "Your bank reported a payment of another amount than the amount due. You will not be "
                "charged again for it: the shop has been told and will sort it out."
            )
        )
        return _render_pay(state, customer, result.invoice, form, problem=problem, status=409)
    if outcome is PaymentOutcome.PENDING:
        problem = Problem(
            _("We are confirming your payment with the bank. Do not pay again: check back in a few minutes.")
        )
        return _render_pay(state, customer, result.invoice, form, problem=problem, status=202)
    if outcome is PaymentOutcome.REQUIRES_ACTION and safe_redirect_target(state, result.redirect_url):
        return redirect(str(result.redirect_url), code=303)
    return _render_pay(state, customer, result.invoice, form, problem=unreachable(), status=502)
