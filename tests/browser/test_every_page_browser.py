"""Every page of the demo, in Chromium, at 375 px and 1280 px, in the light
and the dark theme: the answer it should give, no sideways scrolling, and no
serious or critical axe-core violation.

The pages are the screenshot tour's (``scripts/tour.py``: Ava, Budi and Chen
signed in, and a visitor's sign-in, link and error pages), so the images in
the docs and this sweep cover the same ground. One test per size, theme and
audience signs in once and walks that audience's pages, reporting every
problem it meets, not only the first. With the brand settings, one more test
proves that the inline accent style gets past the Content-Security-Policy.

Set ``PORTAL_SCREENSHOTS=/some/dir`` to keep a screenshot of every page seen.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import open_portal

from scripts.tour import AUDIENCES, PAGES, pages_of, visit

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (375, 1280)
SCHEMES = ("light", "dark")
#: The page background of each theme (portal.css, portal-dark.css).
BACKGROUND = {"light": "rgb(244, 245, 247)", "dark": "rgb(13, 17, 23)"}
FAILING_IMPACTS = ("serious", "critical")


@pytest.fixture(scope="session")
def axe_script() -> str:
    from axe_playwright_python.sync_playwright import Axe

    return str(Axe().axe_script)


def _axe_problems(page: Any) -> list[str]:
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    problems = []
    for violation in results["violations"]:
        if violation.get("impact") in FAILING_IMPACTS:
            targets = "; ".join(", ".join(map(str, node["target"])) for node in violation["nodes"][:3])
            problems.append(
                f"axe [{violation['impact']}] {violation['id']}: {violation['help']} at {targets}"
            )
    return problems


def _overflow(page: Any, width: int) -> list[str]:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    if scroll_width <= width:
        return []
    wide = page.evaluate(
        """(width) => [...document.querySelectorAll('body *')]
            .filter(el => el.getBoundingClientRect().right > width + 0.5)
            .slice(0, 3)
            .map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''))""",
        width,
    )
    return [f"scrolls sideways: {scroll_width} px wide; widest {wide}"]


def _audience_id(customer: str | None) -> str:
    return customer.removeprefix("cus_demo_") if customer else "visitor"


def test_the_sweep_covers_every_page_of_the_tour() -> None:
    swept = [p.slug for customer in AUDIENCES for p in pages_of(customer)]
    assert sorted(swept) == sorted(p.slug for p in PAGES)
    assert len(set(swept)) == len(swept)


@pytest.mark.parametrize("customer", AUDIENCES, ids=_audience_id)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS, ids=lambda w: f"{w}px")
def test_every_page(
    browser: Any, live_server: Any, axe_script: str, width: int, scheme: str, customer: str | None
) -> None:
    context = browser.new_context(
        base_url=live_server.url,
        locale="en-US",
        viewport={"width": width, "height": 800},
        color_scheme=scheme,
        is_mobile=width < 500,
        has_touch=width < 500,
    )
    context.set_default_timeout(10_000)
    # Injected into every document once, instead of evaluated page by page.
    context.add_init_script(axe_script)
    shots = os.environ.get("PORTAL_SCREENSHOTS")
    problems: list[str] = []
    seen = 0
    try:
        page = context.new_page()
        if customer is not None:
            open_portal(page, live_server.magic_link(customer))
        for target in pages_of(customer):
            found: list[str] = []
            status = visit(page, target, live_server.magic_link)
            if status != target.status:
                found.append(f"answered {status}, not {target.status}")
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            if background != BACKGROUND[scheme]:
                found.append(f"the {scheme} theme is not applied: the page is {background}")
            found += _overflow(page, width)
            found += _axe_problems(page)
            if shots:
                page.screenshot(path=str(Path(shots) / f"{target.slug}-{width}-{scheme}.png"), full_page=True)
            problems += [f"{target.slug} ({page.url}): {problem}" for problem in found]
            seen += 1
    finally:
        context.close()
    assert seen == len(pages_of(customer))
    assert not problems, f"{len(problems)} problem(s) at {width} px, {scheme}:\n" + "\n".join(problems)


def test_the_brand_colours_reach_the_page_past_the_csp(
    configured_phone: Callable[..., Any], axe_script: str
) -> None:
    """The inline style with the accents is allowed by its hash: links take
    the configured colour in each theme, and axe still finds nothing."""
    purple, lilac = "#6d28d9", "#c4b5fd"
    with configured_phone(
        CUSTOMER_PORTAL_BRAND_ACCENT_COLOR=purple, CUSTOMER_PORTAL_BRAND_ACCENT_COLOR_DARK=lilac
    ) as (page, server):
        blocked: list[str] = []
        page.on(
            "console",
            lambda message: blocked.append(message.text) if "Content Security" in message.text else None,
        )
        page.context.add_init_script(axe_script)
        open_portal(page, server.magic_link("cus_demo_ava"))
        for scheme, rgb in (("light", "rgb(109, 40, 217)"), ("dark", "rgb(196, 181, 253)")):
            page.emulate_media(color_scheme=scheme)
            page.goto("/portal/invoices")
            link = page.locator("main a").first
            assert link.evaluate("a => getComputedStyle(a).color") == rgb, scheme
            assert _axe_problems(page) == [], scheme
        assert blocked == []
