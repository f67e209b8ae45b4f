"""The layout override of docs/theming.rst (docs/recipes/sidebar_layout/):
an app's own ``customer_portal/layout.html`` that moves the navigation into
a sidebar works on every page, keeps every block of the packaged layout, and
its stylesheet passes the portal's Content-Security-Policy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import close_app, make_portal_app, sign_in

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "docs" / "recipes" / "sidebar_layout"
PACKAGED = ROOT / "flask_customer_portal" / "templates" / "customer_portal" / "layout.html"
OVERRIDE = RECIPE / "templates" / "customer_portal" / "layout.html"


def _blocks(path: Path) -> set[str]:
    return set(re.findall(r"{%-?\s*block\s+(\w+)", path.read_text()))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    def use_the_recipe(app: Flask) -> None:
        app.template_folder = str(RECIPE / "templates")
        app.static_folder = str(RECIPE / "static")

    app = make_portal_app(f"sqlite:///{tmp_path / 'portal.db'}", before_portal=use_the_recipe)
    yield app
    close_app(app)


@pytest.fixture
def ava(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, "cus_demo_ava")
    return client


def test_the_override_keeps_every_block_of_the_packaged_layout() -> None:
    assert _blocks(OVERRIDE) == _blocks(PACKAGED)


def test_every_page_of_the_navigation_is_in_the_sidebar_frame(ava: FlaskClient) -> None:
    html = ava.get("/portal/").text
    sidebar = re.search(r'<header class="shop-sidebar">(.*?)</header>', html, re.S)
    assert sidebar, "no sidebar"
    assert '<nav class="shop-nav"' in sidebar.group(1)
    assert 'action="/portal/logout"' in sidebar.group(1)
    links = re.findall(r'<li><a href="(/portal/[^"]*)"', sidebar.group(1))
    assert len(links) >= 5
    for link in links:
        page = ava.get(link)
        assert page.status_code == 200, link
        assert '<main id="portal-main" class="shop-main"' in page.text
        assert f'<li><a href="{link}" aria-current="page">' in page.text
    assert '<main id="portal-main" class="portal-main"' not in html  # the packaged layout is not used


def test_pages_without_a_customer_and_error_pages_use_it_too(app: Flask) -> None:
    client = app.test_client()
    login = client.get("/portal/login/biz_demo")
    assert login.status_code == 200
    assert 'class="shop-sidebar"' in login.text and "shop-nav" not in login.text
    missing = client.get("/portal/no-such-page")
    assert missing.status_code == 404
    assert '<main id="portal-main" class="shop-main"' in missing.text


def test_its_stylesheet_is_the_apps_own_and_allowed(ava: FlaskClient) -> None:
    page = ava.get("/portal/invoices")
    assert '<link rel="stylesheet" href="/static/portal-sidebar.css">' in page.text
    assert "style-src 'self'" in page.headers["Content-Security-Policy"]
    stylesheet = ava.get("/static/portal-sidebar.css")
    assert stylesheet.status_code == 200
    assert stylesheet.mimetype == "text/css"
    assert ".shop-columns" in stylesheet.text
    stylesheet.close()
