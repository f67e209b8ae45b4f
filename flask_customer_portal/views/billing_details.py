"""Billing details: the name, address and tax ID invoices are made out to.

Saved details go on every invoice issued afterwards (the store copies them
into the invoice when it is issued). An open invoice issued without any can
be given the current details once; after that its details are part of the
issued document and never change. A paid, void or refunded invoice is final
and keeps what it was issued with, details or none
(:func:`~flask_customer_portal.billing.periods.invoice_takes_billing_details`).
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_babel import get_locale

from .. import signals
from ..billing.periods import invoice_takes_billing_details
from ..clock import utcnow
from ..forms import ConfirmForm
from ..forms.billing_details import BillingDetailsForm, scheme_label
from ..i18n import gettext as _
from ..state import PortalState, get_state
from ..storage import AuditEvent, BillingDetails, Customer, Invoice, StateConflict
from ..tax_ids import SCHEME_EXAMPLES, bill_to_lines
from ._base import blueprint, current_customer_or_401, customer_required, notify, plausible_id

__all__ = ["billing_details", "invoice_billing_details"]

#: The fields compared to tell what a save changed (``updated_at`` aside).
_FIELDS = ("name", "line1", "line2", "city", "region", "postal_code", "country", "tax_id", "tax_id_scheme")


def _locale(state: PortalState) -> str:
    return str(get_locale() or state.config.default_locale)


@blueprint.context_processor
def _billing_details_context() -> dict[str, Any]:
    """``billing_address_lines(details)`` for templates: the bill-to block
    in the page's language, as the PDF prints it."""

    def billing_address_lines(details: BillingDetails) -> tuple[str, ...]:
        return bill_to_lines(details, _locale(get_state()))

    return {
        "billing_address_lines": billing_address_lines,
        "invoice_takes_billing_details": invoice_takes_billing_details,
    }


def _return_invoice_id() -> str | None:
    """``?invoice=<id>``: the invoice to go back to after saving."""
    invoice_id = request.args.get("invoice")
    return invoice_id if invoice_id and plausible_id(invoice_id) else None


def _render_form(state: PortalState, customer: Customer, form: BillingDetailsForm, saved: bool) -> str:
    return render_template(
        "customer_portal/billing_details.html",
        customer=customer,
        form=form,
        has_saved_details=saved,
        return_invoice_id=_return_invoice_id(),
        scheme_examples=[(scheme_label(scheme), example) for scheme, example in SCHEME_EXAMPLES.items()],
        tax_id_example=form.tax_id_example(),
        # For portal-tax-id.js: the hint follows the kind and country chosen.
        tax_id_examples={
            "schemes": {scheme.value: example for scheme, example in SCHEME_EXAMPLES.items()},
            "countries": form.country_examples(),
        },
    )


@blueprint.route("/profile/billing", methods=["GET", "POST"])
@customer_required
def billing_details() -> Any:
    state = get_state()
    customer = current_customer_or_401()
    locale = _locale(state)
    current = state.storage.get_billing_details(customer.id)
    if request.method == "GET":
        form = BillingDetailsForm(formdata=None, data=BillingDetailsForm.data_of(current), locale=locale)
        return _render_form(state, customer, form, current is not None)

    form = BillingDetailsForm(locale=locale)
    if not form.validate():
        return _render_form(state, customer, form, current is not None), 400 if form.csrf_failed else 422
    cleaned = form.cleaned
    changed = tuple(
        name for name in _FIELDS if current is None or getattr(current, name) != getattr(cleaned, name)
    )
    if changed:
        saved = state.storage.save_billing_details(
            customer.id,
            cleaned,
            event=AuditEvent(
                customer_id=customer.id,
                action="billing_details.updated",
                occurred_at=utcnow(),
                details={"changed": ",".join(changed)},
            ),
        )
        if saved is None:  # deleted by the merchant while the form was open
            abort(404)
        signals.billing_details_updated.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            customer=customer,
            billing_details=saved,
            changed=changed,
        )
        notify(_("Your billing details were saved. Invoices issued from now on show them."))
    else:
        notify(_("There were no changes to save."))
    invoice_id = _return_invoice_id()
    if invoice_id is not None:
        return redirect(url_for(".invoice_billing_details", invoice_id=invoice_id), code=303)
    return redirect(url_for(".billing_details"), code=303)


def _own_invoice(state: PortalState, customer: Customer, invoice_id: str) -> Invoice:
    if not plausible_id(invoice_id):
        abort(404)
    invoice = state.storage.get_invoice(customer.id, invoice_id)
    if invoice is None:
        abort(404)
    return invoice


def _render_invoice_page(
    state: PortalState, invoice: Invoice, current: BillingDetails | None, form: ConfirmForm
) -> str:
    locale = _locale(state)
    return render_template(
        "customer_portal/invoice_billing_details.html",
        invoice=invoice,
        form=form,
        current_lines=None if current is None else bill_to_lines(current, locale),
        invoice_lines=None
        if invoice.billing_details is None
        else bill_to_lines(invoice.billing_details, locale),
    )


@blueprint.route("/invoices/<invoice_id>/billing-details", methods=["GET", "POST"])
@customer_required
def invoice_billing_details(invoice_id: str) -> Any:
    state = get_state()
    customer = current_customer_or_401()
    invoice = _own_invoice(state, customer, invoice_id)
    current = state.storage.get_billing_details(customer.id)
    form = ConfirmForm()
    if request.method == "GET":
        return _render_invoice_page(state, invoice, current, form)
    if not form.validate():
        return _render_invoice_page(state, invoice, current, form), 400
    if not invoice_takes_billing_details(invoice) or current is None:
        # Already filled in (in another tab, say), final (paid, void or
        # refunded: it keeps what it was issued with), or nothing to add.
        # The page says which.
        return _render_invoice_page(state, invoice, current, form), 409
    try:
        updated = state.storage.add_invoice_billing_details(
            customer.id,
            invoice.id,
            current,
            event=AuditEvent(
                customer_id=customer.id,
                action="invoice.billing_details_added",
                occurred_at=utcnow(),
                subject_id=invoice.id,
            ),
        )
    except StateConflict:
        found = state.storage.get_invoice(customer.id, invoice.id) or invoice
        return _render_invoice_page(state, found, current, form), 409
    if updated is None:  # deleted while the page was open
        abort(404)
    signals.invoice_billing_details_added.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        customer=customer,
        invoice=updated,
    )
    notify(_("Invoice %(number)s now shows your billing details.", number=updated.number))
    return redirect(url_for(".invoice", invoice_id=updated.id), code=303)
