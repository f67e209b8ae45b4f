"""The demo merchant app: demo data, template overrides, the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from portal_fixtures import open_link

from example_app import create_app, storage
from example_app.demo import DEMO_CUSTOMER_IDS, load_demo_data
from flask_customer_portal import InvoiceStatus, SubscriptionStatus
from flask_customer_portal.state import get_state


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}"})
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_demo_data_is_idempotent(shop: Flask) -> None:
    runner = shop.test_cli_runner()
    first = runner.invoke(args=["demo-data"])
    assert first.exit_code == 0, first.output
    assert "Loaded demo data" in first.output
    with shop.app_context():
        store = storage()
        counts = (
            len(store.list_subscriptions("cus_demo_ava")),
            store.list_invoices("cus_demo_ava", page=1, per_page=5).total,
        )
    second = runner.invoke(args=["demo-data"])
    assert second.exit_code == 0
    assert "already loaded" in second.output
    with shop.app_context():
        store = storage()
        assert (
            len(store.list_subscriptions("cus_demo_ava")),
            store.list_invoices("cus_demo_ava", page=1, per_page=5).total,
        ) == counts
        assert load_demo_data(store) == ()


def test_demo_customers_match_the_contract(shop: Flask) -> None:
    with shop.app_context():
        store = storage()
        load_demo_data(store)
        ava, budi, chen, dewi = (store.get_customer(cid) for cid in DEMO_CUSTOMER_IDS)
        assert ava and budi and chen and dewi
        assert (ava.email, budi.email, chen.email, dewi.email) == (
            "ava@example.com",
            "budi@example.com",
            "chen@example.com",
            "dewi@example.com",
        )

        ava_subs = store.list_subscriptions(ava.id)
        assert [s.status for s in ava_subs] == [SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELLED]
        assert ava_subs[0].interval == "month"
        invoices = store.list_invoices(ava.id, page=1, per_page=100)
        assert sum(1 for i in invoices.items if i.status is InvoiceStatus.PAID) >= 12
        assert len(store.list_license_keys(ava.id)) == 2
        methods = store.list_payment_methods(ava.id)
        assert [(m.brand, m.last4) for m in methods] == [("visa", "4242")]

        budi_subs = store.list_subscriptions(budi.id)
        assert [s.status for s in budi_subs] == [SubscriptionStatus.ON_HOLD]
        assert budi_subs[0].price.currency == "IDR"
        assert budi.phone and budi.phone.startswith("+62")
        assert budi.locale == "id"
        budi_invoices = store.list_invoices(budi.id, page=1, per_page=10).items
        assert budi_invoices[0].status is InvoiceStatus.OPEN
        assert len(store.list_license_keys(budi.id)) == 1

        assert len(store.list_subscriptions(chen.id)) == 0
        assert store.list_invoices(chen.id, page=1, per_page=10).total == 0
        assert len(store.list_license_keys(chen.id)) == 0


def test_invoice_numbers_are_unique(shop: Flask) -> None:
    with shop.app_context():
        store = storage()
        load_demo_data(store)
        numbers = [
            invoice.number
            for cid in DEMO_CUSTOMER_IDS
            for invoice in store.list_invoices(cid, page=1, per_page=100).items
        ]
        assert len(numbers) == len(set(numbers)) == 23


def test_cli_prints_a_working_magic_link(shop: Flask) -> None:
    runner = shop.test_cli_runner()
    runner.invoke(args=["demo-data"])
    result = runner.invoke(args=["portal", "create-session", "cus_demo_ava"])
    assert result.exit_code == 0, result.output
    link = result.stdout.strip().splitlines()[0]
    assert link.startswith("http://127.0.0.1:5000/portal/session/")
    client = shop.test_client()
    assert open_link(client, link).status_code == 303
    assert "Ava Thompson" in client.get("/portal/").text


def test_cli_rejects_unknown_customers_and_bad_return_urls(shop: Flask) -> None:
    runner = shop.test_cli_runner()
    runner.invoke(args=["demo-data"])
    unknown = runner.invoke(args=["portal", "create-session", "cus_nobody"])
    assert unknown.exit_code != 0
    assert "No customer" in unknown.output
    bad = runner.invoke(
        args=["portal", "create-session", "cus_demo_ava", "--return-url", "https://evil.example/"]
    )
    assert bad.exit_code != 0
    assert "return_url" in bad.output


def test_host_template_overrides_the_portal_brand(shop: Flask) -> None:
    client = shop.test_client()
    page = client.get("/portal/login/biz_demo")
    assert "◆" in page.text  # example_app/templates/customer_portal/_brand.html
    home = client.get("/")
    assert home.status_code == 200
    assert "/portal/login/biz_demo" in home.text


def test_a_demo_database_from_an_older_version_is_set_aside(tmp_path: Path) -> None:
    import sqlite3

    from example_app import _set_aside_outdated_demo_database

    demo_database = tmp_path / "shop.db"
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{demo_database}"})
    with app.app_context():
        _set_aside_outdated_demo_database(app, demo_database)
        assert demo_database.exists()  # up to date: left alone
        app.extensions["sqlalchemy"].engine.dispose()
    with sqlite3.connect(demo_database) as connection:
        connection.execute("ALTER TABLE portal_sessions DROP COLUMN location")
    with app.app_context():
        _set_aside_outdated_demo_database(app, demo_database)
    assert not demo_database.exists()
    assert (tmp_path / "shop.db.old").exists()
    # Another file than the demo's own is never touched.
    other = tmp_path / "other.db"
    (tmp_path / "shop.db.old").rename(other)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{other}"})
    with app.app_context():
        _set_aside_outdated_demo_database(app, demo_database)
    assert other.exists()
