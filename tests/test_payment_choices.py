"""The payment choices the invoice's and the subscription's payment pages
share: which one is shown checked, and the ``payment_choices`` macro of
``_payment_choices.html`` that shows them."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, render_template_string

from flask_customer_portal.clock import utcnow
from flask_customer_portal.forms.payment import PaymentMethodForm
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import PaymentMethod
from flask_customer_portal.views.payment_methods import (
    TEST_CARD_HINTS,
    Problem,
    checked_choice,
    expired_methods,
    new_card_context,
)

VISA = PaymentMethod("pm_visa", "cus_a", "visa", "4242", 12, 2040, "tok_visa", is_default=True)
OLD = PaymentMethod("pm_old", "cus_a", "mastercard", "4444", 1, 2020, "tok_old")

TEMPLATE = (
    '{% from "customer_portal/_payment_choices.html" import payment_choices with context %}'
    "{{ payment_choices(form, methods, selected, expired, legend, current=current) }}"
)


def _render(app: Flask, *, error: str | None = None, **kw: Any) -> str:
    with app.test_request_context("/portal/"):
        form = PaymentMethodForm(formdata=None, methods=kw.get("methods", ()), raw_cards=True, now=utcnow())
        if error is not None:
            form.payment_method.errors = [error]
        context: dict[str, Any] = {
            "methods": (),
            "selected": "",
            "expired": set(),
            "legend": "Pay with",
            "current": None,
        }
        return render_template_string(TEMPLATE, form=form, **{**context, **kw})


def _checked(html: str) -> list[str]:
    return re.findall(r'value="([^"]+)"\s*checked', html)


def test_saved_cards_then_a_new_card_with_the_chosen_one_checked(app: Flask) -> None:
    html = _render(app, methods=(VISA, OLD), selected="pm_visa", expired={"pm_old"}, current=OLD)
    assert "<legend" in html and "Pay with</legend>" in html
    assert re.findall(r'name="payment_method" id="([^"]+)" value="([^"]+)"', html) == [
        ("payment-method-1", "pm_visa"),
        ("payment-method-2", "pm_old"),
        ("payment-method-new", "new"),
    ]
    assert _checked(html) == ["pm_visa"]
    visa, old = html.split('for="payment-method-1">')[1], html.split('for="payment-method-2">')[1]
    assert visa.split("</label>")[0].count("Default") == 1
    assert "(current)" not in visa.split("</label>")[0]
    assert "(current)" in old.split("</label>")[0]
    assert "badge-expired" in old.split("</label>")[0]
    assert "badge-expired" not in visa.split("</label>")[0]
    assert "field-error" not in html and "aria-describedby" not in html


def test_without_saved_cards_a_new_card_is_checked(app: Flask) -> None:
    html = _render(app)
    assert _checked(html) == ["new"]


def test_the_fields_error_is_said_and_described(app: Flask) -> None:
    html = _render(app, methods=(VISA,), selected="", error="Choose how to pay.")
    assert 'class="payment-choices field-error" aria-describedby="payment_method-error"' in html
    assert '<p class="field-message" id="payment_method-error">Choose how to pay.</p>' in html
    assert _checked(html) == []


def _form(app: Flask, choice: str | None) -> str:
    with app.test_request_context("/portal/"):
        form = PaymentMethodForm(formdata=None, methods=(VISA, OLD), raw_cards=True, now=utcnow())
        form.payment_method.data = choice
        declined = Problem("The card was declined.", decline_reason="generic_decline", method_id="pm_old")
        return "|".join(
            (checked_choice(form, (VISA, OLD), None), checked_choice(form, (VISA, OLD), declined))
        )


def test_the_checked_choice_is_a_known_card_or_a_new_one_never_the_card_just_declined(app: Flask) -> None:
    assert _form(app, " pm_visa ") == "pm_visa|pm_visa"
    assert _form(app, "new") == "new|new"
    assert _form(app, "pm_old") == "pm_old|"
    assert _form(app, "pm_someone_elses") == "|"
    assert _form(app, None) == "|"


def test_expired_methods_are_those_past_their_month(app: Flask) -> None:
    assert expired_methods((VISA, OLD), utcnow()) == {"pm_old"}
    assert expired_methods((), utcnow()) == set()


def test_the_new_card_partial_gets_raw_fields_and_test_cards_only_in_test_mode(app: Flask) -> None:
    with app.app_context():
        state = get_state(app)
        context = new_card_context(state)
        assert context["raw_cards"] is True
        assert context["test_cards"] == TEST_CARD_HINTS
        assert context["card_element"] is None
        assert context["payment_provider"] is state.payments
