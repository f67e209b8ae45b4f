"""A page asked for while signed out survives a link that fails (used
already, expired, another browser's) and the new email asked for after it,
and is opened once, by the sign-in that works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import open_link, path_of
from test_visible_results import AVA, _app

from flask_customer_portal.clock import utcnow
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import csrf_token_from

ASKED = "/portal/invoices?page=1"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Flask]:
    yield from _app(tmp_path, "retry.db")


def _link(app: Flask) -> str:
    with app.app_context():
        return str(app.extensions["customer_portal"].create_session(AVA).link)


def _ask_while_signed_out(client: FlaskClient) -> None:
    assert client.get(ASKED).headers["Location"] == "/portal/login/biz_demo"


def test_a_link_that_loses_the_race_to_be_used_keeps_the_page_asked_for(
    shop: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two presses of the button at once (a double click, a second tab): the
    link is checked by both, used by the other one, and this sign-in fails."""
    client = shop.test_client()
    _ask_while_signed_out(client)
    link = _link(shop)
    page = client.get(path_of(link))
    store = get_state(shop).storage
    real_start = store.start_portal_session

    def used_first_by_the_other_press(record: Any, *, link: Any, **kwargs: Any) -> bool:
        # The other press's transaction commits first: this one finds the link used.
        assert store.consume_link(link.token_hash, link.purpose, AVA, utcnow())
        return bool(real_start(record, link=link, **kwargs))

    monkeypatch.setattr(store, "start_portal_session", used_first_by_the_other_press)
    failed = client.post(path_of(link), data={"csrf_token": csrf_token_from(page.text)})
    monkeypatch.undo()
    assert failed.status_code == 410
    # The customer asks for a new email from the problem page, then opens it.
    login = client.get("/portal/login/biz_demo")
    sent = client.post(
        "/portal/login/biz_demo", data={"csrf_token": csrf_token_from(login.text), "email": "ava@example.com"}
    )
    assert sent.status_code == 200
    assert open_link(client, _link(shop)).headers["Location"] == ASKED
    # Once: the next sign-in lands on the overview.
    assert open_link(client, _link(shop)).headers["Location"] == "/portal/"


def test_an_already_used_link_opened_later_keeps_the_page_asked_for(shop: Flask) -> None:
    client = shop.test_client()
    _ask_while_signed_out(client)
    used = _link(shop)
    assert open_link(shop.test_client(), used).status_code == 303
    assert client.get(path_of(used)).status_code == 410
    assert open_link(client, _link(shop)).headers["Location"] == ASKED


def test_a_page_outside_the_portal_is_still_never_remembered(shop: Flask) -> None:
    client = shop.test_client()
    with client.session_transaction() as session:
        session["_customer_portal_next"] = "//evil.example/portal/"
    used = _link(shop)
    assert open_link(shop.test_client(), used).status_code == 303
    page = client.get(path_of(_link(shop)))
    assert client.post(path_of(used), data={"csrf_token": csrf_token_from(page.text)}).status_code == 410
    assert open_link(client, _link(shop)).headers["Location"] == "/portal/"
