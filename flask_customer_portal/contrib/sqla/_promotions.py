"""Promotion codes and who used them: the store's reads and writes, and the
redemption a subscription lock records in its transaction."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from ...money import Money
from ...records import normalise_code
from ...storage import PromotionCode, PromotionRedemption
from ._base import StoreBase, insert_if_absent, rowcount
from .models import PromotionCodeModel, PromotionRedemptionModel, utc_or_none

__all__ = ["PromotionsMixin", "redeem", "release"]


def _code_values(code: PromotionCode) -> dict[str, Any]:
    return {
        "code": code.key,
        "percent_off": code.percent_off,
        "amount_off": None if code.amount_off is None else code.amount_off.amount,
        "amount_currency": None if code.amount_off is None else code.amount_off.currency,
        "duration": code.duration,
        "duration_periods": code.duration_periods,
        "expires_at": utc_or_none(code.expires_at, "expires_at"),
        "plan_ids": " ".join(sorted(code.plan_ids)),
        "max_redemptions": code.max_redemptions,
        "active": code.active,
    }


def _code_record(row: PromotionCodeModel) -> PromotionCode:
    amount = (
        None
        if row.amount_off is None or row.amount_currency is None
        else Money(row.amount_off, row.amount_currency)
    )
    return PromotionCode(
        code=row.code,
        percent_off=row.percent_off,
        amount_off=amount,
        duration=row.duration,
        duration_periods=row.duration_periods,
        expires_at=row.expires_at,
        plan_ids=frozenset(row.plan_ids.split()),
        max_redemptions=row.max_redemptions,
        active=row.active,
    )


def redeem(session: Session, code: PromotionCode, redemption: PromotionRedemption) -> bool:
    """Record one customer's use of ``code`` in ``session``'s transaction.

    The customer's row goes first (its key makes a second use, in any
    transaction, find nothing to insert); then the code's count goes up in
    one conditional ``UPDATE``, which the database runs one at a time per
    code, so ``max_redemptions`` holds under any race."""
    if redemption.code != code.key:
        raise ValueError("the redemption names another code")
    insert_if_absent(
        session,
        PromotionCodeModel,
        {**_code_values(code), "times_redeemed": 0, "created_at": redemption.redeemed_at},
    )
    used = insert_if_absent(
        session,
        PromotionRedemptionModel,
        {
            "customer_id": redemption.customer_id,
            "code": code.key,
            "subscription_id": redemption.subscription_id,
            "invoice_id": redemption.invoice_id,
            "redeemed_at": redemption.redeemed_at,
        },
    )
    if not used:
        return False
    counted = update(PromotionCodeModel).where(PromotionCodeModel.code == code.key)
    if code.max_redemptions is not None:
        counted = counted.where(PromotionCodeModel.times_redeemed < code.max_redemptions)
    if rowcount(session.execute(counted.values(times_redeemed=PromotionCodeModel.times_redeemed + 1))) == 1:
        return True
    # Used up: the customer's row goes again, in the same transaction.
    _delete_redemption(session, redemption.customer_id, code.key)
    return False


def _delete_redemption(session: Session, customer_id: str, code: str) -> int:
    return rowcount(
        session.execute(
            delete(PromotionRedemptionModel).where(
                PromotionRedemptionModel.customer_id == customer_id, PromotionRedemptionModel.code == code
            )
        )
    )


def release(session: Session, customer_id: str, code: str) -> None:
    """Give back ``customer_id``'s use of ``code`` (its charge was not paid)."""
    if _delete_redemption(session, customer_id, code):
        session.execute(
            update(PromotionCodeModel)
            .where(PromotionCodeModel.code == code, PromotionCodeModel.times_redeemed > 0)
            .values(times_redeemed=PromotionCodeModel.times_redeemed - 1)
        )


class PromotionsMixin(StoreBase):
    """:class:`~flask_customer_portal.billing.promotions.PromotionStore`."""

    def get_promotion_code(self, code: str) -> PromotionCode | None:
        row = self._session.get(PromotionCodeModel, normalise_code(code), populate_existing=True)
        return None if row is None else _code_record(row)

    def add_promotion_code(self, code: PromotionCode) -> PromotionCode:
        with self._transaction() as session:
            row = session.get(PromotionCodeModel, code.key)
            values = _code_values(code)
            if row is None:
                session.add(
                    PromotionCodeModel(**values, times_redeemed=0, created_at=datetime.now(timezone.utc))
                )
            else:
                for name, value in values.items():
                    setattr(row, name, value)
        return self.get_promotion_code(code.key) or code

    def promotion_redeemed(self, customer_id: str, code: str) -> bool:
        return bool(
            self._session.scalar(
                select(
                    exists().where(
                        PromotionRedemptionModel.customer_id == customer_id,
                        PromotionRedemptionModel.code == normalise_code(code),
                    )
                )
            )
        )

    def promotion_times_redeemed(self, code: str) -> int:
        """How many customers used ``code``."""
        row = self._session.get(PromotionCodeModel, normalise_code(code), populate_existing=True)
        return 0 if row is None else row.times_redeemed
