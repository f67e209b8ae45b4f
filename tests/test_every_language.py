"""Every shipped language, on every page the demo customers can reach.

The catalogue tests prove each message is translated; this proves the pages
use them: for each language, the demo customers pick it in the language
picker (so it is saved on them), the portal is walked from the overview by
its own links, and no English may be left on any page (see
:mod:`untranslated`). Adding a catalogue to the package adds it here, with
no change to this file.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import BASE_URL, close_app, make_portal_app, sign_in
from untranslated import page_texts, tells_for, translated_languages

from flask_customer_portal.catalogues import shipped_languages
from flask_customer_portal.i18n import language_name, language_tag, text_direction
from flask_customer_portal.testing import csrf_token_from

LANGUAGES = translated_languages()
CUSTOMERS = ("cus_demo_ava", "cus_demo_budi", "cus_demo_chen")
#: Downloads, not pages (their words are checked where they are made).
_NOT_PAGES = re.compile(r"/(pdf|static/.*|[^/]*\.(csv|zip|ics))$")
_MAX_PAGES = 60


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One app for the whole module: walking changes nothing (GET never does).
    One CSV export per shipped language is more than a customer may ask for
    in an hour by default."""
    app = make_portal_app(
        f"sqlite:///{tmp_path_factory.mktemp('languages') / 'portal.db'}",
        CUSTOMER_PORTAL_EXPORT_RATE_LIMIT="100 per hour",
    )
    yield app
    close_app(app)


def _html_lang(page: str) -> tuple[str, str]:
    match = re.search(r'<html lang="([^"]+)" dir="([^"]+)"', page)
    assert match, "no <html lang dir>"
    return match.group(1), match.group(2)


def _pick(client: FlaskClient, language: str) -> None:
    page = client.get("/portal/")
    response = client.post(
        "/portal/language",
        data={"csrf_token": csrf_token_from(page.text), "language": language, "next": "/portal/"},
    )
    assert response.status_code == 303, response.status_code


def _links(page: str) -> Iterator[str]:
    base = urlsplit(BASE_URL).netloc
    for href in re.findall(r'href="([^"#]+)', page):
        parts = urlsplit(html.unescape(href))
        if parts.netloc not in ("", base) or not parts.path.startswith("/portal/"):
            continue
        if _NOT_PAGES.search(parts.path):
            continue
        yield parts.path + (f"?{parts.query}" if parts.query else "")


def _walk(client: FlaskClient, start: tuple[str, ...]) -> dict[str, str]:
    """Every portal page reachable from ``start``, by path (one per path:
    the first query seen, so a long history is not read page by page)."""
    pages: dict[str, str] = {}
    queue = list(start)
    while queue and len(pages) < _MAX_PAGES:
        target = queue.pop(0)
        path = urlsplit(target).path
        if path in pages:
            continue
        response = client.get(target)
        if response.status_code != 200 or response.mimetype != "text/html":
            pages[path] = ""
            continue
        pages[path] = response.text
        queue.extend(link for link in _links(response.text) if urlsplit(link).path not in pages)
    return {path: text for path, text in pages.items() if text}


