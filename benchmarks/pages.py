"""Benchmark 1: the portal's dashboard and invoice list against the same
pages written by hand as bare Flask + SQLAlchemy views (``_bare.py``), on
the same app, SQLite database and session cookie (goal: ≤ 1.3× their
latency). Then a cProfile of the portal's pages: where its time goes.
"""

from __future__ import annotations

import cProfile
import pstats
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from benchmarks._bare import add_bare_views
from benchmarks._timing import compare, verdict
from flask_customer_portal.extension import get_state
from tests.portal_fixtures import make_portal_app, sign_in

GOAL = 1.3

#: (label, file the function is in, function name): inclusive time of each,
#: from cProfile. Some nest inside others (formatting runs inside rendering).
PHASES: tuple[tuple[str, str, str], ...] = (
    ("whole request (Flask.wsgi_app)", "flask/app.py", "wsgi_app"),
    ("  open the Flask session cookie", "flask/sessions.py", "open_session"),
    ("  before_request: customer + locale", "flask_customer_portal/views/_base.py", "_enter_portal"),
    (
        "    signed-in customer (session record + customer)",
        "flask_customer_portal/auth.py",
        "_load_from_portal_session",
    ),
    ("    choose locale (select_locale)", "flask_customer_portal/i18n.py", "select_locale"),
    ("    flask_babel.force_locale", "flask_babel/__init__.py", "force_locale"),
    ("  view function", "flask_customer_portal/views/dashboard.py", "dashboard"),
    ("  view function", "flask_customer_portal/views/invoices.py", "invoices"),
    (
        "    storage: list_subscriptions",
        "flask_customer_portal/contrib/sqla/_subscriptions.py",
        "list_subscriptions",
    ),
    ("    storage: list_invoices", "flask_customer_portal/contrib/sqla/_invoices.py", "list_invoices"),
    (
        "    storage: list_license_keys",
        "flask_customer_portal/contrib/sqla/_licences.py",
        "list_license_keys",
    ),
    ("    describe subscriptions", "flask_customer_portal/views/subscriptions.py", "describe"),
    ("    render_template", "flask/templating.py", "render_template"),
    ("      context processor (_portal_context)", "flask_customer_portal/views/_base.py", "_portal_context"),
    ("      money()", "flask_customer_portal/templating.py", "money"),
    ("      date()", "flask_customer_portal/templating.py", "date"),
    ("      _() / ngettext()", "flask_customer_portal/i18n.py", "gettext"),
    ("      ngettext()", "flask_customer_portal/i18n.py", "ngettext"),
    ("      portal_locale()", "flask_customer_portal/templating.py", "locale"),
    ("      url_for", "flask/helpers.py", "url_for"),
    ("      csrf_token()", "flask_wtf/csrf.py", "generate_csrf"),
    ("  security headers", "flask_customer_portal/views/_base.py", "add_security_headers"),
    ("  save the Flask session cookie", "flask/sessions.py", "save_session"),
    ("  teardown (locale stack, db session)", "flask/app.py", "do_teardown_request"),
    ("SQL: all SQLAlchemy executes", "sqlalchemy/orm/session.py", "execute"),
    ("SQL: in the sqlite3 driver", "~", "<method 'execute' of 'sqlite3.Cursor' objects>"),
    ("Babel: format_currency", "babel/numbers.py", "format_currency"),
    ("Babel: format_date", "babel/dates.py", "format_date"),
    ("Babel: Locale.parse", "babel/core.py", "parse"),
    ("Babel: get_locale (flask_babel)", "flask_babel/__init__.py", "get_locale"),
)


@dataclass(frozen=True)
class PageResult:
    page: str
    portal_ms: float
    bare_ms: float
    ratio: float

    @property
    def met(self) -> bool:
        return self.ratio <= GOAL


@dataclass(frozen=True)
class PagesResult:
    pages: tuple[PageResult, ...]
    profiles: dict[str, list[tuple[str, float, float]]]
    """Per page: (phase, ms per request under the profiler, share of the request)."""


def _setup(tmp: str) -> tuple[Flask, FlaskClient]:
    app = make_portal_app(f"sqlite:///{Path(tmp) / 'bench.db'}", TESTING=False)
    add_bare_views(app)
    client = app.test_client()
    sign_in(app, client, "cus_demo_ava")
    assert client.get("/bare/sign-in/cus_demo_ava").status_code == 200
    return app, client


def _getter(client: FlaskClient, path: str, expect: str) -> Callable[[], None]:
    def get() -> None:
        response = client.get(path)
        if response.status_code != 200:
            raise AssertionError(f"{path}: {response.status_code}")
        response.close()

    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    assert expect in response.text, (path, expect)
    return get


def profile_page(get: Callable[[], None], requests: int) -> list[tuple[str, float, float]]:
    """Inclusive time per request of each of :data:`PHASES` under cProfile."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        get()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    totals: dict[tuple[str, str], float] = {}
    for (filename, _line, function), (_cc, _nc, _tt, cumulative, _callers) in stats.items():
        for _label, where, name in PHASES:
            if function == name and (filename == where or filename.endswith(where)):
                totals[(where, name)] = totals.get((where, name), 0.0) + cumulative
    whole = totals.get(("flask/app.py", "wsgi_app"), 0.0) or 1.0
    rows = []
    for label, where, name in PHASES:
        seconds = totals.get((where, name))
        if seconds is None:
            continue
        rows.append((label, seconds * 1000 / requests, seconds / whole))
    return rows


def run(*, rounds: int = 400, warmup: int = 30, profile_requests: int = 300) -> PagesResult:
    with tempfile.TemporaryDirectory() as tmp:
        app, client = _setup(tmp)
        try:
            contenders = {
                "portal dashboard": _getter(client, "/portal/", "Latest invoice: INV-000015"),
                "bare dashboard": _getter(client, "/bare/", "Latest invoice: INV-000015"),
                "portal invoice list": _getter(client, "/portal/invoices", "INV-000002"),
                "bare invoice list": _getter(client, "/bare/invoices", "INV-000002"),
            }
            comparison = compare(contenders, rounds=rounds, warmup=warmup)
            pages = tuple(
                PageResult(
                    page,
                    comparison[f"portal {page}"].median,
                    comparison[f"bare {page}"].median,
                    comparison.ratio(f"portal {page}", f"bare {page}"),
                )
                for page in ("dashboard", "invoice list")
            )
            profiles = {
                "dashboard": profile_page(contenders["portal dashboard"], profile_requests),
                "invoice list": profile_page(contenders["portal invoice list"], profile_requests),
                "bare dashboard": profile_page(contenders["bare dashboard"], profile_requests),
            }
        finally:
            get_state(app).shutdown()
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()

    print(
        "\n## 1. Portal pages vs the same pages as bare Flask + SQLAlchemy views "
        f"(SQLite, test client, interleaved, median of {rounds})"
    )
    for result in pages:
        print(
            f"{result.page:>12}: portal {result.portal_ms:.2f} ms, bare {result.bare_ms:.2f} ms, "
            f"ratio {result.ratio:.2f}x (goal ≤ {GOAL}x: {verdict(result.met)})"
        )
    for page, rows in profiles.items():
        print(
            f"\n### Where the time goes: {page} (cProfile, {profile_requests} requests; inclusive; nested rows overlap)"
        )
        for label, ms, share in rows:
            print(f"{label:<58} {ms:7.3f} ms {share:6.1%}")
    return PagesResult(pages, profiles)
