"""Cancellation reasons and the retention offers a merchant can make.

Before a customer confirms a cancellation the portal asks why (the reasons
of ``CUSTOMER_PORTAL_CANCELLATION_REASONS``, plus an optional comment) and
then asks the merchant's retention offer function, if one is registered,
whether to make an offer instead::

    from flask_customer_portal import DiscountOffer, PauseOffer, PlanOffer

    @portal.retention_offer
    def offer(customer, subscription, reason):
        if reason.code == "too_expensive":
            return DiscountOffer(percent=30, renewals=3)
        if reason.code == "temporary":
            return PauseOffer(months=2)
        if reason.code == "missing_features" and subscription.plan_id == "plan_basic":
            return PlanOffer(plan_id="plan_pro")
        return None

What the function returns is re-checked on every request: the customer
accepts an offer with a POST that names no percentage or duration, and
the portal asks the function again and applies what it says now (see
:func:`flask_customer_portal.billing.retention.retention_offer_for`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import PortalConfig
from .i18n import lazy_gettext as _l
from .storage import Customer, Subscription

__all__ = [
    "DEFAULT_CANCELLATION_REASONS",
    "REASON_TEXT_MAX_LENGTH",
    "CancellationReason",
    "DiscountOffer",
    "PauseOffer",
    "PlanOffer",
    "RetentionOffer",
    "RetentionOfferFunction",
    "cancellation_reasons",
    "clean_reason_text",
]

#: The reasons a customer picks from unless the merchant sets
#: ``CUSTOMER_PORTAL_CANCELLATION_REASONS``; shown in the customer's language.
DEFAULT_CANCELLATION_REASONS: tuple[tuple[str, Any], ...] = (
    ("too_expensive", _l("It costs too much")),
    ("not_using", _l("I don't use it enough")),
    ("missing_features", _l("It is missing something I need")),
    ("switching", _l("I'm switching to another product")),
    ("technical_issues", _l("It didn't work well for me")),
    ("temporary", _l("I only need a break for a while")),
    ("other", _l("Something else")),
)

#: The longest comment a customer can add to their reason, in characters.
REASON_TEXT_MAX_LENGTH = 1000

# Control and format characters that have no place in a comment: C0/C1
# controls (but newline and tab), and the bidirectional overrides that can
# make a comment read differently in the merchant's tools.
_UNWANTED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


@dataclass(frozen=True, slots=True)
class CancellationReason:
    """Why a customer cancels: the code they picked, its label as they saw
    it, and their own words (or ``None``)."""

    code: str
    label: str
    text: str | None = None


@dataclass(frozen=True, slots=True)
class PauseOffer:
    """Pause instead of cancelling, for ``months`` (1 to
    ``CUSTOMER_PORTAL_MAX_PAUSE_MONTHS``). Only shown where the customer may
    pause (``CUSTOMER_PORTAL_ALLOW_PAUSE`` and their rules)."""

    months: int
    message: str | None = None
    """Shown above the offer instead of the portal's own sentence."""

    def __post_init__(self) -> None:
        if isinstance(self.months, bool) or not isinstance(self.months, int) or self.months < 1:
            raise ValueError(f"PauseOffer.months must be 1 or more, got {self.months!r}")


@dataclass(frozen=True, slots=True)
class PlanOffer:
    """Switch to another plan (usually a cheaper one): a link to the plan
    change page with the plan chosen. Only shown where the customer may
    change to that plan."""

    plan_id: str
    message: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.plan_id, str) or not self.plan_id:
            raise ValueError("PlanOffer.plan_id must be a plan's id")


@dataclass(frozen=True, slots=True)
class DiscountOffer:
    """``percent`` (1 to 99) off each of the next ``renewals`` renewal
    invoices, as a discount line on the invoice. Not offered again while an
    earlier discount still has renewals to go. (A whole renewal for free
    would be an invoice of zero, which payment providers do not charge.)"""

    percent: int
    renewals: int
    message: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.percent, bool) or not isinstance(self.percent, int) or not 1 <= self.percent <= 99:
            raise ValueError(f"DiscountOffer.percent must be 1 to 99, got {self.percent!r}")
        if isinstance(self.renewals, bool) or not isinstance(self.renewals, int) or self.renewals < 1:
            raise ValueError(f"DiscountOffer.renewals must be 1 or more, got {self.renewals!r}")


RetentionOffer = PauseOffer | PlanOffer | DiscountOffer

#: ``(customer, subscription, reason) -> RetentionOffer | None``
RetentionOfferFunction = Callable[[Customer, Subscription, CancellationReason], "RetentionOffer | None"]


def cancellation_reasons(config: PortalConfig) -> tuple[tuple[str, str], ...]:
    """``(code, label)`` of every reason, labels in the current language."""
    reasons = config.cancellation_reasons or DEFAULT_CANCELLATION_REASONS
    return tuple((code, str(label)) for code, label in reasons)


def clean_reason_text(text: str | None) -> str | None:
    """A customer's comment as it is kept: line breaks normalised, control
    and direction-changing characters removed, NFC, stripped; ``None`` when
    nothing is left. The length is checked by the caller, on the result."""
    if not text:
        return None
    cleaned = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    cleaned = _UNWANTED.sub("", cleaned).strip()
    return cleaned or None
