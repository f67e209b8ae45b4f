"""Invoice numbers given as a subscription lock's transaction ends
(:class:`~flask_customer_portal.storage.NumbersAtCommit`): the counter every
invoice takes is held for the end of the transaction only, and the numbers
stay unique and gap-free, on each backend."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
from db_support import in_threads, only_postgresql
from factories import customer, invoice, subscription
from sqlalchemy import select, update

from flask_customer_portal.contrib.sqla.models import InvoiceModel, SequenceModel
from flask_customer_portal.storage import Invoice, InvoiceStatus, NumbersAtCommit

if TYPE_CHECKING:
    from flask import Flask

    from flask_customer_portal.contrib.sqla import SQLAlchemyStorage


def _draft(invoice_id: str, subscription_id: str, customer_id: str = "cus_a") -> Invoice:
    return invoice(
        invoice_id, customer_id, number="", subscription_id=subscription_id, status=InvoiceStatus.OPEN
    )


def _numbers(store: SQLAlchemyStorage) -> list[str]:
    with store._engine.connect() as connection:
        return sorted(connection.scalars(select(InvoiceModel.number)))


def test_an_invoice_numbered_at_commit_gets_the_next_number(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    for n in range(1, 4):
        store.add_subscription(subscription(f"sub_{n}"))
    assert store.next_invoice_number() == "INV-000001"
    with store.lock_subscription("cus_a", "sub_1") as lock:
        assert isinstance(lock, NumbersAtCommit)
        issued = lock.issue_invoice_numbered_at_commit(_draft("inv_1", "sub_1"))
        assert issued.number == ""  # not known in this transaction
    with store.lock_subscription("cus_a", "sub_2") as lock:
        assert lock is not None
        lock.issue_invoice(_draft("inv_2", "sub_2"))
    found = store.get_invoice("cus_a", "inv_1")
    assert found is not None and found.number == "INV-000002"
    assert _numbers(store) == ["INV-000002", "INV-000003"]

    # Read under the lock after it was issued: numbered first, never a provisional number.
    with store.lock_subscription("cus_a", "sub_3") as lock:
        assert isinstance(lock, NumbersAtCommit)
        lock.issue_invoice_numbered_at_commit(_draft("inv_3", "sub_3"))
        read = lock.get_invoice("inv_3")
        assert read is not None and read.number == "INV-000004"
        paid = lock.mark_invoice_paid(
            "inv_3", paid_at=read.issued_at, payment_reference="ch_1", payment_method_id=None
        )
        assert paid.number == "INV-000004"
    assert store.next_invoice_number() == "INV-000005"


def test_a_block_that_raises_takes_no_number(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_subscription(subscription("sub_1"))
    store.next_invoice_number()

    def issue_then_fail() -> None:
        with store.lock_subscription("cus_a", "sub_1") as lock:
            assert isinstance(lock, NumbersAtCommit)
            lock.issue_invoice_numbered_at_commit(_draft("inv_1", "sub_1"))
            raise RuntimeError("after issuing")

    with pytest.raises(RuntimeError, match="after issuing"):
        issue_then_fail()
    assert store.get_invoice("cus_a", "inv_1") is None
    assert store.next_invoice_number() == "INV-000002"  # no gap


def test_an_invoice_numbered_at_commit_is_issued_without_a_number(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_subscription(subscription("sub_1"))
    with store.lock_subscription("cus_a", "sub_1") as lock:
        assert isinstance(lock, NumbersAtCommit)
        with pytest.raises(ValueError, match="without a number"):
            lock.issue_invoice_numbered_at_commit(invoice("inv_1", subscription_id="sub_1"))


@only_postgresql
def test_numbers_at_commit_are_unique_and_gap_free_under_concurrency(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    """Eight threads issue invoices at once, half numbered at commit, half
    as before, while others take numbers of their own: every number once,
    none skipped. The series is new: the first takers race to create it."""
    count, per_thread = 8, 4
    for n in range(count):
        store.add_customer(customer(f"cus_{n}"))
        store.add_subscription(subscription(f"sub_{n}", f"cus_{n}"))
    turn = iter(range(count))
    lock_of_turn = threading.Lock()

    def issue() -> list[str]:
        with lock_of_turn:
            n = next(turn)
        taken = []
        for i in range(per_thread):
            if n == 0:
                taken.append(store.next_invoice_number())
                continue
            with store.lock_subscription(f"cus_{n}", f"sub_{n}") as lock:
                assert isinstance(lock, NumbersAtCommit)
                draft = _draft(f"inv_{n}_{i}", f"sub_{n}", f"cus_{n}")
                if n % 2:
                    lock.issue_invoice_numbered_at_commit(draft)
                else:
                    lock.issue_invoice(draft)
        return taken

    taken = [number for batch in in_threads(store_app, count, issue) for number in batch]
    assert sorted(_numbers(store) + taken) == [f"INV-{n:06d}" for n in range(1, count * per_thread + 1)]


@only_postgresql
def test_numbers_past_six_digits_are_written_as_python_writes_them(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_subscription(subscription("sub_1"))
    store.next_invoice_number()
    with store._engine.begin() as connection:
        connection.execute(
            update(SequenceModel)
            .where(SequenceModel.name == "invoice_number:INV-")
            .values(last_value=999_998)
        )
    for n in (1, 2):
        with store.lock_subscription("cus_a", "sub_1") as lock:
            assert isinstance(lock, NumbersAtCommit)
            lock.issue_invoice_numbered_at_commit(_draft(f"inv_{n}", "sub_1"))
    assert _numbers(store) == ["INV-1000000", "INV-999999"]
    assert store.next_invoice_number() == f"INV-{1_000_001:06d}"
