"""Deep links: ``create_session(..., flow=, subscription_id=)`` lands on one
task, the flow is bound into the signed link, and finishing the task sends
the customer back to ``return_url``."""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import open_link, path_of, stored_subscription

from flask_customer_portal import CustomerNotFound, signals
from flask_customer_portal.cli import portal_cli
from flask_customer_portal.rules import CustomerRules
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import SubscriptionStatus
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"
AVA_PAST_SUB = "sub_demo_ava_desktop"
BUDI = "cus_demo_budi"
BUDI_SUB = "sub_demo_budi_sync"
RETURN_URL = "http://shop.test/account?tab=billing"
NEXT_YEAR = str(datetime.now(timezone.utc).year + 2)
GOOD_CARD = {
    "payment_method": "new",
    "card_number": "4242 4242 4242 4242",
    "exp_month": "12",
    "exp_year": NEXT_YEAR,
    "cvc": "123",
}


def _session(app: Flask, customer_id: str = AVA, **kwargs: Any) -> Any:
    with app.app_context():
        return app.extensions["customer_portal"].create_session(customer_id, **kwargs)


def _events(app: Flask, customer_id: str, action: str) -> list[Any]:
    with app.app_context():
        events = get_state(app).storage.list_events(customer_id)  # type: ignore[attr-defined]
    return [e for e in events if e.action == action]


def _pay_with_new_card(client: FlaskClient, subscription_id: str) -> Any:
    page = client.get(f"/portal/subscriptions/{subscription_id}/payment-method")
    assert page.status_code == 200
    intent = "reactivate" if 'name="intent" value="reactivate"' in page.text else "change"
    data = {"csrf_token": csrf_token_from(page.text), "intent": intent, **GOOD_CARD}
    return client.post(f"/portal/subscriptions/{subscription_id}/payment-method", data=data)


def _confirm_cancel(client: FlaskClient, subscription_id: str) -> Any:
    token = csrf_token_from(client.get(f"/portal/subscriptions/{subscription_id}").text)
    return client.post(
        f"/portal/subscriptions/{subscription_id}/cancel", data={"csrf_token": token, "confirm": "yes"}
    )


# --- making deep links --------------------------------------------------------------


def test_the_plain_signature_still_makes_a_link_without_a_flow(app: Flask) -> None:
    portal_session = _session(app)
    assert portal_session.flow is None
    assert portal_session.subscription_id is None


@pytest.mark.parametrize(
    ("flow", "subscription_id"),
    [
        ("payment_method_update", AVA_SUB),
        ("cancel", AVA_SUB),
        ("plan_change", AVA_SUB),
        ("invoices", None),
    ],
)
def test_each_flow_is_recorded_on_the_session_and_in_the_audit_log(
    app: Flask, flow: str, subscription_id: str | None
) -> None:
    created: list[Any] = []
    with signals.session_created.connected_to(lambda sender, **kw: created.append(kw["session"]), app):
        portal_session = _session(app, flow=flow, subscription_id=subscription_id, return_url=RETURN_URL)
    assert (portal_session.flow, portal_session.subscription_id) == (flow, subscription_id)
    assert created == [portal_session]
    event = _events(app, AVA, "session_link.created")[-1]
    assert event.details["flow"] == flow
    assert event.subject_id == subscription_id


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flow": "refund"}, "unknown flow 'refund'"),
        ({"flow": "PAYMENT_METHOD_UPDATE", "subscription_id": AVA_SUB}, "unknown flow"),
        ({"flow": "payment_method_update"}, "needs a subscription_id"),
        ({"flow": "cancel", "subscription_id": ""}, "needs a subscription_id"),
        (
            {"flow": "payment_method_update", "subscription_id": BUDI_SUB},
            "has no subscription 'sub_demo_budi",
        ),
        ({"flow": "cancel", "subscription_id": "sub_nobody"}, "has no subscription"),
        ({"flow": "cancel", "subscription_id": "x" * 500}, "has no subscription"),
        ({"flow": "cancel", "subscription_id": AVA_PAST_SUB}, "has ended"),
        ({"flow": "payment_method_update", "subscription_id": AVA_PAST_SUB}, "has ended"),
        ({"flow": "invoices", "subscription_id": AVA_SUB}, "takes no subscription_id"),
        ({"subscription_id": AVA_SUB}, "only used with a flow"),
    ],
)
def test_bad_flows_are_refused_before_anything_is_made(
    app: Flask, kwargs: dict[str, Any], message: str
) -> None:
    before = len(_events(app, AVA, "session_link.created"))
    with pytest.raises(ValueError, match=message):
        _session(app, **kwargs)
    assert len(_events(app, AVA, "session_link.created")) == before


