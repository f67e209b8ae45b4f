"""The account's payment methods: every saved card, which subscriptions it
pays for, the default; adding a card without a subscription, making one
the default. Removing one is :func:`.payment_methods.remove_payment_method`.

Adding a card reuses the payment-method form and its checks
(:mod:`.payment_methods`): the same fields, the same limits, the same
provider card element. It moves no money.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from flask import abort, redirect, render_template, request, url_for

from ..billing import payment_methods as saved_methods
from ..clock import utcnow
from ..formatting import format_payment_method
from ..forms import ConfirmForm
from ..forms.payment import NEW_CARD, PaymentMethodForm, SavedMethod
from ..i18n import gettext as _
from ..i18n import ngettext
from ..state import PortalState, get_state
from ..storage import Customer, PaymentMethod, Subscription, SubscriptionStatus
from ._base import blueprint, current_customer_or_401, customer_required, notify, plausible_id
from .payment_methods import (
    Problem,
    expired_methods,
    new_card,
    new_card_context,
    new_method_page,
    posted_payment_form,
    raw_cards_allowed,
)

__all__ = ["payment_methods", "set_default_payment_method"]

logger = logging.getLogger("flask_customer_portal")

#: The form field that asks to move the active subscriptions to the new default.
ALSO_ACTIVE_FIELD = "also_active_subscriptions"


def _users(
    methods: Sequence[PaymentMethod], subscriptions: Sequence[Subscription]
) -> dict[str, list[Subscription]]:
    """Per method id, the subscriptions not cancelled that are charged to
    it (they keep it from being removed), in the order of the list."""
    users: dict[str, list[Subscription]] = {m.id: [] for m in methods}
    for subscription in subscriptions:
        method = subscription.payment_method
        if (
            method is not None
            and method.id in users
            and subscription.status is not SubscriptionStatus.CANCELLED
        ):
            users[method.id].append(subscription)
    return users


def _render(
    state: PortalState,
    customer: Customer,
    form: PaymentMethodForm | None = None,
    *,
    problem: Problem | None = None,
    status: int = 200,
) -> tuple[str, int]:
    now = utcnow()
    methods = list(state.storage.list_payment_methods(customer.id))
    subscriptions = list(state.storage.list_subscriptions(customer.id))
    raw_cards = raw_cards_allowed(state)
    if form is None:
        form = PaymentMethodForm(formdata=None, methods=(), raw_cards=raw_cards, now=now)
    current = [s for s in subscriptions if s.is_current]
    return (
        render_template(
            "customer_portal/payment_methods.html",
            customer=customer,
            form=form,
            methods=methods,
            users=_users(methods, subscriptions),
            expired=expired_methods(methods, now),
            active=[s for s in subscriptions if s.status is SubscriptionStatus.ACTIVE],
            current_subscriptions=current,
            keeps_default=state.capabilities.default_payment_method,
            **new_card_context(state),
            # A provider that takes new methods on its own page does so per
            # subscription: the page links to each subscription's instead.
            new_method_page=new_method_page(state) is not None,
            new_card_only=True,
            problem=problem,
        ),
        status,
    )


@blueprint.route("/payment-methods", methods=["GET", "POST"])
@customer_required
def payment_methods() -> Any:
    """Every saved method of the account; a POST adds a card (the fields of
    the payment-method form, ``payment_method=new``)."""
    state = get_state()
    customer = current_customer_or_401()
    if request.method == "GET":
        return _render(state, customer)

    methods = state.storage.list_payment_methods(customer.id)
    # No saved method is a choice here: only a new card is accepted.
    form, valid = posted_payment_form(state, customer, ())
    if request.form.get("payment_method") != NEW_CARD or new_method_page(state) is not None:
        abort(400)
    render = partial(_render, state, customer)
    if not valid:
        return render(form, status=422)
    choice = form.choice
    if isinstance(choice, SavedMethod):  # pragma: no cover - no saved method is accepted
        abort(400)
    attached = new_card(state, customer, form, choice, len(methods), render)
    if not isinstance(attached, PaymentMethod):
        return attached
    notify(_("%(card)s was added to your account.", card=format_payment_method(attached)))
    return redirect(url_for(".payment_methods"), code=303)


@blueprint.route("/payment-methods/<payment_method_id>/default", methods=["POST"])
@customer_required
def set_default_payment_method(payment_method_id: str) -> Any:
    """Make a saved method the account's default; with
    ``also_active_subscriptions``, the active subscriptions are charged to
    it from their next renewal on. Nothing is charged now."""
    state = get_state()
    customer = current_customer_or_401()
    if not ConfirmForm().validate():
        abort(400)
    if not plausible_id(payment_method_id) or not state.capabilities.default_payment_method:
        abort(404)
    method = state.storage.get_payment_method(customer.id, payment_method_id)
    if method is None:
        abort(404)
    back = url_for(".payment_methods")
    try:
        result = saved_methods.set_default_payment_method(
            state,
            customer,
            method,
            also_active_subscriptions=request.form.get(ALSO_ACTIVE_FIELD) == "1",
            now=utcnow(),
        )
    except saved_methods.MethodExpired:
        notify(
            _(
                "%(card)s has expired, so it cannot be your default. Add a new card instead.",
                card=format_payment_method(method),
            )
        )
        return redirect(back, code=303)
    if result is None:
        abort(404)
    card = format_payment_method(result.method)
    if result.moved:
        message = ngettext(
            "%(card)s is now your default card, and %(num)d subscription is charged to it "
            "from its next renewal.",
            "%(card)s is now your default card, and %(num)d subscriptions are charged to it "
            "from their next renewals.",
            len(result.moved),
            card=card,
        )
    elif result.changed:
        message = _("%(card)s is now your default card.", card=card)
    else:
        message = _("Nothing changed: %(card)s was already your default card.", card=card)
    notify(message)
    return redirect(back, code=303)
