"""Benchmark 2: signing in with a link, the portal against Flask-Security-Too's
passwordless "unified sign in" magic link (goal: the portal is faster).

The portal: open the link (GET shows one button), press it (POST with the
CSRF token: uses the link up, starts a server-side session, writes an audit
event), land on the dashboard. Flask-Security-Too, configured minimally
(``SECURITY_UNIFIED_SIGNIN`` with the ``email`` method only): open
``/us-verify-link?id=…&code=…`` (GET checks the emailed one-time code and
signs in), land on its post-login page, which shows the same overview: the
bare dashboard of benchmark 1, for the same customer. Both run on SQLite in
one file, each in a fresh browser (test client); making the link or code (the
email step) is not timed for either.
"""

from __future__ import annotations

import importlib
import re
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from benchmarks._bare import add_bare_views
from benchmarks._sql import sql_log
from benchmarks._timing import compare, verdict
from flask_customer_portal.extension import get_state
from tests.portal_fixtures import make_portal_app

CUSTOMER_ID = "cus_demo_ava"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


@dataclass(frozen=True)
class SigninResult:
    variant: str
    portal_steps_ms: dict[str, float]
    """Median of each step: open the link, press the button, land."""
    portal_flow_ms: float
    fs_steps_ms: dict[str, float]
    fs_flow_ms: float
    ratio: float
    """Portal full flow over Flask-Security-Too's, median of per-round ratios."""
    portal_statements: int
    fs_statements: int
    portal_writes: int
    fs_writes: int
    portal_commits: int
    fs_commits: int

    @property
    def met(self) -> bool:
        return self.ratio < 1


@cache
def _fs_models() -> tuple[Any, Any, Any]:
    """Flask-Security-Too's SQLAlchemy models, defined once per process
    (a Flask-SQLAlchemy instance can serve one app after another)."""
    from flask_security.models import fsqla_v3 as fsqla
    from flask_security.models.fsqla import FsModels
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import Column, String

    db = SQLAlchemy()
    set_db_info: Any = FsModels.set_db_info  # untyped in Flask-Security-Too
    set_db_info(db, user_table_name="fs_user", role_table_name="fs_role")

    class Role(db.Model, fsqla.FsRoleMixin):  # type: ignore[misc, name-defined]
        __tablename__ = "fs_role"

    class User(db.Model, fsqla.FsUserMixin):  # type: ignore[misc, name-defined]
        __tablename__ = "fs_user"
        customer_id = Column(String(128))

    return db, User, Role


def _fs_app(db_url: str) -> tuple[Flask, Callable[[], str]]:
    """A minimal Flask-Security-Too app with email magic links; returns it and
    a function that makes a fresh link for the customer (the email step)."""
    from flask_security import Security, SQLAlchemyUserDatastore, current_user

    db, user_model, role_model = _fs_models()
    app = Flask("fs_bench")
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),
        SQLALCHEMY_DATABASE_URI=db_url,
        SECURITY_PASSWORD_SALT=secrets.token_hex(16),
        SECURITY_UNIFIED_SIGNIN=True,
        SECURITY_US_ENABLED_METHODS=["email"],
        SECURITY_TOTP_SECRETS={"1": secrets.token_urlsafe(32)},
        SECURITY_TOTP_ISSUER="Acme Software",
        SECURITY_POST_LOGIN_VIEW="/bare/",
    )
    db.init_app(app)
    datastore = SQLAlchemyUserDatastore(db, user_model, role_model)
    security = Security(app, datastore)

    def signed_in_customer_id() -> str | None:
        return current_user.customer_id if current_user.is_authenticated else None

    add_bare_views(app, current_customer_id=signed_in_customer_id)
    with app.app_context():
        db.create_all()
        user = datastore.create_user(email="ava@example.com", customer_id=CUSTOMER_ID)
        datastore.us_setup_email(user)
        db.session.commit()
        uniquifier = user.fs_uniquifier
        secret = datastore.us_get_totp_secrets(user)["email"]

    def make_link() -> str:
        # What us_send_security_token puts in the email.
        code = security.totp_factory.generate_totp_password(secret)
        return f"/us-verify-link?id={uniquifier}&code={code}"

    return app, make_link


