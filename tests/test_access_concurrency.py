"""One link, many simultaneous presses of its button: at most one sign-in."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from portal_fixtures import make_portal_app, path_of

from flask_customer_portal.state import get_state
from flask_customer_portal.testing import csrf_token_from


@pytest.fixture
def shared_app(db_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = make_portal_app(db_url)
    yield app
    get_state(app).shutdown()
    with app.app_context():
        storage = get_state(app).storage
        storage.drop_all()  # type: ignore[attr-defined]
        app.extensions["sqlalchemy"].engine.dispose()


def test_concurrent_posts_of_one_link_sign_in_once(shared_app: Flask) -> None:
    with shared_app.app_context():
        link = shared_app.extensions["customer_portal"].create_session("cus_demo_ava").link
    workers = 8
    clients = [shared_app.test_client() for _ in range(workers)]
    tokens = [csrf_token_from(client.get(path_of(link)).text) for client in clients]
    barrier = threading.Barrier(workers)
    statuses: list[int] = []
    lock = threading.Lock()

    def press(n: int) -> None:
        barrier.wait()
        response = clients[n].post(path_of(link), data={"csrf_token": tokens[n]})
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=press, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [303] + [410] * (workers - 1)
    signed_in = [client for client in clients if client.get("/portal/").status_code == 200]
    assert len(signed_in) == 1
