"""Per-customer rules: what a customer may do in the portal, decided by the
merchant for each request.

The merchant registers one function::

    @portal.rules_loader
    def rules(customer, subscription):
        if customer.id in enterprise_customers:
            return CustomerRules(billing_only=True)
        return CustomerRules(allowed_plan_ids=frozenset({"plan_pro", "plan_team"}))

It is called with the signed-in customer and the subscription a page is
about (``None`` on pages about no single subscription). What it forbids is
hidden in the pages **and** refused by the server (a 403 with a clear
page), so a hand-made POST cannot do what the button did not offer
(:func:`flask_customer_portal.billing.lifecycle.rules_for` asks the
function).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .storage import Customer, Subscription

__all__ = ["CustomerRules", "RulesLoader"]


@dataclass(frozen=True, slots=True)
class CustomerRules:
    """What one customer may do (for one subscription).

    The defaults allow everything the merchant's configuration allows;
    a rule can only take away, never add what the configuration forbids
    (``CUSTOMER_PORTAL_ALLOW_PAUSE = False`` wins over ``can_pause=True``).
    """

    billing_only: bool = False
    """Invoices, payment methods and profile only: no cancel, pause or plan
    change, whatever the other fields say."""
    can_cancel: bool = True
    can_pause: bool = True
    can_change_plan: bool = True
    allowed_plan_ids: frozenset[str] | None = None
    """Plans the customer may switch to; ``None`` means every plan the
    merchant offers for the subscription's product."""

    @property
    def may_cancel(self) -> bool:
        return self.can_cancel and not self.billing_only

    @property
    def may_pause(self) -> bool:
        return self.can_pause and not self.billing_only

    @property
    def may_change_plan(self) -> bool:
        return self.can_change_plan and not self.billing_only

    def allows_plan(self, plan_id: str) -> bool:
        """Whether switching to ``plan_id`` is allowed by this rule (the
        plan catalogue decides separately whether the plan exists)."""
        return self.may_change_plan and (self.allowed_plan_ids is None or plan_id in self.allowed_plan_ids)


#: ``(customer, subscription or None) -> CustomerRules``
RulesLoader = Callable[[Customer, "Subscription | None"], CustomerRules]