def _path(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _no_fsync(engine: Engine) -> None:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous = OFF")

    event.listen(engine, "connect", on_connect)


VARIANTS = {
    "SQLite as configured by default (each commit waits for the disk)": False,
    "SQLite with PRAGMA synchronous = OFF (commits cost no disk wait)": True,
}


def missing_dependency() -> str | None:
    """Why Flask-Security-Too's magic link cannot run here, or ``None``."""
    for module in ("flask_security", "cryptography"):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def run(
    *, rounds: int = 200, warmup: int = 10, variants: tuple[str, ...] = tuple(VARIANTS)
) -> tuple[SigninResult, ...]:
    """Returns no results (and says why) without the ``bench`` extra."""
    missing = missing_dependency()
    if missing is not None:
        print(f"\n## 2. Link sign-in vs Flask-Security-Too's magic link\nskipped: {missing}")
        return ()
    results = []
    for variant in variants:
        no_fsync = VARIANTS[variant]
        with tempfile.TemporaryDirectory() as tmp:
            db_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            portal = make_portal_app(db_url, TESTING=False)
            fs_app, make_fs_link = _fs_app(db_url)
            engines = []
            for app in (portal, fs_app):
                with app.app_context():
                    engine = app.extensions["sqlalchemy"].engine
                    engine.dispose()  # new connections get the pragma
                    if no_fsync:
                        _no_fsync(engine)
                    engines.append(engine)
            try:
                results.append(
                    _measure(variant, portal, fs_app, make_fs_link, engines, rounds=rounds, warmup=warmup)
                )
            finally:
                get_state(portal).shutdown()
                for engine in engines:
                    engine.dispose()

    print(
        "\n## 2. Link sign-in vs Flask-Security-Too's magic link "
        f"(test client, fresh browser each time, interleaved, median of {rounds})"
    )
    for result in results:
        portal_steps = ", ".join(f"{step} {ms:.2f} ms" for step, ms in result.portal_steps_ms.items())
        fs_steps = ", ".join(f"{step} {ms:.2f} ms" for step, ms in result.fs_steps_ms.items())
        print(f"{result.variant}:")
        print(
            f"  portal: {result.portal_flow_ms:.2f} ms ({portal_steps}); "
            f"{result.portal_statements} SQL statements ({result.portal_writes} writes), {result.portal_commits} commits"
        )
        print(
            f"  Flask-Security-Too: {result.fs_flow_ms:.2f} ms ({fs_steps}); "
            f"{result.fs_statements} SQL statements ({result.fs_writes} writes), {result.fs_commits} commits"
        )
        print(f"  ratio portal / Flask-Security-Too: {result.ratio:.2f}x (goal < 1: {verdict(result.met)})")
    return tuple(results)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _measure(
    variant: str,
    portal: Flask,
    fs_app: Flask,
    make_fs_link: Callable[[], str],
    engines: list[Engine],
    *,
    rounds: int,
    warmup: int,
) -> SigninResult:
    pending: dict[str, tuple[FlaskClient, str]] = {}
    steps: dict[str, dict[str, list[float]]] = {
        "portal": {"open link": [], "press button": [], "land on dashboard": []},
        "fs": {"open link": [], "land on overview": []},
    }

    def prepare_portal() -> None:
        with portal.app_context():
            link = portal.extensions["customer_portal"].create_session(CUSTOMER_ID).link
        pending["portal"] = (portal.test_client(), _path(link))

    def prepare_fs() -> None:
        with fs_app.app_context():
            pending["fs"] = (fs_app.test_client(), make_fs_link())

    def portal_flow() -> None:
        client, path = pending.pop("portal")
        times = steps["portal"]
        start = time.perf_counter()
        page = client.get(path)
        match = _CSRF.search(page.text)
        if page.status_code != 200 or match is None:
            raise AssertionError(f"link page: {page.status_code}")
        opened = time.perf_counter()
        pressed = client.post(path, data={"csrf_token": match.group(1) or match.group(2)})
        if pressed.status_code != 303:
            raise AssertionError(f"pressing the button: {pressed.status_code}")
        signed_in = time.perf_counter()
        landed = client.get(pressed.headers["Location"])
        if landed.status_code != 200 or "Hello, Ava" not in landed.text:
            raise AssertionError(f"dashboard: {landed.status_code}")
        end = time.perf_counter()
        times["open link"].append((opened - start) * 1000)
        times["press button"].append((signed_in - opened) * 1000)
        times["land on dashboard"].append((end - signed_in) * 1000)

    def fs_flow() -> None:
        client, path = pending.pop("fs")
        times = steps["fs"]
        start = time.perf_counter()
        opened = client.get(path)
        if opened.status_code != 302 or not opened.headers["Location"].endswith("/bare/"):
            raise AssertionError(f"magic link: {opened.status_code} {opened.headers.get('Location')}")
        signed_in = time.perf_counter()
        landed = client.get(opened.headers["Location"])
        if landed.status_code != 200 or "Hello, Ava" not in landed.text:
            raise AssertionError(f"landing page: {landed.status_code}")
        end = time.perf_counter()
        times["open link"].append((signed_in - start) * 1000)
        times["land on overview"].append((end - signed_in) * 1000)

    prepare_portal()
    with sql_log(engines[0]) as portal_sql:
        portal_flow()
    prepare_fs()
    with sql_log(engines[1]) as fs_sql:
        fs_flow()
    for contender in steps.values():
        for values in contender.values():
            values.clear()

    comparison = compare(
        {"portal": portal_flow, "fs": fs_flow},
        rounds=rounds,
        warmup=warmup,
        setup={"portal": prepare_portal, "fs": prepare_fs},
    )
    return SigninResult(
        variant=variant,
        portal_steps_ms={step: _median(v[-rounds:]) for step, v in steps["portal"].items()},
        portal_flow_ms=comparison["portal"].median,
        fs_steps_ms={step: _median(v[-rounds:]) for step, v in steps["fs"].items()},
        fs_flow_ms=comparison["fs"].median,
        ratio=comparison.ratio("portal", "fs"),
        portal_statements=len(portal_sql.statements),
        fs_statements=len(fs_sql.statements),
        portal_writes=portal_sql.writes,
        fs_writes=fs_sql.writes,
        portal_commits=portal_sql.commits,
        fs_commits=fs_sql.commits,
    )
