"""The SQLAlchemy store: :class:`SQLAlchemyStorage`, made of one part per
area of :class:`~flask_customer_portal.storage.PortalStorage`.

The store never touches the host's ``db.session``: it reads and writes
through a session of its own per application context, on the same engine
(:mod:`.sessions`), and each write method commits (or rolls back) only its
own work. On SQLite, a write while the host's session holds uncommitted
writes raises :class:`~.sessions.HostTransactionOpen` instead of waiting
for SQLite's lock. Reads never return ORM objects, only the frozen
dataclasses of :mod:`flask_customer_portal.storage` (:mod:`.mapping`).

Its parts, each on :class:`~._base.StoreBase` (the session, transactions
and schema):

* :mod:`._customers`: customers, erasure;
* :mod:`._subscriptions`: subscriptions, their payment methods, plans;
* :mod:`._invoices`: invoices, invoice numbers, billing details;
* :mod:`._licences`: licence keys and their activations;
* :mod:`._access`: links, sessions, the audit log, webhook events, pruning;
* :mod:`._locks`: the subscription lock and the provider lock;
* :mod:`._outbox`: the mail outbox and its claims.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..composite import CompositeStorage
from ._access import AccessMixin
from ._credit_notes import CreditNotesMixin
from ._customers import CustomersMixin
from ._invoice_lock import InvoiceLocksMixin
from ._invoices import InvoicesMixin
from ._licences import LicenceKeysMixin
from ._locks import LocksMixin
from ._outbox import OutboxMixin
from ._promotions import PromotionsMixin
from ._subscriptions import SubscriptionsMixin

if TYPE_CHECKING:
    from ...storage import InvoiceLockStore, MailOutboxStore, PortalStorage

__all__ = ["SQLAlchemyStorage"]


class SQLAlchemyStorage(
    CustomersMixin,
    SubscriptionsMixin,
    InvoicesMixin,
    CreditNotesMixin,
    LicenceKeysMixin,
    AccessMixin,
    LocksMixin,
    InvoiceLocksMixin,
    OutboxMixin,
    PromotionsMixin,
):
    """:class:`~flask_customer_portal.storage.PortalStorage` on Flask-SQLAlchemy.

    ``SQLAlchemyStorage(db)`` takes the host's
    :class:`flask_sqlalchemy.SQLAlchemy` instance and uses its engine (the
    one named by ``metadata.info["bind_key"]`` if set, else ``db.engine``)
    through a session of its own, never ``db.session``: one per application
    context, closed when the context ends. Every method must be called
    inside an application context (requests, CLI commands and ``with
    app.app_context()`` all are).
    """


def sql_store_of(storage: object) -> SQLAlchemyStorage | None:
    """The SQLAlchemy store that keeps the portal's tables behind
    ``storage``: the store itself, or the local store of a
    :class:`~flask_customer_portal.contrib.composite.CompositeStorage`
    (customers, sessions and the outbox stay local); ``None`` when the
    portal keeps its records elsewhere."""
    if isinstance(storage, CompositeStorage):
        storage = storage.local
    return storage if isinstance(storage, SQLAlchemyStorage) else None


if TYPE_CHECKING:
    # mypy proves that the store implements the whole protocol.
    _check: type[PortalStorage] = SQLAlchemyStorage
    _check_outbox: type[MailOutboxStore] = SQLAlchemyStorage
    _check_invoice_lock: type[InvoiceLockStore] = SQLAlchemyStorage
