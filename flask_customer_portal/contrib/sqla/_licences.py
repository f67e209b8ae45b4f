"""Licence keys and their activations in the SQLAlchemy store
(:class:`~flask_customer_portal.storage.LicenseKeyStore`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import case, select, update

from ...storage import StateConflict
from ._base import FRESH, StoreBase, add_event, now_utc, rowcount
from .mapping import (
    LICENSE_KEY_COLUMNS,
    LICENSE_KEY_INSTANCE_COLUMNS,
    license_key_instance_record,
    license_key_record,
    values_of,
)
from .models import LicenseKeyInstanceModel, LicenseKeyModel, utc, utc_or_none
from .queries import COUNT_LICENSE_KEYS

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from ...storage import AuditEvent, LicenseKey, LicenseKeyInstance

__all__ = ["LicenceKeysMixin"]


class LicenceKeysMixin(StoreBase):
    """A customer's licence keys and the devices that activated them."""

    def list_license_keys(self, customer_id: str) -> Sequence[LicenseKey]:
        rows = self._session.scalars(
            select(LicenseKeyModel)
            .where(LicenseKeyModel.customer_id == customer_id)
            .order_by(LicenseKeyModel.created_at.desc(), LicenseKeyModel.id.desc())
            .execution_options(**FRESH)
        ).all()
        return tuple(license_key_record(values_of(r, LICENSE_KEY_COLUMNS)) for r in rows)

    def count_license_keys(self, customer_id: str) -> int:
        return self._session.scalar(COUNT_LICENSE_KEYS, {"customer_id": customer_id}) or 0

    def get_license_key(self, customer_id: str, license_key_id: str) -> LicenseKey | None:
        row = self._session.scalars(
            select(LicenseKeyModel)
            .where(LicenseKeyModel.id == license_key_id, LicenseKeyModel.customer_id == customer_id)
            .execution_options(**FRESH)
        ).one_or_none()
        return None if row is None else license_key_record(values_of(row, LICENSE_KEY_COLUMNS))

    def list_license_key_instances(
        self, customer_id: str, license_key_id: str
    ) -> Sequence[LicenseKeyInstance]:
        rows = self._session.scalars(
            select(LicenseKeyInstanceModel)
            .where(
                LicenseKeyInstanceModel.license_key_id == license_key_id,
                LicenseKeyInstanceModel.customer_id == customer_id,
            )
            .order_by(
                # Active ones first, then deactivated ones.
                case((LicenseKeyInstanceModel.deactivated_at.is_(None), 0), else_=1),
                LicenseKeyInstanceModel.created_at.desc(),
                LicenseKeyInstanceModel.id.desc(),
            )
            .execution_options(**FRESH)
        ).all()
        return tuple(license_key_instance_record(values_of(r, LICENSE_KEY_INSTANCE_COLUMNS)) for r in rows)

    def deactivate_license_key_instance(
        self,
        customer_id: str,
        license_key_id: str,
        instance_id: str,
        *,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> LicenseKeyInstance | None:
        """Two relative ``UPDATE`` statements in one transaction. The first
        only matches a still-active activation, and it holds the row (and on
        SQLite the database) until commit, so a concurrent call waits, then
        matches nothing and decrements nothing."""
        now = utc(now, "now")
        instance = LicenseKeyInstanceModel
        key = LicenseKeyModel
        with self._transaction() as session:
            deactivated = session.execute(
                update(instance)
                .where(
                    instance.id == instance_id,
                    instance.license_key_id == license_key_id,
                    instance.customer_id == customer_id,
                    instance.deactivated_at.is_(None),
                )
                .values(deactivated_at=now)
                .execution_options(synchronize_session=False)
            )
            if rowcount(deactivated) == 1:
                session.execute(
                    update(key)
                    .where(key.id == license_key_id, key.customer_id == customer_id)
                    .values(activations=case((key.activations > 0, key.activations - 1), else_=0))
                    .execution_options(synchronize_session=False)
                )
                add_event(session, event)
        row = self._session.scalars(
            select(instance)
            .where(
                instance.id == instance_id,
                instance.license_key_id == license_key_id,
                instance.customer_id == customer_id,
            )
            .execution_options(**FRESH)
        ).one_or_none()
        if row is None:
            return None
        if rowcount(deactivated) != 1:
            raise StateConflict(f"licence key activation {instance_id!r} is already deactivated")
        return license_key_instance_record(values_of(row, LICENSE_KEY_INSTANCE_COLUMNS))

    def add_license_key(self, license_key: LicenseKey) -> LicenseKey:
        """Insert a licence key; ``created_at`` defaults to now."""
        row = LicenseKeyModel(
            id=license_key.id,
            customer_id=license_key.customer_id,
            key=license_key.key,
            product_name=license_key.product_name,
            status=license_key.status,
            activations=license_key.activations,
            activation_limit=license_key.activation_limit,
            expires_at=utc_or_none(license_key.expires_at, "LicenseKey.expires_at"),
            created_at=utc(license_key.created_at or now_utc(), "LicenseKey.created_at"),
        )
        with self._transaction() as session:
            session.add(row)
            session.flush()
            return license_key_record(values_of(row, LICENSE_KEY_COLUMNS))

    def add_license_key_instance(
        self, instance: LicenseKeyInstance, *, event: AuditEvent | None = None
    ) -> LicenseKeyInstance:
        """Record an activation of a key (the merchant's licence server
        calls this when a device activates it). An active one adds one to
        the key's ``activations`` in the same transaction. The activation
        limit is the licence server's rule and is not checked here.

        Raises :class:`ValueError` if the key is not the customer's.
        """
        row = LicenseKeyInstanceModel(
            id=instance.id,
            license_key_id=instance.license_key_id,
            customer_id=instance.customer_id,
            name=instance.name,
            created_at=utc(instance.created_at, "LicenseKeyInstance.created_at"),
            deactivated_at=utc_or_none(instance.deactivated_at, "LicenseKeyInstance.deactivated_at"),
        )
        with self._transaction() as session:
            counted = session.execute(
                update(LicenseKeyModel)
                .where(
                    LicenseKeyModel.id == instance.license_key_id,
                    LicenseKeyModel.customer_id == instance.customer_id,
                )
                .values(activations=LicenseKeyModel.activations + (1 if instance.is_active else 0))
                .execution_options(synchronize_session=False)
            )
            if rowcount(counted) != 1:
                raise ValueError(
                    f"licence key {instance.license_key_id!r} is not a key of "
                    f"customer {instance.customer_id!r}"
                )
            session.add(row)
            session.flush()
            add_event(session, event)
            return license_key_instance_record(values_of(row, LICENSE_KEY_INSTANCE_COLUMNS))
