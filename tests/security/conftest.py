"""Fixtures of the security tests: portal apps on a copy of the demo
database (see ``portal_fixtures``), so that hundreds of attacks each start
from a fresh shop in milliseconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import close_app, make_portal_app, sign_in

from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider

AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[AppFactory]:
    """``make_app(mailer=..., payments=..., **config)``: a portal app on a
    fresh copy of the demo database; cleaned up after the test."""
    made: list[Flask] = []

    def make(*, mailer: Any = None, payments: Any = None, **config: Any) -> Flask:
        app = make_portal_app(
            f"sqlite:///{tmp_path / f'portal-{len(made)}.db'}",
            mailer=mailer if mailer is not None else MemoryMailer(),
            payments=payments if payments is not None else TestPaymentProvider(),
            **config,
        )
        made.append(app)
        return app

    yield make
    for app in made:
        close_app(app)


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
