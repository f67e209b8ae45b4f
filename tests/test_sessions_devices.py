"""The sessions page and the activity history name a device the way a
person does ("Chrome on macOS"): a raw ``User-Agent`` header never shows,
whatever a browser (or a script) sends, and every time says its zone."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from flask import Flask
from test_sessions import AVA, _browser

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
ODD_AGENTS = (
    CHROME_MAC,
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "<script>alert(1)</script> SomeApp/1.0",
)


def _texts(page: str) -> str:
    """What the page shows: its text and its attribute values."""
    return html_lib.unescape(page)


def _raw_fragments(agent: str) -> list[str]:
    """Pieces of a header that only a raw copy of it would show."""
    return [piece for piece in re.split(r"[ ;()]+", agent) if "/" in piece or len(piece) > 12]


@pytest.mark.parametrize("agent", ODD_AGENTS)
def test_no_page_shows_a_raw_user_agent(app: Flask, agent: str) -> None:
    browser = _browser(app, AVA, user_agent=agent)
    for path in ("/portal/sessions", "/portal/activity", "/portal/profile"):
        shown = _texts(browser.get(path).text)
        for piece in _raw_fragments(agent):
            assert piece not in shown, (path, piece)


def test_a_device_is_named_and_its_times_carry_their_zone(app: Flask) -> None:
    _browser(app, AVA, user_agent=CHROME_MAC)
    other = _browser(app, AVA, user_agent="curl/8.5.0")
    page = other.get("/portal/sessions").text
    assert "Chrome on macOS" in page
    assert "Unknown browser" in page
    facts = re.findall(r"<dd>(?:<time[^>]*>)?([^<]*)(?:</time>)?</dd>", page)
    times = [fact for fact in facts if re.search(r"\d{1,2}:\d{2}", fact)]
    assert times, facts
    # Ava's zone is Los Angeles: every time says which clock it is on, and
    # carries the instant for machines, as the activity page's do.
    assert all(re.search(r"\b(PST|PDT)\b", fact) for fact in times), times
    stamped = re.findall(
        r'<dd><time datetime="(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)">[^<]+</time></dd>', page
    )
    assert len(stamped) == 3, page  # signed in twice, last active once ("Now" for this device)


def test_a_headless_chrome_is_named_as_chrome() -> None:
    from flask_customer_portal.useragent import parse_user_agent

    agent = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.6099.224 Safari/537.36"
    )
    assert (parse_user_agent(agent).browser, parse_user_agent(agent).os) == ("Chrome", "Linux")
