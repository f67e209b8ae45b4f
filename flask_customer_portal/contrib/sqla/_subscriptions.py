"""Subscriptions in the SQLAlchemy store, the cards they are paid with and
the plans they may change to (:class:`~flask_customer_portal.storage.BillingStore`'s
subscriptions and payment methods, :class:`~flask_customer_portal.storage.PlanStore`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import joinedload

from ...money import Money
from ...records import RENEWING_STATUSES
from ...storage import InvoiceStatus, PaymentMethodInUse, StateConflict, SubscriptionStatus
from ._base import FRESH, StoreBase, add_event, now_utc, rowcount
from ._locks import due_after, locked_subscription_row
from ._outbox import add_mail
from .mapping import (
    PAYMENT_METHOD_COLUMNS,
    PLAN_CHANGE_COLUMNS,
    PLAN_COLUMNS,
    payment_method_record,
    plan_change_record,
    plan_record,
    subscription_record,
    subscription_values,
    values_of,
)
from .models import (
    ChargeAttemptModel,
    InvoiceModel,
    PaymentMethodModel,
    PlanChangeModel,
    PlanModel,
    SubscriptionModel,
    utc,
    utc_or_none,
)
from .queries import LIST_SUBSCRIPTIONS

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from ...storage import AuditEvent, OutboxMail, PaymentMethod, Plan, PlanChange, Subscription

__all__ = ["SubscriptionsMixin"]


class SubscriptionsMixin(StoreBase):
    """A customer's subscriptions and what changes them, their cards, and
    the plan catalogue."""

    def list_subscriptions(self, customer_id: str) -> Sequence[Subscription]:
        """One query: the subscriptions with their payment methods joined."""
        rows = self._session.execute(LIST_SUBSCRIPTIONS, {"customer_id": customer_id}).all()
        return tuple(subscription_record(r) for r in rows)

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        row = self._session.scalars(
            select(SubscriptionModel)
            .where(
                SubscriptionModel.id == subscription_id,
                SubscriptionModel.customer_id == customer_id,
            )
            .options(joinedload(SubscriptionModel.payment_method))
            .execution_options(**FRESH)
        ).one_or_none()
        if row is None:
            return None
        return subscription_record(subscription_values(row, row.payment_method))

    def set_subscription_payment_method(
        self,
        customer_id: str,
        subscription_id: str,
        payment_method_id: str,
        *,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        if self.get_payment_method(customer_id, payment_method_id) is None:
            return None
        with self._transaction() as session:
            result = session.execute(
                update(SubscriptionModel)
                .where(SubscriptionModel.id == subscription_id, SubscriptionModel.customer_id == customer_id)
                .values(payment_method_id=payment_method_id)
                .execution_options(synchronize_session=False)
            )
            if rowcount(result) == 1:
                add_event(session, event)
        if rowcount(result) != 1:
            return None
        return self.get_subscription(customer_id, subscription_id)

    def cancel_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        at_period_end: bool,
        now: datetime,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        now = utc(now, "now")
        with self._transaction() as session:
            row = locked_subscription_row(session, customer_id, subscription_id)
            if row is None:
                return None
            if row.status is SubscriptionStatus.CANCELLED:
                raise StateConflict(f"subscription {subscription_id!r} is already cancelled")
            if at_period_end and row.status in RENEWING_STATUSES and row.current_period_end > now:
                if row.cancel_at_period_end:
                    raise StateConflict(f"subscription {subscription_id!r} already ends at period end")
                row.cancel_at_period_end = True
                row.cancelled_at = now
            else:
                row.status = SubscriptionStatus.CANCELLED
                row.cancel_at_period_end = False
                row.cancelled_at = now
                row.ended_at = now
            add_event(session, event)
            add_mail(session, mail)
            session.flush()
        return self.get_subscription(customer_id, subscription_id)

    def undo_cancellation(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        now: datetime,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        now = utc(now, "now")
        with self._transaction() as session:
            row = locked_subscription_row(session, customer_id, subscription_id)
            if row is None:
                return None
            if (
                row.status not in RENEWING_STATUSES
                or not row.cancel_at_period_end
                or row.current_period_end <= now
            ):
                raise StateConflict(f"subscription {subscription_id!r} has no cancellation to undo")
            row.cancel_at_period_end = False
            row.cancelled_at = None
            add_event(session, event)
            add_mail(session, mail)
            session.flush()
        return self.get_subscription(customer_id, subscription_id)

    def pause_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        now: datetime,
        resumes_at: datetime,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        now = utc(now, "now")
        resumes_at = utc(resumes_at, "resumes_at")
        with self._transaction() as session:
            row = locked_subscription_row(session, customer_id, subscription_id)
            if row is None:
                return None
            if (
                row.status is not SubscriptionStatus.ACTIVE
                or row.cancel_at_period_end
                or row.current_period_end <= now
                or resumes_at <= now
            ):
                raise StateConflict(f"subscription {subscription_id!r} cannot be paused now")
            row.status = SubscriptionStatus.PAUSED
            row.paused_at = now
            row.resumes_at = resumes_at
            add_event(session, event)
            add_mail(session, mail)
            session.flush()
        return self.get_subscription(customer_id, subscription_id)

    def unpause_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        resumed_at: datetime,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Subscription | None:
        resumed_at = utc(resumed_at, "resumed_at")
        with self._transaction() as session:
            row = locked_subscription_row(session, customer_id, subscription_id)
            if row is None:
                return None
            if row.status is not SubscriptionStatus.PAUSED or row.paused_at is None:
                raise StateConflict(f"subscription {subscription_id!r} is not paused")
            if resumed_at < row.paused_at:
                raise StateConflict(f"subscription {subscription_id!r} cannot resume before it paused")
            paused_for = resumed_at - row.paused_at
            row.status = SubscriptionStatus.ACTIVE
            row.current_period_start = row.current_period_start + paused_for
            row.current_period_end = row.current_period_end + paused_for
            row.paused_at = None
            row.resumes_at = None
            add_event(session, event)
            add_mail(session, mail)
            session.flush()
        return self.get_subscription(customer_id, subscription_id)

    def set_retention_discount(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        percent: int,
        renewals: int,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        if not 0 < percent < 100 or renewals < 1:
            raise ValueError(f"a discount is 1-99 percent for 1 or more renewals, got {percent}, {renewals}")
        with self._transaction() as session:
            row = locked_subscription_row(session, customer_id, subscription_id)
            if row is None:
                return None
            if row.status is SubscriptionStatus.CANCELLED:
                raise StateConflict(f"subscription {subscription_id!r} is cancelled")
            row.discount_percent = percent
            row.discount_renewals = renewals
            add_event(session, event)
            session.flush()
        return self.get_subscription(customer_id, subscription_id)

    def schedule_plan_change(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        plan_id: str | None,
        quantity: int | None,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        now = utc(now, "now")
        with self._transaction() as session:
            row = locked_subscription_row(session, customer_id, subscription_id)
            if row is None:
                return None
            if (
                row.status is not SubscriptionStatus.ACTIVE
                or row.cancel_at_period_end
                or row.current_period_end <= now
            ):
                raise StateConflict(f"subscription {subscription_id!r} cannot change plan now")
            if plan_id is None and row.scheduled_plan_id is None:
                raise StateConflict(f"subscription {subscription_id!r} has no scheduled plan change")
            row.scheduled_plan_id = plan_id
            row.scheduled_quantity = None if plan_id is None else quantity
            add_event(session, event)
            session.flush()
        return self.get_subscription(customer_id, subscription_id)

    def subscriptions_due(self, now: datetime, *, limit: int = 100) -> Sequence[Subscription]:
        return self._subscriptions_reaching(
            RENEWING_STATUSES, SubscriptionModel.current_period_end, now, limit
        )

    def subscriptions_due_after(
        self, now: datetime, *, after: tuple[datetime, str] | None, limit: int = 100
    ) -> Sequence[Subscription]:
        """One page of the due subscriptions in ``(current_period_end, id)``
        order, after ``after``: a keyset page, so each page costs the same
        however far the walk has gone."""
        rows = self._session.scalars(
            select(SubscriptionModel)
            .where(due_after(now, after))
            .options(joinedload(SubscriptionModel.payment_method))
            .order_by(SubscriptionModel.current_period_end, SubscriptionModel.id)
            .limit(limit)
            .execution_options(**FRESH)
        ).all()
        return tuple(subscription_record(subscription_values(r, r.payment_method)) for r in rows)

    def subscriptions_to_resume(self, now: datetime, *, limit: int = 100) -> Sequence[Subscription]:
        return self._subscriptions_reaching(
            SubscriptionStatus.PAUSED, SubscriptionModel.resumes_at, now, limit
        )

    def subscriptions_to_resume_after(
        self, now: datetime, *, after: tuple[datetime, str] | None, limit: int = 100
    ) -> Sequence[Subscription]:
        """One keyset page of :meth:`subscriptions_to_resume`, after
        ``after`` (the ``(resumes_at, id)`` of the last one before)."""
        return self._subscriptions_reaching(
            SubscriptionStatus.PAUSED, SubscriptionModel.resumes_at, now, limit, after=after
        )

    def plan_changes_to_settle_after(
        self, *, after: tuple[datetime, str] | None, limit: int = 100
    ) -> Sequence[PlanChange]:
        """One keyset page of :meth:`plan_changes_to_settle`, after
        ``after`` (the ``(created_at, invoice_id)`` of the last one before)."""
        statement = (
            select(PlanChangeModel)
            .join(InvoiceModel, InvoiceModel.id == PlanChangeModel.invoice_id)
            .where(InvoiceModel.status == InvoiceStatus.OPEN)
            .order_by(PlanChangeModel.created_at, PlanChangeModel.invoice_id)
            .limit(limit)
        )
        if after is not None:
            created_at, invoice_id = after
            statement = statement.where(
                tuple_(PlanChangeModel.created_at, PlanChangeModel.invoice_id)
                > tuple_(utc(created_at, "after"), invoice_id)
            )
        rows = self._session.scalars(statement.execution_options(**FRESH)).all()
        return tuple(plan_change_record(values_of(row, PLAN_CHANGE_COLUMNS)) for row in rows)

    def _subscriptions_reaching(
        self,
        status: SubscriptionStatus | frozenset[SubscriptionStatus],
        moment: Any,
        now: datetime,
        limit: int,
        *,
        after: tuple[datetime, str] | None = None,
    ) -> Sequence[Subscription]:
        """Subscriptions in ``status`` (or one of them) whose ``moment`` column is at or
        before ``now``, earliest first (the scheduled jobs' work lists);
        with ``after``, only those after it in ``(moment, id)`` order."""
        now = utc(now, "now")
        in_status = (
            SubscriptionModel.status.in_(sorted(status))
            if isinstance(status, frozenset)
            else SubscriptionModel.status == status
        )
        condition = in_status & (moment <= now)
        if after is not None:
            condition &= tuple_(moment, SubscriptionModel.id) > tuple_(utc(after[0], "after"), after[1])
        rows = self._session.scalars(
            select(SubscriptionModel)
            .where(condition)
            .options(joinedload(SubscriptionModel.payment_method))
            .order_by(moment, SubscriptionModel.id)
            .limit(limit)
            .execution_options(**FRESH)
        ).all()
        return tuple(subscription_record(subscription_values(r, r.payment_method)) for r in rows)

    def plan_changes_to_settle(
        self, *, limit: int = 100, customer_id: str | None = None
    ) -> Sequence[PlanChange]:
        statement = (
            select(PlanChangeModel)
            .join(InvoiceModel, InvoiceModel.id == PlanChangeModel.invoice_id)
            .where(InvoiceModel.status == InvoiceStatus.OPEN)
            .order_by(PlanChangeModel.created_at, PlanChangeModel.invoice_id)
            .limit(limit)
        )
        if customer_id is not None:
            statement = statement.where(PlanChangeModel.customer_id == customer_id)
        rows = self._session.scalars(statement.execution_options(**FRESH)).all()
        return tuple(plan_change_record(values_of(row, PLAN_CHANGE_COLUMNS)) for row in rows)

    def add_subscription(self, subscription: Subscription) -> Subscription:
        """Insert a subscription; its payment method must already be stored.

        Only the payment method's id is stored. ``created_at`` defaults to now.
        """
        method = subscription.payment_method
        if method is not None and method.customer_id != subscription.customer_id:
            raise ValueError(
                f"payment method {method.id!r} belongs to customer {method.customer_id!r}, "
                f"not to {subscription.customer_id!r}"
            )
        row = SubscriptionModel(
            id=subscription.id,
            customer_id=subscription.customer_id,
            product_name=subscription.product_name,
            plan_name=subscription.plan_name,
            price_amount=subscription.price.amount,
            price_currency=subscription.price.currency,
            interval=subscription.interval,
            interval_count=subscription.interval_count,
            status=subscription.status,
            current_period_start=utc(subscription.current_period_start, "Subscription.current_period_start"),
            current_period_end=utc(subscription.current_period_end, "Subscription.current_period_end"),
            cancel_at_period_end=subscription.cancel_at_period_end,
            cancelled_at=utc_or_none(subscription.cancelled_at, "Subscription.cancelled_at"),
            ended_at=utc_or_none(subscription.ended_at, "Subscription.ended_at"),
            payment_method_id=None if method is None else method.id,
            hold_reason=subscription.hold_reason,
            created_at=utc(subscription.created_at or now_utc(), "Subscription.created_at"),
            plan_id=subscription.plan_id,
            quantity=subscription.quantity,
            scheduled_plan_id=subscription.scheduled_plan_id,
            scheduled_quantity=subscription.scheduled_quantity,
            credit=subscription.credit,
            paused_at=utc_or_none(subscription.paused_at, "Subscription.paused_at"),
            resumes_at=utc_or_none(subscription.resumes_at, "Subscription.resumes_at"),
            discount_percent=subscription.discount_percent,
            discount_renewals=subscription.discount_renewals,
        )
        with self._transaction() as session:
            session.add(row)
            session.flush()
            return subscription_record(subscription_values(row, method))

    # -- payment methods -------------------------------------------------------

    def list_payment_methods(self, customer_id: str) -> Sequence[PaymentMethod]:
        rows = self._session.scalars(
            select(PaymentMethodModel)
            .where(PaymentMethodModel.customer_id == customer_id)
            .order_by(PaymentMethodModel.created_at.desc(), PaymentMethodModel.id.desc())
            .execution_options(**FRESH)
        ).all()
        return tuple(payment_method_record(values_of(r, PAYMENT_METHOD_COLUMNS)) for r in rows)

    def get_payment_method(self, customer_id: str, payment_method_id: str) -> PaymentMethod | None:
        """One saved payment method of this customer, or ``None``."""
        row = self._session.scalars(
            select(PaymentMethodModel)
            .where(
                PaymentMethodModel.id == payment_method_id,
                PaymentMethodModel.customer_id == customer_id,
            )
            .execution_options(**FRESH)
        ).one_or_none()
        return None if row is None else payment_method_record(values_of(row, PAYMENT_METHOD_COLUMNS))

    def remove_payment_method(
        self, customer_id: str, payment_method_id: str, *, event: AuditEvent | None = None
    ) -> bool:
        with self._transaction() as session:
            row = session.scalars(
                select(PaymentMethodModel)
                .where(
                    PaymentMethodModel.id == payment_method_id,
                    PaymentMethodModel.customer_id == customer_id,
                )
                .with_for_update()
            ).one_or_none()
            if row is None:
                return False
            in_use = session.scalar(
                select(func.count())
                .select_from(SubscriptionModel)
                .where(
                    SubscriptionModel.customer_id == customer_id,
                    SubscriptionModel.payment_method_id == payment_method_id,
                    SubscriptionModel.status != SubscriptionStatus.CANCELLED,
                )
            )
            if in_use:
                raise PaymentMethodInUse(payment_method_id)
            # Past records keep their history: detach, then delete.
            for model in (SubscriptionModel, InvoiceModel, ChargeAttemptModel):
                session.execute(
                    update(model)
                    .where(model.customer_id == customer_id, model.payment_method_id == payment_method_id)
                    .values(payment_method_id=None)
                    .execution_options(synchronize_session=False)
                )
            session.delete(row)
            add_event(session, event)
        return True

    def set_default_payment_method(
        self, customer_id: str, payment_method_id: str, *, event: AuditEvent | None = None
    ) -> PaymentMethod | None:
        """Make one of the customer's methods their default, and no other."""
        with self._transaction() as session:
            found = session.scalar(
                select(PaymentMethodModel.id)
                .where(
                    PaymentMethodModel.id == payment_method_id,
                    PaymentMethodModel.customer_id == customer_id,
                )
                .with_for_update()
            )
            if found is None:
                return None
            # One statement over all of the customer's rows: two tabs that
            # race each other leave exactly one default, the later one's.
            session.execute(
                update(PaymentMethodModel)
                .where(PaymentMethodModel.customer_id == customer_id)
                .values(is_default=PaymentMethodModel.id == payment_method_id)
                .execution_options(synchronize_session=False)
            )
            add_event(session, event)
        return self.get_payment_method(customer_id, payment_method_id)

    def add_payment_method(
        self, payment_method: PaymentMethod, *, event: AuditEvent | None = None
    ) -> PaymentMethod:
        """Insert a saved payment method (not the default, whatever its
        ``is_default`` says); ``created_at`` defaults to now."""
        row = PaymentMethodModel(
            id=payment_method.id,
            customer_id=payment_method.customer_id,
            brand=payment_method.brand,
            last4=payment_method.last4,
            exp_month=payment_method.exp_month,
            exp_year=payment_method.exp_year,
            provider_token=payment_method.provider_token,
            created_at=utc(payment_method.created_at or now_utc(), "PaymentMethod.created_at"),
        )
        with self._transaction() as session:
            session.add(row)
            session.flush()
            add_event(session, event)
            return payment_method_record(values_of(row, PAYMENT_METHOD_COLUMNS))

    # -- the plan catalogue ----------------------------------------------------

    def list_plans(self, product_name: str) -> Sequence[Plan]:
        rows = self._session.scalars(
            select(PlanModel)
            .where(PlanModel.product_name == product_name, PlanModel.active.is_(True))
            .order_by(PlanModel.position, PlanModel.id)
            .execution_options(**FRESH)
        ).all()
        return tuple(plan_record(values_of(r, PLAN_COLUMNS)) for r in rows)

    def get_plan(self, plan_id: str) -> Plan | None:
        row = self._session.get(PlanModel, plan_id, populate_existing=True)
        return None if row is None else plan_record(values_of(row, PLAN_COLUMNS))

    def add_plan(self, plan: Plan) -> Plan:
        """Insert a plan into the catalogue."""
        Money(plan.price.amount, plan.price.currency)
        if plan.min_quantity < 1 or plan.max_quantity < plan.min_quantity:
            raise ValueError(f"plan {plan.id!r}: quantities must satisfy 1 <= min <= max")
        row = PlanModel(
            id=plan.id,
            product_name=plan.product_name,
            name=plan.name,
            price_amount=plan.price.amount,
            price_currency=plan.price.currency,
            interval=plan.interval,
            interval_count=plan.interval_count,
            per_seat=plan.per_seat,
            min_quantity=plan.min_quantity,
            max_quantity=plan.max_quantity,
            active=plan.active,
            position=plan.position,
        )
        with self._transaction() as session:
            session.add(row)
            session.flush()
            return plan_record(values_of(row, PLAN_COLUMNS))
