"""The SQLAlchemy store: the portal's records in the merchant's own database.

Usage::

    from flask_sqlalchemy import SQLAlchemy
    from flask_customer_portal.contrib.sqla import SQLAlchemyStorage

    db = SQLAlchemy(app)
    storage = SQLAlchemyStorage(db)
    with app.app_context():
        storage.create_all()  # or `flask portal db upgrade` (docs/upgrading.rst)

The package's modules:

* :mod:`.models`: the tables, their column types and :data:`metadata`;
* :mod:`.mapping`: rows to records, one function per record;
* :mod:`.queries`: the reads that select columns, built once;
* :mod:`.store`: :class:`SQLAlchemyStorage`, one part per area of the
  storage protocols, and its locks;
* :mod:`.sessions`: the store's own database session per application context;
* :mod:`.housekeeping`: pruning and erasure.
"""

from .models import (
    NAMING_CONVENTION,
    ArrearsAttemptModel,
    AuditEventModel,
    BillingDetailsModel,
    ChargeAttemptModel,
    CreditNoteModel,
    CustomerModel,
    InvoiceLineModel,
    InvoiceModel,
    LicenseKeyInstanceModel,
    LicenseKeyModel,
    LinkModel,
    PaymentMethodModel,
    PlanChangeModel,
    PlanModel,
    PortalModel,
    PortalSessionModel,
    ProviderLockModel,
    SequenceModel,
    StringEnum,
    SubscriptionModel,
    TZDateTime,
    WebhookEventModel,
    metadata,
    normalize_email,
)
from .sessions import HostTransactionOpen
from .store import SQLAlchemyStorage, sql_store_of

__all__ = [
    "NAMING_CONVENTION",
    "ArrearsAttemptModel",
    "AuditEventModel",
    "BillingDetailsModel",
    "ChargeAttemptModel",
    "CreditNoteModel",
    "CustomerModel",
    "HostTransactionOpen",
    "InvoiceLineModel",
    "InvoiceModel",
    "LicenseKeyInstanceModel",
    "LicenseKeyModel",
    "LinkModel",
    "PaymentMethodModel",
    "PlanChangeModel",
    "PlanModel",
    "PortalModel",
    "PortalSessionModel",
    "ProviderLockModel",
    "SQLAlchemyStorage",
    "SequenceModel",
    "StringEnum",
    "SubscriptionModel",
    "TZDateTime",
    "WebhookEventModel",
    "metadata",
    "normalize_email",
    "sql_store_of",
]