def test_every_shipped_catalogue_is_offered_by_default(shop: Flask) -> None:
    offered = shop.extensions["customer_portal"].get_state(shop).config.languages
    assert offered == shipped_languages()
    assert set(LANGUAGES) <= set(offered) and offered[0] == "en"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_picker_names_each_language_in_itself(shop: Flask, language: str) -> None:
    page = shop.test_client().get("/portal/login/biz_demo").text
    name = html.escape(language_name(language), quote=False)
    assert f'<option value="{language}" lang="{language_tag(language)}">{name}</option>' in page


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_browsers_language_chooses_before_sign_in(shop: Flask, language: str) -> None:
    # A regional variant ("es-MX", "ar-EG") gets the language's catalogue.
    for header in (language, f"{language}-ZZ,{language};q=0.9,en;q=0.5", f"{language}-419"):
        page = shop.test_client().get("/portal/login/biz_demo", headers={"Accept-Language": header})
        assert _html_lang(page.text) == (language_tag(language), text_direction(language)), header
        assert not tells_for(language).find(page_texts(page.text))


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_english_is_left_on_any_page(shop: Flask, language: str) -> None:
    tells = tells_for(language)
    problems: list[str] = []
    walked = 0
    for customer in CUSTOMERS:
        client = shop.test_client()
        sign_in(shop, client, customer)
        _pick(client, language)
        # Saved on the customer: it beats the browser's English from now on.
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en-US,en;q=0.9"
        pages = _walk(client, ("/portal/", "/portal/no-such-page", "/portal/invoices/inv_not_theirs"))
        pages["(error 404)"] = client.get("/portal/no-such-page").text
        walked += len(pages)
        for path, text in pages.items():
            assert _html_lang(text) == (language_tag(language), text_direction(language)), path
            problems.extend(f"{customer} {path}: {found}" for found in tells.find(page_texts(text)))
    anonymous = shop.test_client()
    anonymous.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    for path in ("/portal/login/biz_demo", "/portal/session/not-a-token", "/portal/profile"):
        text = anonymous.get(path, follow_redirects=True).text
        problems.extend(f"signed out {path}: {found}" for found in tells.find(page_texts(text)))
    assert walked >= 40, f"only {walked} pages walked: the walk lost its way"
    assert not problems, "English left on the page:\n" + "\n".join(sorted(set(problems)))


def test_the_walk_finds_english(shop: Flask) -> None:
    # The detector itself: an English page is caught, word for word.
    client = shop.test_client()
    sign_in(shop, client, "cus_demo_chen")
    _pick(client, "en")
    english = page_texts(client.get("/portal/").text)
    for language in LANGUAGES:
        found = tells_for(language).find(english)
        assert any("Overview" in item for item in found), found
        assert not tells_for(language).find(["Acme Software", "4242", "2026-12-07"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_emails_have_no_english_left(tmp_path_factory: pytest.TempPathFactory, language: str) -> None:
    from datetime import datetime, timezone

    from flask_customer_portal.emails import render_message
    from flask_customer_portal.state import get_state
    from flask_customer_portal.testing import MemoryMailer

    mailer = MemoryMailer()
    app = make_portal_app(f"sqlite:///{tmp_path_factory.mktemp('mail') / 'portal.db'}", mailer=mailer)
    tells = tells_for(language)
    try:
        # A login email, in the language of the browser that asked for it.
        client = app.test_client()
        headers = {"Accept-Language": language}
        page = client.get("/portal/login/biz_demo", headers=headers)
        client.post(
            "/portal/login/biz_demo",
            data={"csrf_token": csrf_token_from(page.text), "email": "chen@example.com"},
            headers=headers,
        )
        get_state(app).wait_for_background_tasks()
        messages = list(mailer.outbox)
        # A personal link, in the customer's saved language.
        with app.app_context():
            state = get_state(app)
            chen = state.storage.set_locale("cus_demo_chen", language)
            assert chen is not None
            messages.append(
                render_message(
                    state,
                    "session_link",
                    to=chen.email,
                    customer=chen,
                    link=f"{BASE_URL}/portal/session/token",
                    expires_at=datetime(2026, 12, 24, 12, 0, tzinfo=timezone.utc),
                )
            )
    finally:
        close_app(app)
    assert len(messages) == 2
    for message in messages:
        texts = [message.subject, *(_normal_lines(message.text)), *page_texts(message.html or "")]
        assert not tells.find(texts), (message.subject, tells.find(texts))
        assert f'lang="{language_tag(language)}"' in (message.html or "")


def _normal_lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_csv_export_speaks_the_language(shop: Flask, language: str) -> None:
    import csv
    import io

    client = shop.test_client()
    sign_in(shop, client, "cus_demo_ava")
    _pick(client, language)
    response = client.get("/portal/invoices/export.csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    header, statuses = rows[0], {cell for row in rows[1:] for cell in row}
    assert not tells_for(language).find(header), header
    assert not tells_for(language).find(sorted(statuses)), statuses
