"""What came of paying: one answer for every money move.

Paying one invoice (:mod:`.collect`), reactivating an ``on_hold``
subscription (:mod:`.renewal`) and changing a plan now (:mod:`.plan_change`)
each end in one :class:`PaymentOutcome`. The view that asked turns it into
a page; the CLI into a count."""

from __future__ import annotations

import enum

__all__ = ["PaymentOutcome"]


class PaymentOutcome(str, enum.Enum):
    """What came of a payment the portal tried."""

    #: The money was taken (or nothing was due) and what it pays for is done:
    #: the invoice is paid, the subscription active again, the plan changed.
    PAID = "paid"
    #: Nothing to do: this very payment was already made (another tab, a
    #: double click, the same confirmation again). Nothing was charged.
    ALREADY_PAID = "already_paid"
    #: The card was declined; nothing was taken.
    DECLINED = "declined"
    #: The bank wants the customer to confirm (3-D Secure); nothing taken yet.
    REQUIRES_ACTION = "requires_action"
    #: The provider answered with an error; no money moved.
    FAILED = "failed"
    #: The outcome of an earlier attempt is still unknown: nothing new was
    #: tried; it is asked of the provider again on the next try.
    PENDING = "pending"
    #: What is due is not the amount the customer was shown: nothing was
    #: charged; the customer needs a fresh look.
    AMOUNT_CHANGED = "amount_changed"
    #: The provider took another amount than the invoice's: the invoice stays
    #: open and flagged for the merchant, is not charged again, and nothing
    #: it pays for is done.
    AMOUNT_MISMATCH = "amount_mismatch"

    def __str__(self) -> str:
        return self.value
