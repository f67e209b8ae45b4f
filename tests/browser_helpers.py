"""Steps the browser tests share (imported by ``tests/browser/test_*.py``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

__all__ = ["assert_no_horizontal_scroll", "open_portal"]


def open_portal(page: Any, link: str) -> None:
    """Open a link (GET shows one button) and press "Open my portal"."""
    response = page.goto(link)
    assert response is not None
    assert response.status == 200, response.status
    with page.expect_navigation():
        page.get_by_role("button", name="Open my portal").click()
    assert urlsplit(page.url).path == "/portal/", page.url


def assert_no_horizontal_scroll(page: Any, width: int = 360) -> None:
    """Fail if the page is wider than the phone, naming the widest elements."""
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    if scroll_width > width:
        wide = page.evaluate(
            """(width) => [...document.querySelectorAll('body *')]
                .filter(el => el.getBoundingClientRect().right > width + 0.5)
                .slice(0, 5)
                .map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : '')
                     + ' right=' + Math.round(el.getBoundingClientRect().right))""",
            width,
        )
        pytest.fail(f"page scrolls sideways: scrollWidth {scroll_width} > {width}; widest: {wide}")
