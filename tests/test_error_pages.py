"""Error pages: every status under the portal's prefix renders the portal's
layout in the customer's language with a way back, never Werkzeug's page;
every other path of the host's app gets exactly what the host gave it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask, abort, jsonify
from flask.testing import FlaskClient
from portal_fixtures import close_app, make_portal_app, sign_in
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound

from flask_customer_portal.views.error_pages import ERROR_STATUSES

WORDS = {
    400: "Something was wrong with that request",
    401: "Please sign in",
    403: "Not available for your account",
    404: "Page not found",
    405: "That action is not available here",
    409: "That changed in the meantime",
    410: "This is no longer available",
    413: "That was too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}


def _is_portal_page(response: Any) -> bool:
    return '<body class="portal' in response.text and 'id="error-title"' in response.text


def _back_link(html: str) -> str:
    match = re.search(r'<p class="error-page-back"><a href="([^"]+)">', html)
    assert match, "no way back"
    return match.group(1)


def _assert_security_headers(response: Any) -> None:
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


# -- under the portal's prefix ------------------------------------------------------------


def test_an_unknown_address_signed_out_is_the_portals_404_back_to_the_login_page(client: FlaskClient) -> None:
    for path in ("/portal/no-such-page", "/portal/invoices/x/y/z", "/portal/payment-methods/pm_1/nope"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert _is_portal_page(response), path
        assert "Page not found" in response.text
        assert _back_link(response.text) == "/portal/login/biz_demo"
        assert "Go to the sign-in page" in response.text
        assert 'class="portal-nav"' not in response.text  # nothing for a visitor to navigate
        _assert_security_headers(response)
        assert "Werkzeug" not in response.text and "The requested URL was not found" not in response.text


def test_an_unknown_address_signed_in_leads_back_to_the_dashboard(ava_client: FlaskClient) -> None:
    response = ava_client.get("/portal/no-such-page")
    assert response.status_code == 404
    assert _is_portal_page(response)
    assert _back_link(response.text) == "/portal/"
    assert "Back to your portal" in response.text
    assert 'class="portal-nav"' in response.text
    assert 'aria-current="page"' not in response.text  # no section is "this page"


def test_the_page_is_in_the_customers_language(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, "cus_demo_budi")
    response = client.get("/portal/no-such-page")
    assert response.status_code == 404
    assert '<html lang="id"' in response.text
    assert "Halaman tidak ditemukan" in response.text
    signed_out = app.test_client().get("/portal/no-such-page", headers={"Accept-Language": "id"})
    assert '<html lang="id"' in signed_out.text


def test_a_get_of_a_post_only_address_is_the_portals_405_with_allow(ava_client: FlaskClient) -> None:
    response = ava_client.get("/portal/logout")
    assert response.status_code == 405
    assert _is_portal_page(response)
    assert WORDS[405] in response.text
    assert response.headers["Allow"].split(", ").count("POST") == 1
    _assert_security_headers(response)


@pytest.mark.parametrize("code", ERROR_STATUSES)
def test_every_status_a_portal_page_raises_has_the_portals_page(
    app: Flask, ava_client: FlaskClient, code: int
) -> None:
    def failing() -> Any:
        if code == 500:
            raise RuntimeError("card pm_secret_0001 of cus_demo_ava broke at /srv/app.py")
        abort(code)

    app.view_functions["portal.invoices"] = failing
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = ava_client.get("/portal/invoices")
    assert response.status_code == code
    assert _is_portal_page(response)
    assert WORDS[code] in response.text
    assert _back_link(response.text) == "/portal/"
    _assert_security_headers(response)
    if code == 500:
        # Nothing of what went wrong: no exception text, no ids, no paths.
        for secret in ("RuntimeError", "pm_secret", "/srv/app.py", "Traceback", "broke"):
            assert secret not in response.text


def test_a_host_handler_for_a_status_does_not_answer_for_the_portals_pages(tmp_path: Path) -> None:
    def host(app: Flask) -> None:
        @app.errorhandler(404)
        def not_found(error: HTTPException) -> Any:
            return "host's 404", 404

    app = make_portal_app(f"sqlite:///{tmp_path / 'shop.db'}", before_portal=host)
    try:
        client = app.test_client()
        sign_in(app, client)
        foreign = client.get("/portal/invoices/inv_not_hers")
        assert foreign.status_code == 404 and _is_portal_page(foreign)
        unknown = client.get("/portal/no-such-page")
        assert unknown.status_code == 404 and _is_portal_page(unknown)
        assert client.get("/no-such-host-page").text == "host's 404"
    finally:
        close_app(app)


def test_an_error_page_that_cannot_render_falls_back_to_flasks(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flask_customer_portal.views.error_pages as error_pages

    def broken(error: HTTPException) -> Any:
        raise RuntimeError("template missing")

    monkeypatch.setattr(error_pages, "render_error_page", broken)
    response = client.get("/portal/no-such-page")
    assert response.status_code == 404
    assert response.get_data() == NotFound().get_response().get_data()


# -- the host's own paths: exactly as the host has them ---------------------------------------


def _bare_responses() -> dict[str, tuple[int, bytes]]:
    """What Flask answers the host's error paths with when no portal is registered."""
    bare = Flask("bare")
    bare.config["PROPAGATE_EXCEPTIONS"] = False
    _host_routes(bare)
    client = bare.test_client()
    return {path: (r.status_code, r.get_data()) for path in HOST_PATHS for r in [_request(client, path)]}


