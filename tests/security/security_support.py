"""What the security tests share: witnesses of "nothing changed" and links
of every purpose."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from flask_customer_portal.auth import issue_link
from flask_customer_portal.contrib.sqla import metadata
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer, LinkPurpose
from flask_customer_portal.testing import csrf_token_from

AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"
CHEN = "cus_demo_chen"

#: Where each kind of link is opened.
LINK_PATHS = {
    LinkPurpose.SESSION_LINK: "/portal/session/{token}",
    LinkPurpose.LOGIN_LINK: "/portal/login/biz_demo/{token}",
    LinkPurpose.EMAIL_CHANGE: "/portal/profile/email/{token}",
}

#: Where a used link of each kind sends the browser.
LINK_LANDINGS = {
    LinkPurpose.SESSION_LINK: "/portal/",
    LinkPurpose.LOGIN_LINK: "/portal/",
    LinkPurpose.EMAIL_CHANGE: "/portal/profile",
}

NEW_EMAIL = "ava.new@example.org"


def records(app: Flask, customer_id: str) -> tuple[Any, ...]:
    """Everything a customer has, as the storage API returns it."""
    with app.app_context():
        store = get_state(app).storage
        return (
            store.get_customer(customer_id),
            tuple(store.list_subscriptions(customer_id)),
            tuple(store.list_invoices(customer_id, page=1, per_page=1000).items),
            tuple(store.list_payment_methods(customer_id)),
            tuple(store.list_license_keys(customer_id)),
        )


def db_dump(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every portal table: the strictest "nothing changed".
    Mail the portal is still delivering in the background is waited for
    first: a delivered row changes, and that is no change of the test's."""
    get_state(app).wait_for_background_tasks()
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        with engine.connect() as connection:
            return {
                table.name: sorted((tuple(row) for row in connection.execute(select(table))), key=repr)
                for table in metadata.sorted_tables
            }


def customer(app: Flask, customer_id: str = AVA) -> Customer:
    with app.app_context():
        found = get_state(app).storage.get_customer(customer_id)
    assert found is not None
    return found


def link_path(purpose: LinkPurpose, token: str) -> str:
    return LINK_PATHS[purpose].format(token=token)


def issue(app: Flask, purpose: LinkPurpose, customer_id: str = AVA) -> str:
    """A fresh token of ``purpose`` for the customer, as the portal makes it
    (an email change always names :data:`NEW_EMAIL`)."""
    state = get_state(app)
    with app.app_context():
        found = state.storage.get_customer(customer_id)
        assert found is not None
        max_age = {
            LinkPurpose.SESSION_LINK: state.config.session_link_max_age,
            LinkPurpose.LOGIN_LINK: state.config.login_link_max_age,
            LinkPurpose.EMAIL_CHANGE: state.config.email_change_max_age,
        }[purpose]
        token, _ = issue_link(
            state,
            purpose,
            found,
            max_age=max_age,
            new_email=NEW_EMAIL if purpose is LinkPurpose.EMAIL_CHANGE else None,
        )
    return token


def any_csrf_token(client: FlaskClient) -> str:
    """A valid CSRF token for this browser, from a page every visitor sees."""
    page = client.get("/portal/login/biz_demo")
    if page.status_code == 302:  # signed in: the overview has a form too
        page = client.get("/portal/")
    return csrf_token_from(page.text)


def press(client: FlaskClient, path: str) -> Any:
    """POST the link's "open" button with a valid CSRF token of this browser,
    whatever the GET answered."""
    return client.post(path, data={"csrf_token": any_csrf_token(client)})
