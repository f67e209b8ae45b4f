"""Customers in the SQLAlchemy store
(:class:`~flask_customer_portal.storage.CustomerStore`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ...storage import Customer, EmailInUse
from . import housekeeping
from ._base import FRESH, StoreBase, add_event, now_utc, rowcount
from ._outbox import add_mail
from .mapping import CUSTOMER_COLUMNS, customer_record, values_of
from .models import CustomerModel, metadata, normalize_email, utc

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from ...storage import AuditEvent, ErasureReport, OutboxMail

__all__ = ["CustomersMixin"]


class CustomersMixin(StoreBase):
    """Reads and changes a customer's own record; erases it."""

    def get_customer(self, customer_id: str) -> Customer | None:
        row = self._session.get(CustomerModel, customer_id, populate_existing=True)
        return None if row is None else customer_record(values_of(row, CUSTOMER_COLUMNS))

    def find_customer_by_email(self, email: str) -> Customer | None:
        row = self._session.scalars(
            select(CustomerModel)
            .where(CustomerModel.email_normalized == normalize_email(email))
            .execution_options(**FRESH)
        ).one_or_none()
        return None if row is None else customer_record(values_of(row, CUSTOMER_COLUMNS))

    def update_profile(
        self, customer_id: str, *, name: str, phone: str | None, event: AuditEvent | None = None
    ) -> Customer | None:
        with self._transaction() as session:
            row = session.get(CustomerModel, customer_id, populate_existing=True)
            if row is None:
                return None
            row.name = name
            row.phone = phone
            add_event(session, event)
            session.flush()
            return customer_record(values_of(row, CUSTOMER_COLUMNS))

    def set_locale(
        self, customer_id: str, locale: str | None, *, event: AuditEvent | None = None
    ) -> Customer | None:
        with self._transaction() as session:
            row = session.get(CustomerModel, customer_id, populate_existing=True)
            if row is None:
                return None
            row.locale = locale
            add_event(session, event)
            session.flush()
            return customer_record(values_of(row, CUSTOMER_COLUMNS))

    def change_email(
        self,
        customer_id: str,
        email: str,
        *,
        auth_version: int,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Customer | None:
        """One conditional ``UPDATE``: of two uses of the same confirmation
        link, only the first matches the old ``auth_version``."""
        try:
            with self._transaction() as session:
                result = session.execute(
                    update(CustomerModel)
                    .where(CustomerModel.id == customer_id, CustomerModel.auth_version == auth_version)
                    .values(
                        email=email,
                        email_normalized=normalize_email(email),
                        auth_version=CustomerModel.auth_version + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
                if rowcount(result) == 1:
                    add_event(session, event)
                    add_mail(session, mail)
        except IntegrityError as exc:
            raise EmailInUse(email) from exc
        if rowcount(result) != 1:
            return None
        return self.get_customer(customer_id)

    def add_customer(self, customer: Customer) -> Customer:
        """Insert a customer; ``created_at`` defaults to now.

        Raises :class:`~sqlalchemy.exc.IntegrityError` if the id or the email
        (compared case-insensitively) is taken.
        """
        row = CustomerModel(
            id=customer.id,
            email=customer.email,
            email_normalized=normalize_email(customer.email),
            name=customer.name,
            phone=customer.phone,
            locale=customer.locale,
            timezone=customer.timezone,
            auth_version=customer.auth_version,
            created_at=utc(customer.created_at or now_utc(), "Customer.created_at"),
        )
        with self._transaction() as session:
            session.add(row)
            session.flush()
            return customer_record(values_of(row, CUSTOMER_COLUMNS))

    def erase_customer(
        self, customer_id: str, *, email: str, now: datetime, event: AuditEvent | None = None
    ) -> ErasureReport | None:
        """One transaction: the customer anonymised, their sessions, links,
        billing details, licence keys and unused cards deleted, the rest of
        their cards made unchargeable, their audit details scrubbed, and
        ``event`` appended; invoices untouched."""
        utc(now, "now")
        with self._transaction() as session:
            report = housekeeping.erase_customer_rows(
                session, metadata.tables, customer_id, email=email, email_normalized=normalize_email(email)
            )
            if report is not None:
                add_event(session, event)
        return report
