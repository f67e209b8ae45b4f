"""The pytest plugin a host app tests with (flask_customer_portal.pytest_plugin).

Each test writes a host's test suite into a fresh directory and runs pytest
on it (``pytester``), in a new process where it matters: the plugin comes
in through its ``pytest11`` entry point, as it does in a host's virtualenv,
and meets the host's own ``app`` fixture.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

#: Each test runs pytest in a process of its own: in `make test`, not `make check`.
pytestmark = pytest.mark.slow

TESTING_PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.rst"

#: A host's conftest: its app, with the portal and two customers, as the
#: plugin's contract asks (docs/testing.rst).
HOST_CONFTEST = """
import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_customer_portal import Customer, CustomerPortal
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage


@pytest.fixture(scope="{scope}")
def app(tmp_path_factory):
    app = Flask("host_shop")
    app.config.update(
        TESTING=True,
        SECRET_KEY="host-secret-key-0123456789abcdef0123456789",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{{tmp_path_factory.mktemp('shop') / 'shop.db'}}",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_host",
        CUSTOMER_PORTAL_BASE_URL="http://shop.test",
    )
    db = SQLAlchemy(app)
    storage = SQLAlchemyStorage(db)
    CustomerPortal(app, storage=storage)
    with app.app_context():
        storage.create_all()
        storage.add_customer(Customer(id="cus_ava", email="ava@example.com", name="Ava"))
        storage.add_customer(Customer(id="cus_budi", email="budi@example.com", name="Budi"))
    yield app
    app.extensions["customer_portal"].get_state(app).shutdown()
    with app.app_context():
        db.engine.dispose()
"""

HOST_TESTS = """
import pytest

from flask_customer_portal import CustomerNotFound
from flask_customer_portal.testing import PortalMailer, csrf_token_from


def test_sign_in_signs_the_portal_client_in(sign_in, portal_client):
    assert portal_client.get("/portal/").status_code == 302  # not yet
    assert sign_in("cus_ava") is portal_client
    page = portal_client.get("/portal/profile")
    assert page.status_code == 200
    assert "ava@example.com" in page.text


def test_sign_in_signs_another_browser_in(app, sign_in, portal_client):
    budi = sign_in("cus_budi", app.test_client())
    assert "budi@example.com" in budi.get("/portal/profile").text
    assert portal_client.get("/portal/").status_code == 302


def test_sign_in_refuses_an_unknown_customer(sign_in):
    with pytest.raises(CustomerNotFound):
        sign_in("cus_nobody")


def test_portal_mailer_keeps_the_login_email(app, portal_client, portal_mailer):
    assert isinstance(portal_mailer, PortalMailer)
    assert app.extensions["customer_portal"].get_state(app).mailer is portal_mailer
    page = portal_client.get("/portal/login/biz_host")
    portal_client.post(
        "/portal/login/biz_host",
        data={"email": "ava@example.com", "csrf_token": csrf_token_from(page.text)},
    )
    (message,) = portal_mailer.sent()
    assert message.to == "ava@example.com"
    assert "http://shop.test/portal/login/biz_host/" in message.text


@pytest.fixture
def mailer_put_back(app):
    # Set up before portal_mailer, so torn down after it.
    before = app.extensions["customer_portal"].get_state(app).mailer
    yield
    assert app.extensions["customer_portal"].get_state(app).mailer is before


def test_the_apps_mailer_is_put_back_after_the_test(mailer_put_back, app, portal_mailer):
    assert app.extensions["customer_portal"].get_state(app).mailer is portal_mailer
"""

#: Warnings are errors in the host's run, as in this suite.
HOST_INI = """
[pytest]
filterwarnings = error
"""


#: In-process runs (the quick ones) import a package this process has
#: imported already, which pytest can only warn about.
IN_PROCESS = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


@pytest.fixture
def host_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A host's tests twice: with a module-scoped and a function-scoped ``app``."""
    pytester.makeini(HOST_INI)
    for scope in ("module", "function"):
        pytester.mkdir(f"{scope}_scope")
        (pytester.path / f"{scope}_scope" / "conftest.py").write_text(HOST_CONFTEST.format(scope=scope))
        (pytester.path / f"{scope}_scope" / f"test_{scope}_scope.py").write_text(HOST_TESTS)
    return pytester


def _code_block(caption: str) -> str:
    """The Python code block of docs/testing.rst with this caption."""
    page = TESTING_PAGE.read_text(encoding="utf-8")
    match = re.search(
        rf"^\.\. code-block:: python\n   :caption: {re.escape(caption)}\n\n((?:   .*\n|\n)+)",
        page,
        re.MULTILINE,
    )
    assert match is not None, f"docs/testing.rst has no code block {caption}"
    return textwrap.dedent(match.group(1))


def test_the_documented_example_passes(pytester: pytest.Pytester) -> None:
    pytester.makeini(HOST_INI)
    pytester.makeconftest(_code_block("conftest.py"))
    pytester.makepyfile(test_portal=_code_block("test_portal.py"))
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_the_plugin_is_declared_for_pytest_to_load() -> None:
    (plugin,) = [e for e in entry_points(group="pytest11") if e.value.startswith("flask_customer_portal")]
    assert (plugin.name, plugin.value) == ("customer_portal", "flask_customer_portal.pytest_plugin")


def test_a_hosts_tests_use_the_fixtures(host_suite: pytest.Pytester) -> None:
    result = host_suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=10)


def test_the_fixtures_are_listed(host_suite: pytest.Pytester) -> None:
    result = host_suite.runpytest("--fixtures", "module_scope", *IN_PROCESS)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from flask_customer_portal.pytest_plugin*",
            "portal_client -- *",
            "sign_in -- *",
            "portal_mailer -- *",
        ]
    )


def test_the_plugin_can_be_left_out(host_suite: pytest.Pytester) -> None:
    result = host_suite.runpytest("-p", "no:customer_portal", "module_scope", *IN_PROCESS)
    result.assert_outcomes(errors=5)
    result.stdout.fnmatch_lines(["*fixture 'sign_in' not found*"])


def test_without_an_app_fixture_the_error_names_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_host="""
        def test_needs_the_host_app(portal_client):
            pass
        """
    )
    result = pytester.runpytest(*IN_PROCESS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'app' not found*"])


def test_the_testing_helpers_do_not_need_pytest() -> None:
    """``flask_customer_portal.testing`` imports in an app's own test
    runner (unittest) without pytest; only the plugin module needs it."""
    code = (
        "import sys; sys.modules['pytest'] = None; "
        "import flask_customer_portal.testing as t; t.sign_in, t.PortalMailer, t.MemoryMailer; "
        "import flask_customer_portal.pytest_plugin"
    )
    result = subprocess.run(  # fixed arguments
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (last_line,) = result.stderr.strip().splitlines()[-1:]
    assert last_line.startswith("ModuleNotFoundError") and "pytest" in last_line, result.stderr
    assert "flask_customer_portal/pytest_plugin.py" in result.stderr, result.stderr