def test_an_unknown_customer_is_still_customer_not_found(app: Flask) -> None:
    with pytest.raises(CustomerNotFound):
        _session(app, "cus_nobody", flow="invoices")


def test_cancel_flow_for_a_subscription_already_set_to_end(app: Flask, ava_client: FlaskClient) -> None:
    assert _confirm_cancel(ava_client, AVA_SUB).status_code == 303
    assert stored_subscription(app, AVA, AVA_SUB).cancel_at_period_end
    with pytest.raises(ValueError, match="already set to end"):
        _session(app, flow="cancel", subscription_id=AVA_SUB)
    # Changing the card of a subscription that runs until its end is still fine.
    assert _session(app, flow="payment_method_update", subscription_id=AVA_SUB).flow


def test_flows_the_rules_forbid_are_refused(app: Flask) -> None:
    app.extensions["customer_portal"].rules_loader(
        lambda customer, subscription: CustomerRules(billing_only=True)
    )
    for flow in ("cancel", "plan_change"):
        with pytest.raises(ValueError, match="rules"):
            _session(app, flow=flow, subscription_id=AVA_SUB)
    assert _session(app, flow="payment_method_update", subscription_id=AVA_SUB).flow


def test_send_invite_makes_a_deep_link(app: Flask, mailer: MemoryMailer) -> None:
    with app.app_context():
        portal_session = app.extensions["customer_portal"].send_invite(
            BUDI, flow="payment_method_update", subscription_id=BUDI_SUB
        )
        with pytest.raises(ValueError, match="has no subscription"):
            app.extensions["customer_portal"].send_invite(BUDI, flow="cancel", subscription_id=AVA_SUB)
    assert portal_session.flow == "payment_method_update"
    assert len(mailer.outbox) == 1
    assert portal_session.link in mailer.outbox[0].text


def test_cli_makes_a_deep_link(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        portal_cli,
        ["create-session", AVA, "--flow", "payment_method_update", "--subscription", AVA_SUB],
    )
    assert result.exit_code == 0, result.output
    link = result.stdout.strip().splitlines()[0]
    client = app.test_client()
    response = open_link(client, link)
    assert response.headers["Location"] == f"/portal/subscriptions/{AVA_SUB}/payment-method"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flow", "refund"], "'refund' is not one of"),
        (["--flow", "cancel"], "needs a subscription_id"),
        (["--flow", "cancel", "--subscription", BUDI_SUB], "has no subscription"),
        (["--return-url", "https://evil.example/"], "not in CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS"),
    ],
)
def test_cli_refuses_bad_flows(app: Flask, args: list[str], message: str) -> None:
    result = app.test_cli_runner().invoke(portal_cli, ["create-session", AVA, *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "/portal/session/" not in result.output


# --- opening deep links -----------------------------------------------------------


@pytest.mark.parametrize(
    ("flow", "subscription_id", "landing"),
    [
        ("payment_method_update", AVA_SUB, f"/portal/subscriptions/{AVA_SUB}/payment-method"),
        ("plan_change", AVA_SUB, f"/portal/subscriptions/{AVA_SUB}/plan"),
        ("invoices", None, "/portal/invoices"),
    ],
)
def test_a_deep_link_lands_on_its_task(
    app: Flask, client: FlaskClient, flow: str, subscription_id: str | None, landing: str
) -> None:
    link = _session(app, flow=flow, subscription_id=subscription_id).link
    page = client.get(path_of(link))
    assert page.status_code == 200  # the GET uses nothing up
    response = open_link(client, link)
    assert response.status_code == 303
    assert response.headers["Location"] == landing


def test_a_cancel_link_lands_on_the_start_of_cancelling(app: Flask, client: FlaskClient) -> None:
    link = _session(app, flow="cancel", subscription_id=AVA_SUB).link
    response = open_link(client, link)
    assert response.headers["Location"] == f"/portal/subscriptions/{AVA_SUB}/cancel/reason"
    assert client.get(response.headers["Location"]).status_code == 200


def test_the_flow_in_the_url_cannot_be_changed(app: Flask, client: FlaskClient) -> None:
    """The flow lives in the signed token: a query string is ignored, and
    editing the token's payload breaks its signature."""
    link = _session(app, flow="invoices").link
    response = open_link(client, link + "?flow=cancel&subscription_id=" + AVA_SUB)
    assert response.headers["Location"] == "/portal/invoices"

    link = _session(app, flow="invoices").link
    token = link.rsplit("/", 1)[1]
    compressed = token.startswith(".")
    payload_b64 = token.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4))
    data = json.loads(zlib.decompress(raw) if compressed else raw)
    assert data["f"] == "invoices"
    data.update(f="cancel", s=AVA_SUB)
    forged_raw = json.dumps(data, separators=(",", ":")).encode()
    forged_b64 = base64.urlsafe_b64encode(forged_raw).decode().rstrip("=")
    forged = forged_b64 + token.lstrip(".")[len(payload_b64) :]
    forged_link = link.rsplit("/", 1)[0] + "/" + forged
    assert client.get(path_of(forged_link)).status_code == 404
    fresh = app.test_client()
    assert fresh.post(path_of(forged_link), data={"csrf_token": "x"}).status_code in (400, 404)
    # The genuine link is untouched and still lands where it was made for.
    assert open_link(app.test_client(), link).headers["Location"] == "/portal/invoices"


