"""Every page, in every shipped language, as a reader sees it on a phone.

One demo shop of the test's own (the language is saved on the customer):
Ava picks each language in the picker, then the portal is walked from the
overview by its own links. On each page the visible text (``innerText``,
plus labels, titles and placeholders) may hold no English
(:mod:`untranslated`), ``<html lang dir>`` is the language's, and nothing
scrolls sideways at 375 px, right to left included.

``PORTAL_SCREENSHOTS=<dir>`` saves a full-page screenshot of each page
(``<dir>/<lang>-<page>.png``), for looking at the layout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from untranslated import tells_for, translated_languages

from flask_customer_portal.i18n import language_tag, text_direction

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTH = 375
_NOT_PAGES = re.compile(r"/(pdf|static/.*|[^/]*\.(csv|zip|ics))$")
_MAX_PAGES = 25
#: Pages of one kind (an invoice, a subscription) after which others of
#: that kind are skipped: the walk is about words, not about every record.
_PER_KIND = 2
_RECORD_ID = re.compile(r"^[a-z]+_[A-Za-z0-9_]+$")


def _kind(path: str) -> str:
    return "/".join("{id}" if _RECORD_ID.match(part) else part for part in path.split("/"))


_VISIBLE_TEXT = """() => {
  const texts = document.body.innerText.split('\\n');
  for (const el of document.querySelectorAll('[aria-label], [title], [placeholder], img[alt]')) {
    if (el.closest('[lang]:not(html)') && el.closest('[lang]:not(html)').lang !== document.documentElement.lang) continue;
    for (const name of ['aria-label', 'title', 'placeholder', 'alt']) {
      const value = el.getAttribute(name);
      if (value) texts.push(value);
    }
  }
  // The picker lists each language in itself: "English" is not English left over.
  const own = [...document.querySelectorAll('option[lang]')].map(o => o.textContent.trim());
  return texts.map(t => t.replace(/\\s+/g, ' ').trim()).filter(t => t && !own.includes(t));
}"""


def _links(page: Any, server_url: str) -> list[str]:
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    base = urlsplit(server_url).netloc
    found = []
    for href in hrefs:
        parts = urlsplit(href)
        if parts.netloc == base and parts.path.startswith("/portal/") and not _NOT_PAGES.search(parts.path):
            found.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return found


def _no_sideways_scroll(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_every_page_in_every_language_on_a_phone(browser: Any, own_live_server: Any) -> None:
    shots = Path(os.environ["PORTAL_SCREENSHOTS"]) if os.environ.get("PORTAL_SCREENSHOTS") else None
    server = own_live_server
    context = browser.new_context(
        base_url=server.url, locale="en-US", viewport={"width": WIDTH, "height": 800}
    )
    context.set_default_timeout(5_000)
    page = context.new_page()
    problems: list[str] = []
    try:
        page.goto(server.magic_link("cus_demo_ava"))
        with page.expect_navigation():
            page.get_by_role("button", name="Open my portal").click()
        for language in translated_languages():
            tells = tells_for(language)
            page.goto("/portal/")
            page.locator("#portal-language").select_option(language)
            with page.expect_navigation():
                page.locator("form[action$='/language'] button[type=submit]").click()
            direction = text_direction(language)
            tag = language_tag(language)  # "pt-BR" for the pt_BR catalogue
            seen: set[str] = set()
            kinds: dict[str, int] = {}
            queue = ["/portal/"]
            while queue and len(seen) < _MAX_PAGES:
                target = queue.pop(0)
                path = urlsplit(target).path
                if path in seen or kinds.get(_kind(path), 0) >= _PER_KIND:
                    continue
                seen.add(path)
                kinds[_kind(path)] = kinds.get(_kind(path), 0) + 1
                response = page.goto(target)
                if response is None or response.status != 200:
                    continue
                html = page.locator("html")
                if (html.get_attribute("lang"), html.get_attribute("dir")) != (tag, direction):
                    problems.append(f"{language} {path}: <html lang dir> is not {tag} {direction}")
                problems.extend(
                    f"{language} {path}: {found}" for found in tells.find(page.evaluate(_VISIBLE_TEXT))
                )
                width = _no_sideways_scroll(page)
                if width > WIDTH:
                    problems.append(f"{language} {path}: scrolls sideways ({width} px wide)")
                if shots is not None:
                    shots.mkdir(parents=True, exist_ok=True)
                    name = path.strip("/").replace("/", "_") or "overview"
                    page.screenshot(path=str(shots / f"{language}-{name}.png"), full_page=True)
                queue.extend(link for link in _links(page, server.url) if urlsplit(link).path not in seen)
            assert len(seen) >= 10, f"{language}: only {len(seen)} pages walked"
    finally:
        context.close()
    assert not problems, "\n".join(problems)
