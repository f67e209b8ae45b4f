"""Every page of the portal that the demo customers can reach, found by
following the links a customer sees (shared by the HTML validity test and
the phone layout browser test).

A walk starts at the dashboard and follows every ``<a href>`` under the
portal's prefix that answers with HTML, so a page added to the navigation
or linked from another page is covered without a list to keep up to date.
The signed-out pages, the link page and the error pages (404, 405, a bad
link) are added by name.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urldefrag, urlsplit

from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import open_link, path_of

from flask_customer_portal.testing import csrf_token_from

__all__ = ["DEMO_CUSTOMERS", "PREFIX", "Page", "signed_in_pages", "signed_out_pages"]

PREFIX = "/portal"
BUSINESS_ID = "biz_demo"
#: The demo customers the pages are walked as: a full history, an account
#: on hold in Indonesian, an account with nothing in it yet, and one with
#: an open invoice, a trial and a refund.
DEMO_CUSTOMERS = ("cus_demo_ava", "cus_demo_budi", "cus_demo_chen", "cus_demo_dewi")
#: A bound on one customer's walk, far above what the demo reaches, so a
#: page that links to ever new URLs fails the walk instead of running on.
MAX_PAGES = 80
#: Links that are not pages to look at: downloads, one-time links, the
#: static files.
_SKIPPED = re.compile(r"^/portal/(?:static/|session/|login/[^/]+/|profile/email/)|\.(?:pdf|csv|zip|ics)$")
_HREF = re.compile(r'<a\b[^>]*\bhref="([^"]+)"')


@dataclass(frozen=True)
class Page:
    """One rendered page: who saw it, its path, its status and its HTML."""

    who: str
    path: str
    status: int
    html: str

    @property
    def name(self) -> str:
        return f"{self.who} {self.path} ({self.status})"


def _links(page: str) -> Iterator[str]:
    for href in _HREF.findall(page):
        url, _fragment = urldefrag(html.unescape(href))
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path.startswith(f"{PREFIX}/"):
            continue
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if not _SKIPPED.search(parts.path):
            yield path


def signed_in_pages(app: Flask, customer_id: str) -> list[Page]:
    """Sign ``customer_id`` in and walk every page reachable by a link, then
    the error pages as the signed-in customer sees them."""
    client = app.test_client()
    with app.app_context():
        link = app.extensions["customer_portal"].create_session(customer_id).link
    assert open_link(client, link).status_code == 303
    pages: list[Page] = []
    queue = [f"{PREFIX}/"]
    seen = set(queue)
    while queue:
        path = queue.pop(0)
        response = client.get(path)
        if response.mimetype != "text/html":
            continue
        assert response.status_code == 200, (customer_id, path, response.status_code)
        pages.append(Page(customer_id, path, response.status_code, response.text))
        assert len(pages) <= MAX_PAGES, f"more than {MAX_PAGES} pages for {customer_id}: {sorted(seen)}"
        for target in _links(response.text):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    pages.extend(_error_pages(client, customer_id))
    return pages


def _error_pages(client: FlaskClient, who: str) -> Iterator[Page]:
    for path, status in ((f"{PREFIX}/no-such-page", 404), (f"{PREFIX}/logout", 405)):
        response = client.get(path)
        assert response.status_code == status, (who, path, response.status_code)
        yield Page(who, path, status, response.text)


def signed_out_pages(app: Flask, customer_id: str = "cus_demo_ava") -> list[Page]:
    """The pages a visitor sees before and after signing in: the static
    login page, "check your email", the link page (GET only, so the link
    stays unused), a bad link, signed out, and the error pages."""
    client = app.test_client()
    who = "signed out"
    login_path = f"{PREFIX}/login/{BUSINESS_ID}"
    login = client.get(login_path)
    assert login.status_code == 200
    pages = [Page(who, login_path, 200, login.text)]
    sent = client.post(
        login_path, data={"csrf_token": csrf_token_from(login.text), "email": "ava@example.com"}
    )
    assert sent.status_code == 200, sent.status_code
    pages.append(Page(who, f"{login_path} (sent)", 200, sent.text))
    with app.app_context():
        link = path_of(app.extensions["customer_portal"].create_session(customer_id).link)
    shown = client.get(link)
    assert shown.status_code == 200
    pages.append(Page(who, f"{PREFIX}/session/<token>", 200, shown.text))
    bad = client.get(f"{PREFIX}/session/not-a-token")
    pages.append(Page(who, f"{PREFIX}/session/not-a-token", bad.status_code, bad.text))
    pages.extend(_error_pages(client, who))
    # Signed in and out again: the "you are signed out" page.
    client.post(link, data={"csrf_token": csrf_token_from(shown.text)})
    dashboard = client.get(f"{PREFIX}/")
    out = client.post(f"{PREFIX}/logout", data={"csrf_token": csrf_token_from(dashboard.text)})
    assert out.status_code == 200, out.status_code
    pages.append(Page(who, f"{PREFIX}/logout (POST)", 200, out.text))
    return pages
