"""Promotion codes: finding a code, whether this customer may use it on
this plan, what it takes off a charge, and using it exactly once.

Codes come from the merchant's :meth:`CustomerPortal.promotion_code_loader
<flask_customer_portal.CustomerPortal.promotion_code_loader>` when one is
registered, else from the store (:class:`PromotionStore`). A customer uses a
code once: the store records the redemption under the subscription's lock,
in the transaction of the charge it discounts (unique per customer and
code), and counts it against ``max_redemptions`` in the same statement, so
two tabs, two customers racing for the last use, or a retry never use a
code twice or once too often. A charge that is declined gives the use back.

What a customer is told never says more than a shop's checkout would: an
unknown, expired, withdrawn or used-up code all get the same answer, and
every attempt counts against ``CUSTOMER_PORTAL_PROMOTION_CODE_RATE_LIMIT``
(so codes cannot be guessed by trying them).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, runtime_checkable

from ..i18n import gettext as _
from ..money import Money
from ..records import PromotionCode, PromotionDuration, PromotionRedemption, normalise_code
from ..state import PortalState
from ..storage import Customer, Invoice, InvoiceLine, Plan, Subscription, SubscriptionLock
from .proration import Proration, discount_amount

__all__ = [
    "CodeCheck",
    "CodeRefusal",
    "PromotionLock",
    "PromotionStore",
    "apply_to_proration",
    "check_code",
    "code_line",
    "find_code",
    "grant_later_periods",
    "has_code_line",
    "later_renewals",
    "promotion_codes_supported",
    "promotion_discount",
    "promotion_lines",
    "redeem_locked",
    "refusal_message",
    "release_invoice_codes",
    "release_locked",
]

logger = logging.getLogger("flask_customer_portal")

#: What a customer may type: letters, digits, ``-`` and ``_``; anything
#: else is refused before any lookup.
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@runtime_checkable
class PromotionStore(Protocol):
    """A store that keeps promotion codes and their redemptions."""

    def get_promotion_code(self, code: str) -> PromotionCode | None:
        """The code whose key is ``normalise_code(code)``, or ``None``."""

    def add_promotion_code(self, code: PromotionCode) -> PromotionCode:
        """Save a code (the merchant's, e.g. from an admin page or a script)."""

    def promotion_redeemed(self, customer_id: str, code: str) -> bool:
        """Whether ``customer_id`` has used ``code`` (its key)."""


@runtime_checkable
class PromotionLock(Protocol):
    """A subscription lock that records redemptions in its transaction."""

    def redeem_promotion(self, code: PromotionCode, redemption: PromotionRedemption) -> bool:
        """Record ``redemption`` unless this customer used the code already
        or ``code.max_redemptions`` are used up; whether it was recorded."""

    def release_promotion(self, customer_id: str, code: str) -> None:
        """Give back a redemption whose charge was not paid."""

    def grant_discount(self, percent: int, renewals: int) -> Subscription:
        """Take ``percent`` off the next ``renewals`` renewal invoices (the
        subscription's ``discount_percent`` and ``discount_renewals``, as a
        retention discount does)."""


def promotion_codes_supported(state: PortalState) -> bool:
    """Whether customers may enter codes: the store can record redemptions
    (the SQLAlchemy store can)."""
    return isinstance(state.storage, PromotionStore)


class CodeRefusal(str, enum.Enum):
    #: Unknown, expired, withdrawn or used up: one answer for all.
    INVALID = "invalid"
    NOT_FOR_PLAN = "not_for_plan"
    ALREADY_USED = "already_used"
    TOO_MANY_TRIES = "too_many_tries"
    #: An amount off, entered where only a percent can be kept (a
    #: subscription's renewals): it is for a plan change's charge.
    PLAN_CHANGE_ONLY = "plan_change_only"
    #: The subscription has a discount still to use.
    HAS_DISCOUNT = "has_discount"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """A code this customer may use on this plan, or why not."""

    code: PromotionCode | None = None
    refusal: CodeRefusal | None = None


def refusal_message(refusal: CodeRefusal) -> str:
    """What the customer is told, next to the field."""
    if refusal is CodeRefusal.NOT_FOR_PLAN:
        return _("This code does not apply to this plan.")
    if refusal is CodeRefusal.ALREADY_USED:
        return _("You have already used this code.")
    if refusal is CodeRefusal.PLAN_CHANGE_ONLY:
        return _("This code can only be used when you change plan.")
    if refusal is CodeRefusal.HAS_DISCOUNT:
        return _(
            "This subscription already has a discount. You can add a code once that discount has been used."
        )
    if refusal is CodeRefusal.TOO_MANY_TRIES:
        return _("Too many codes tried. Try again later.")
    return _("This code is not valid. Check it and try again.")


def find_code(state: PortalState, customer: Customer, text: str) -> PromotionCode | None:
    """The code ``text`` names: the merchant's loader's answer if one is
    registered (a loader that raises or answers something else is logged
    and finds nothing), else the store's."""
    if not _CODE_RE.match(text.strip()):
        return None
    loader = state.hooks.promotion_code_loader
    if loader is not None:
        try:
            found = loader(customer, normalise_code(text))
        except Exception:
            logger.exception("The promotion_code_loader raised")
            return None
        if found is not None and not isinstance(found, PromotionCode):
            logger.error("The promotion_code_loader must return a PromotionCode or None")
            return None
        return found if found is None or found.key == normalise_code(text) else None
    storage = state.storage
    if isinstance(storage, PromotionStore):
        return storage.get_promotion_code(text)
    return None


def check_code(
    state: PortalState, customer: Customer, plan: Plan, text: str, *, now: datetime, count: bool = True
) -> CodeCheck:
    """Whether ``customer`` may use the code ``text`` on ``plan`` at ``now``.
    Counts one attempt against the customer's limit first (``count=False``
    checks again, at a confirmation, the code a signed preview applied)."""
    if count and state.customer_limits.hit_promotion_code(customer.id) is not None:
        return CodeCheck(refusal=CodeRefusal.TOO_MANY_TRIES)
    code = find_code(state, customer, text)
    if code is None or not code.active or (code.expires_at is not None and code.expires_at <= now):
        return CodeCheck(refusal=CodeRefusal.INVALID)
    if code.amount_off is not None and code.amount_off.currency != plan.price.currency:
        return CodeCheck(refusal=CodeRefusal.NOT_FOR_PLAN)
    if code.plan_ids and plan.id not in code.plan_ids:
        return CodeCheck(refusal=CodeRefusal.NOT_FOR_PLAN)
    storage = state.storage
    if isinstance(storage, PromotionStore) and storage.promotion_redeemed(customer.id, code.key):
        return CodeCheck(refusal=CodeRefusal.ALREADY_USED)
    return CodeCheck(code=code)


def promotion_discount(code: PromotionCode, amount: Money) -> int:
    """What ``code`` takes off ``amount`` (minor units, never more than
    ``amount``): a percent rounded half up (as a retention discount is), or
    the amount off in the same currency."""
    if amount.amount <= 0:
        return 0
    if code.percent_off is not None:
        return discount_amount(amount.amount, code.percent_off)
    if code.amount_off is None or code.amount_off.currency != amount.currency:
        return 0
    return min(amount.amount, code.amount_off.amount)


def apply_to_proration(proration: Proration, code: PromotionCode | None) -> tuple[Proration, int]:
    """``proration`` with ``code`` taken off the change's net charge (the
    new plan's time less the old plan's unused time) before account credit
    pays the rest; and what it took off. A change that costs nothing now
    gets nothing off."""
    if code is None:
        return proration, 0
    net = proration.new_charge - proration.unused
    off = promotion_discount(code, Money(max(net, 0), proration.currency))
    if off <= 0:
        return proration, 0
    credit = proration.credit_used + proration.credit_after
    rest = net - off
    credit_used = min(credit, rest)
    return (
        replace(
            proration, credit_used=credit_used, due_now=rest - credit_used, credit_after=credit - credit_used
        ),
        off,
    )


def code_line(code: PromotionCode, off: int) -> InvoiceLine:
    """The invoice line of a code's discount (a snapshot: the code and its terms)."""
    if code.percent_off is not None:
        text = f"Promotion code {code.key} ({code.percent_off}% off)"
    else:
        text = f"Promotion code {code.key}"
    return InvoiceLine(text, 1, -off, -off)


def has_code_line(invoice: Invoice, code: PromotionCode) -> bool:
    """Whether ``invoice`` took ``code`` off (so its use was recorded with it)."""
    return any(line.description.startswith(f"Promotion code {code.key}") for line in invoice.lines)


def promotion_lines(lines: Sequence[InvoiceLine], code: PromotionCode, off: int) -> tuple[InvoiceLine, ...]:
    """``lines`` with the code's line, put before an account-credit line
    (the order they apply in)."""
    out = list(lines)
    at = next((i for i, line in enumerate(out) if line.description == "Account credit"), len(out))
    out.insert(at, code_line(code, off))
    return tuple(out)


def redeem_locked(
    lock: SubscriptionLock, code: PromotionCode, *, invoice_id: str | None, now: datetime
) -> bool:
    """Use ``code`` for the locked subscription's customer, in the lock's
    transaction; whether it could be used (not by this customer before, and
    not used up)."""
    if not isinstance(lock, PromotionLock):
        return False
    subscription = lock.subscription
    return lock.redeem_promotion(
        code,
        PromotionRedemption(
            code=code.key,
            customer_id=subscription.customer_id,
            subscription_id=subscription.id,
            redeemed_at=now,
            invoice_id=invoice_id,
        ),
    )


def release_locked(lock: SubscriptionLock, code: PromotionCode) -> None:
    """Give the use of ``code`` back (its charge was declined)."""
    if isinstance(lock, PromotionLock):
        lock.release_promotion(lock.subscription.customer_id, code.key)


def release_invoice_codes(lock: SubscriptionLock, invoice: Invoice) -> None:
    """Give back the codes ``invoice`` took off, now that it is voided
    unpaid: their use was recorded with it, and a charge that never went
    through uses nothing (the code is read back from the invoice's own
    line, so a code withdrawn since is given back all the same)."""
    if not isinstance(lock, PromotionLock):
        return
    for line in invoice.lines:
        words = line.description.split()
        if line.amount < 0 and words[:2] == ["Promotion", "code"] and _CODE_RE.match(" ".join(words[2:3])):
            lock.release_promotion(lock.subscription.customer_id, normalise_code(words[2]))


#: The renewals a ``forever`` percent code takes off: more than any
#: subscription will see.
FOREVER_RENEWALS = 10_000


def later_renewals(code: PromotionCode) -> int:
    """How many renewals after the charge it is entered at a code takes
    off: ``duration_periods - 1`` for ``repeating``, all for ``forever``,
    none for ``once``. Only a percent carries on (an amount off is for one
    charge)."""
    if code.percent_off is None or code.duration is PromotionDuration.ONCE:
        return 0
    if code.duration is PromotionDuration.FOREVER:
        return FOREVER_RENEWALS
    return code.duration_periods - 1


def grant_later_periods(lock: SubscriptionLock, code: PromotionCode) -> None:
    """After the charge a code was used on: its percent on the renewals it
    lasts for, unless the subscription still has a discount to use (that
    one is kept)."""
    renewals = later_renewals(code)
    if renewals <= 0 or code.percent_off is None or not isinstance(lock, PromotionLock):
        return
    if lock.subscription.discount_renewals > 0:
        return
    lock.grant_discount(min(code.percent_off, 100), renewals)
