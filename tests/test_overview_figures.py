"""The overview's subscription card says what the customer has: a paused or
trialing subscription is counted as such, never summed up as "0 active"."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from factories import subscription
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import portal_store
from test_visible_results import AVA, AVA_SUB, _app, _signed_in

from flask_customer_portal.clock import utcnow
from flask_customer_portal.storage import SubscriptionStatus
from flask_customer_portal.testing import csrf_token_from

CHEN = "cus_demo_chen"


@pytest.fixture
def pause_app(tmp_path: Path) -> Iterator[Flask]:
    yield from _app(tmp_path, "figures.db", CUSTOMER_PORTAL_ALLOW_PAUSE=True)


def _figure(page: str) -> str:
    card = page.split('id="card-subscriptions"', 1)[1].split("</section>", 1)[0]
    match = re.search(r'<p class="figure">([^<]*)</p>', card)
    assert match, card
    return match.group(1)


def _pick(client: FlaskClient, language: str) -> None:
    page = client.get("/portal/").text
    data = {"csrf_token": csrf_token_from(page), "language": language, "next": "/portal/"}
    assert client.post("/portal/language", data=data).status_code == 303


def _pause(app: Flask, language: str) -> str:
    ava = _signed_in(app, AVA)
    _pick(ava, language)
    page = ava.get(f"/portal/subscriptions/{AVA_SUB}").text
    paused = ava.post(
        f"/portal/subscriptions/{AVA_SUB}/pause", data={"csrf_token": csrf_token_from(page), "months": "1"}
    )
    assert paused.status_code == 303
    return ava.get("/portal/").text


def test_an_active_subscription_is_counted_as_active(pause_app: Flask) -> None:
    assert _figure(_signed_in(pause_app, AVA).get("/portal/").text) == "1 active"


@pytest.mark.parametrize(
    ("language", "expected"), [("en", "1 paused"), ("id", "1 dijeda"), ("es", "1 en pausa")]
)
def test_the_only_subscription_paused_is_counted_as_paused(
    pause_app: Flask, language: str, expected: str
) -> None:
    assert _figure(_pause(pause_app, language)) == expected


def test_a_trial_is_counted_as_a_trial(pause_app: Flask) -> None:
    now = utcnow()
    with pause_app.app_context():
        portal_store(pause_app).add_subscription(
            subscription(
                "sub_chen_trial",
                CHEN,
                status=SubscriptionStatus.TRIALING,
                current_period_start=now - timedelta(days=3),
                current_period_end=now + timedelta(days=11),
                created_at=now - timedelta(days=3),
            )
        )
    assert _figure(_signed_in(pause_app, CHEN).get("/portal/").text) == "1 in trial"


def test_an_on_hold_subscription_is_counted_once(pause_app: Flask) -> None:
    budi = _signed_in(pause_app, "cus_demo_budi")
    _pick(budi, "en")
    page = budi.get("/portal/").text
    assert _figure(page) == "1 on hold"
    assert page.count("1 on hold") == 1
