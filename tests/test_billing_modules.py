"""Names that moved between the modules of ``billing`` stay importable
where they were documented."""

from __future__ import annotations

from flask_customer_portal import billing
from flask_customer_portal.billing import collect, reactivation, renewal

MOVED_TO_REACTIVATION = (
    "AmountDue",
    "ReactivationResult",
    "amount_due",
    "amount_due_now",
    "arrears_in_flight",
    "reactivate_subscription",
)


def test_reactivation_names_are_the_same_objects_from_renewal() -> None:
    for name in MOVED_TO_REACTIVATION:
        assert name in renewal.__all__
        assert name in reactivation.__all__
        assert getattr(renewal, name) is getattr(reactivation, name), name
    assert renewal.ProviderError is collect.ProviderError
    assert billing.reactivate is reactivation.reactivate_subscription
    assert billing.amount_due is reactivation.amount_due
