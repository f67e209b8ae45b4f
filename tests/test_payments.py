"""The test payment provider: test cards, typed outcomes, idempotency."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from flask_customer_portal import Money, PaymentProvider, TestPaymentProvider
from flask_customer_portal.payments import (
    CardDetails,
    ChargeDeclined,
    ChargeSucceeded,
    DeclineReason,
    MethodAttached,
    MethodDeclined,
    luhn_valid,
)

NEXT_YEAR = datetime.now(timezone.utc).year + 1


def _card(number: str, **overrides: object) -> CardDetails:
    values: dict[str, object] = {"number": number, "exp_month": 12, "exp_year": NEXT_YEAR, "cvc": "123"}
    values.update(overrides)
    return CardDetails(**values)  # type: ignore[arg-type]


def test_it_is_a_payment_provider() -> None:
    provider = TestPaymentProvider()
    assert isinstance(provider, PaymentProvider)
    assert provider.is_test
    assert provider.accepts_raw_cards


def test_success_card_attaches_and_charges() -> None:
    provider = TestPaymentProvider()
    attached = provider.attach_card("cus_1", _card("4242424242424242"))
    assert isinstance(attached, MethodAttached)
    assert (attached.brand, attached.last4, attached.exp_month, attached.exp_year) == (
        "visa",
        "4242",
        12,
        NEXT_YEAR,
    )
    assert "4242424242424242" not in attached.provider_token
    result = provider.charge(
        customer_id="cus_1",
        provider_token=attached.provider_token,
        amount=Money(1900, "USD"),
        idempotency_key="invoice:inv_1:attempt:1",
        invoice_id="inv_1",
        description="Pro",
    )
    assert isinstance(result, ChargeSucceeded)
    assert result.amount == Money(1900, "USD")
    assert provider.charges == [("invoice:inv_1:attempt:1", Money(1900, "USD"))]


@pytest.mark.parametrize(
    ("number", "reason"),
    [("4000000000000002", DeclineReason.GENERIC), ("4000000000009995", DeclineReason.INSUFFICIENT_FUNDS)],
)
def test_declining_cards_are_refused_with_distinct_reasons(number: str, reason: DeclineReason) -> None:
    provider = TestPaymentProvider()
    assert provider.attach_card("cus_1", _card(number)) == MethodDeclined(reason)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"number": "4242424242424241"}, DeclineReason.GENERIC),
        ({"exp_year": 2020}, DeclineReason.EXPIRED_CARD),
        ({"cvc": "12"}, DeclineReason.INCORRECT_CVC),
        ({"cvc": "abc"}, DeclineReason.INCORRECT_CVC),
    ],
)
def test_invalid_card_input_is_declined(overrides: dict[str, object], reason: DeclineReason) -> None:
    card = _card(str(overrides.pop("number", "4242424242424242")), **overrides)
    assert TestPaymentProvider().attach_card("cus_1", card) == MethodDeclined(reason)


@pytest.mark.parametrize("reason", [DeclineReason.GENERIC, DeclineReason.INSUFFICIENT_FUNDS])
def test_a_stored_method_that_declines_every_charge(reason: DeclineReason) -> None:
    provider = TestPaymentProvider()
    token = provider.token_for("4000000000000002", charges_decline=reason)
    result = provider.charge(
        customer_id="c",
        provider_token=token,
        amount=Money(100, "IDR"),
        idempotency_key="k",
        invoice_id="inv_1",
        description="d",
    )
    assert isinstance(result, ChargeDeclined)
    assert result.reason is reason
    assert provider.charges == []


def test_same_idempotency_key_charges_once() -> None:
    provider = TestPaymentProvider()
    token = provider.token_for("4242424242424242")
    results = [
        provider.charge(
            customer_id="c",
            provider_token=token,
            amount=Money(500, "USD"),
            idempotency_key="same",
            invoice_id="inv_1",
            description="d",
        )
        for _ in range(3)
    ]
    assert results[0] == results[1] == results[2]
    assert len(provider.charges) == 1
    assert provider.find_charge("same") == results[0]
    assert provider.find_charge("never-seen") is None


def test_unknown_tokens_decline() -> None:
    result = TestPaymentProvider().charge(
        customer_id="c",
        provider_token="tok_other",
        amount=Money(1, "USD"),
        idempotency_key="x",
        invoice_id="inv_1",
        description="d",
    )
    assert isinstance(result, ChargeDeclined)


def test_card_details_never_show_number_or_cvc() -> None:
    card = _card("4242424242424242", cvc="987")
    assert "4242424242424242" not in repr(card)
    assert "987" not in repr(card)
    assert card.last4 == "4242"


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4242424242424242", True),
        ("4000000000000002", True),
        ("4000000000009995", True),
        ("4242424242424241", False),
        ("42424242", False),
        ("4242 4242 4242 4242", False),
        ("", False),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid
