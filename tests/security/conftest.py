"""Fixtures of the security tests: portal apps on a copy of one demo
database, so that hundreds of attacks each start from a fresh shop in
milliseconds instead of loading the demo data every time."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from portal_fixtures import make_portal_app, sign_in
from sqlalchemy import event

from flask_customer_portal.extension import get_state
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider

AppFactory = Callable[..., Flask]


class _MemoryBytecodeCache(BytecodeCache):
    """Compiled templates shared by the apps of one test session: each new
    app would otherwise compile every template again."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_TEMPLATES = _MemoryBytecodeCache()


def _no_fsync(dbapi_connection: Any, connection_record: Any) -> None:
    """A throwaway test database need not survive a power cut."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = OFF")
    cursor.close()


@pytest.fixture(scope="session")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the portal's tables and the demo data, made once."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    app = make_portal_app(f"sqlite:///{path}")
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()
    return path


@pytest.fixture
def make_app(tmp_path: Path, demo_database: Path) -> Iterator[AppFactory]:
    """``make_app(mailer=..., payments=..., **config)``: a portal app on a
    fresh copy of the demo database; cleaned up after the test."""
    made: list[Flask] = []

    def make(*, mailer: Any = None, payments: Any = None, **config: Any) -> Flask:
        path = tmp_path / f"portal-{len(made)}.db"
        shutil.copyfile(demo_database, path)
        app = make_portal_app(
            f"sqlite:///{path}",
            mailer=mailer if mailer is not None else MemoryMailer(),
            payments=payments if payments is not None else TestPaymentProvider(),
            demo_data=False,
            **config,
        )
        app.jinja_env.bytecode_cache = _TEMPLATES
        with app.app_context():
            engine = app.extensions["sqlalchemy"].engine
            event.listen(engine, "connect", _no_fsync)
            engine.dispose()  # connections from now on skip fsync
        made.append(app)
        return app

    yield make
    for app in made:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def shop(make_app: AppFactory, mailer: MemoryMailer, payments: TestPaymentProvider) -> Flask:
    """The portal on the demo data, with the test's ``mailer`` and ``payments``."""
    return make_app(mailer=mailer, payments=payments)


@pytest.fixture
def ava(shop: Flask) -> FlaskClient:
    """A browser signed in as Ava."""
    client = shop.test_client()
    sign_in(shop, client, "cus_demo_ava")
    return client