HOST_PATHS = ("GET /no-such-host-page", "GET /host/post-only", "GET /host/crash", "GET /host/abort-410")


def _request(client: FlaskClient, spec: str) -> Any:
    method, path = spec.split(" ")
    return client.open(path, method=method)


def _host_routes(app: Flask) -> None:
    @app.post("/host/post-only")
    def post_only() -> str:
        return "ok"

    @app.get("/host/crash")
    def crash() -> str:
        raise RuntimeError("host bug")

    @app.get("/host/abort-410")
    def gone() -> str:
        abort(410)


@pytest.fixture
def host_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def make(setup: Callable[[Flask], None] | None = None) -> Flask:
        def before(app: Flask) -> None:
            _host_routes(app)
            if setup is not None:
                setup(app)

        app = make_portal_app(f"sqlite:///{tmp_path / f'shop{len(made)}.db'}", before_portal=before)
        app.config["PROPAGATE_EXCEPTIONS"] = False
        made.append(app)
        return app

    yield make
    for app in made:
        close_app(app)


def test_a_hosts_error_pages_without_handlers_are_flasks_own(host_app: Callable[..., Flask]) -> None:
    app = host_app()
    client = app.test_client()
    expected = _bare_responses()
    for spec in HOST_PATHS:
        response = _request(client, spec)
        assert (response.status_code, response.get_data()) == expected[spec], spec
        assert "X-Frame-Options" not in response.headers, spec  # the portal's headers are its own
    assert set(_request(client, "GET /host/post-only").headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


def test_a_hosts_handlers_answer_for_its_paths(host_app: Callable[..., Flask]) -> None:
    seen: list[str] = []

    def setup(app: Flask) -> None:
        @app.errorhandler(404)
        def not_found(error: HTTPException) -> Any:
            seen.append("404")
            return "host 404", 404

        @app.errorhandler(HTTPException)
        def any_http(error: HTTPException) -> Any:
            seen.append(f"http {error.code}")
            return f"host http {error.code}", error.code or 500

    app = host_app(setup)
    client = app.test_client()
    assert client.get("/no-such-host-page").text == "host 404"
    assert client.get("/host/post-only").text == "host http 405"
    assert client.get("/host/abort-410").text == "host http 410"
    assert client.get("/host/crash").text == "host http 500"
    assert seen == ["404", "http 405", "http 410", "http 500"]
    # Under the prefix, the portal's page; the host's handlers are not asked.
    assert _is_portal_page(client.get("/portal/no-such-page"))
    assert _is_portal_page(client.get("/portal/logout"))
    assert len(seen) == 4


def test_a_hosts_handler_for_every_exception_still_gets_http_errors(host_app: Callable[..., Flask]) -> None:
    def setup(app: Flask) -> None:
        @app.errorhandler(Exception)
        def anything(error: Exception) -> Any:
            code = error.code if isinstance(error, HTTPException) else 500
            return f"host caught {type(error).__name__}", code

    app = host_app(setup)
    client = app.test_client()
    assert client.get("/no-such-host-page").text == "host caught NotFound"
    assert client.get("/host/post-only").text == "host caught MethodNotAllowed"
    assert client.get("/host/crash").text == "host caught RuntimeError"
    assert _is_portal_page(client.get("/portal/no-such-page"))


def test_a_host_blueprints_own_handler_keeps_answering_for_it(host_app: Callable[..., Flask]) -> None:
    def setup(app: Flask) -> None:
        api = Blueprint("api", __name__, url_prefix="/api")

        @api.get("/things/<thing_id>")
        def thing(thing_id: str) -> Any:
            abort(404)

        @api.errorhandler(HTTPException)
        def api_error(error: HTTPException) -> Any:
            return jsonify(error=error.code), error.code or 500

        app.register_blueprint(api)

    app = host_app(setup)
    response = app.test_client().get("/api/things/1")
    assert response.status_code == 404
    assert response.get_json() == {"error": 404}


def test_a_handler_the_host_registers_later_replaces_the_portals(host_app: Callable[..., Flask]) -> None:
    app = host_app()

    @app.errorhandler(404)
    def not_found(error: HTTPException) -> Any:
        return "host 404 everywhere", 404

    assert app.test_client().get("/portal/no-such-page").text == "host 404 everywhere"
    assert app.test_client().get("/no-such-host-page").text == "host 404 everywhere"


def test_werkzeugs_pages_are_what_the_bare_app_gives(host_app: Callable[..., Flask]) -> None:
    """The comparison above is not vacuous: the bare pages are Werkzeug's."""
    expected = _bare_responses()
    assert expected["GET /no-such-host-page"][1] == NotFound().get_response().get_data()
    assert expected["GET /host/post-only"][0] == MethodNotAllowed.code
    assert expected["GET /host/crash"][1] == InternalServerError().get_response().get_data()