def test_a_plain_link_after_a_deep_link_forgets_the_flow(app: Flask, client: FlaskClient) -> None:
    open_link(client, _session(app, flow="invoices", return_url=RETURN_URL).link)
    assert "Back to Acme Software" in client.get("/portal/invoices").text
    assert open_link(client, _session(app).link).headers["Location"] == "/portal/"
    assert "Back to Acme Software" not in client.get("/portal/invoices").text


# --- finishing the task -----------------------------------------------------------


def test_changing_the_card_returns_to_the_merchant(app: Flask, client: FlaskClient) -> None:
    link = _session(app, flow="payment_method_update", subscription_id=AVA_SUB, return_url=RETURN_URL).link
    landing = open_link(client, link).headers["Location"]
    page = client.get(landing)
    assert f'href="{RETURN_URL.replace("&", "&amp;")}"' in page.text  # the way back, before finishing
    response = _pay_with_new_card(client, AVA_SUB)
    assert response.status_code == 303
    assert response.headers["Location"] == RETURN_URL
    method = stored_subscription(app, AVA, AVA_SUB).payment_method
    assert method is not None and method.last4 == "4242" and method.id != "pm_demo_ava_visa"
    # Done: the flow is over, the portal behaves as usual again.
    again = _pay_with_new_card(client, AVA_SUB)
    assert again.headers["Location"] == f"/portal/subscriptions/{AVA_SUB}"


def test_the_notice_of_a_finished_task_is_not_left_behind(app: Flask, client: FlaskClient) -> None:
    link = _session(app, flow="payment_method_update", subscription_id=AVA_SUB, return_url=RETURN_URL).link
    open_link(client, link)
    assert _pay_with_new_card(client, AVA_SUB).headers["Location"] == RETURN_URL
    assert 'class="notice"' not in client.get("/portal/").text


def test_reactivating_returns_to_the_merchant(app: Flask, client: FlaskClient) -> None:
    link = _session(
        app, BUDI, flow="payment_method_update", subscription_id=BUDI_SUB, return_url=RETURN_URL
    ).link
    open_link(client, link)
    response = _pay_with_new_card(client, BUDI_SUB)
    assert response.status_code == 303
    assert response.headers["Location"] == RETURN_URL
    assert stored_subscription(app, BUDI, BUDI_SUB).status is SubscriptionStatus.ACTIVE


def test_cancelling_returns_to_the_merchant(app: Flask, client: FlaskClient) -> None:
    open_link(client, _session(app, flow="cancel", subscription_id=AVA_SUB, return_url=RETURN_URL).link)
    response = _confirm_cancel(client, AVA_SUB)
    assert response.status_code == 303
    assert response.headers["Location"] == RETURN_URL
    assert stored_subscription(app, AVA, AVA_SUB).cancel_at_period_end


def test_without_a_return_url_the_portal_answers_as_usual(app: Flask, client: FlaskClient) -> None:
    open_link(client, _session(app, flow="cancel", subscription_id=AVA_SUB).link)
    assert _confirm_cancel(client, AVA_SUB).headers["Location"] == f"/portal/subscriptions/{AVA_SUB}"


def test_another_task_does_not_end_the_flow(app: Flask, client: FlaskClient) -> None:
    """A cancel link, then a card change: the card change answers as usual
    and the cancellation still returns to the merchant."""
    open_link(client, _session(app, flow="cancel", subscription_id=AVA_SUB, return_url=RETURN_URL).link)
    assert _pay_with_new_card(client, AVA_SUB).headers["Location"] == f"/portal/subscriptions/{AVA_SUB}"
    assert _confirm_cancel(client, AVA_SUB).headers["Location"] == RETURN_URL


def test_a_return_url_no_longer_allowed_is_not_followed(app: Flask, client: FlaskClient) -> None:
    open_link(client, _session(app, flow="cancel", subscription_id=AVA_SUB, return_url=RETURN_URL).link)
    state = get_state(app)
    from dataclasses import replace

    state.config = replace(state.config, return_url_allowed_hosts=frozenset({"other.test"}))
    assert _confirm_cancel(client, AVA_SUB).headers["Location"] == f"/portal/subscriptions/{AVA_SUB}"


def test_invoices_flow_shows_the_way_back_on_its_pages_only(app: Flask, client: FlaskClient) -> None:
    open_link(client, _session(app, flow="invoices", return_url=RETURN_URL).link)
    back = (
        f'<p class="portal-return"><a href="{RETURN_URL.replace("&", "&amp;")}">Back to Acme Software</a></p>'
    )
    assert back in client.get("/portal/invoices").text
    assert 'class="portal-return"' not in client.get("/portal/license-keys").text


def test_signing_out_forgets_the_flow(app: Flask, client: FlaskClient) -> None:
    open_link(client, _session(app, flow="cancel", subscription_id=AVA_SUB, return_url=RETURN_URL).link)
    token = csrf_token_from(client.get("/portal/").text)
    assert client.post("/portal/logout", data={"csrf_token": token}).status_code == 200
    open_link(client, _session(app).link)
    assert _confirm_cancel(client, AVA_SUB).headers["Location"] == f"/portal/subscriptions/{AVA_SUB}"


def test_a_deep_link_adds_no_queries_to_its_page(app: Flask, count_queries: Callable[..., Any]) -> None:
    plain = app.test_client()
    open_link(plain, _session(app).link)
    deep = app.test_client()
    open_link(
        deep, _session(app, flow="payment_method_update", subscription_id=AVA_SUB, return_url=RETURN_URL).link
    )
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    path = f"/portal/subscriptions/{AVA_SUB}/payment-method"
    with count_queries(engine) as without_flow:
        assert plain.get(path).status_code == 200
    with count_queries(engine) as with_flow:
        assert deep.get(path).status_code == 200
    assert with_flow.count == without_flow.count, with_flow.statements


def test_changing_the_plan_returns_to_the_merchant(app: Flask, client: FlaskClient) -> None:
    open_link(client, _session(app, flow="plan_change", subscription_id=AVA_SUB, return_url=RETURN_URL).link)
    url = f"/portal/subscriptions/{AVA_SUB}/plan"
    token = csrf_token_from(client.get(url).text)
    preview = client.post(
        url,
        data={"csrf_token": token, "step": "preview", "plan": "plan_sync_business_monthly", "quantity": ""},
    )
    assert preview.status_code == 200, preview.text
    confirm = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', preview.text))
    assert confirm["step"] == "confirm"
    response = client.post(url, data=confirm)
    assert response.status_code == 303
    assert response.headers["Location"] == RETURN_URL
    assert stored_subscription(app, AVA, AVA_SUB).plan_id == "plan_sync_business_monthly"
