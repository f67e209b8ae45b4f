"""Phone first, measured in Chromium: the billing history is one compact row
per invoice, every section of the navigation is on screen with the current
one marked and its focus ring whole, and no page of the demo scrolls
sideways at 320 px or breaks a word in the middle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from browser_helpers import open_portal
from playwright.sync_api import expect
from portal_pages import DEMO_CUSTOMERS, Page, signed_in_pages

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NARROWEST = 320
PHONE = 375
DESKTOP = 1280
#: What one invoice adds to the billing history on a phone: two short
#: lines (number and amount, date and status). The stacked six-line block
#: it replaces took about 190 px, so that Ava's fifteen invoices made a
#: page of 3,750 px.
MAX_HEIGHT_PER_INVOICE_PX = 72
#: Ava's whole billing history page on a phone, header and footer included.
MAX_PAGE_HEIGHT_PX = 2_000
#: A word narrower than this share of the screen always fits on a line of
#: its own, so finding it split over two lines means the layout squeezed it.
SHORT_WORD_SHARE = 0.6

#: Words (runs of letters and digits) split over two lines, among those
#: short enough to fit a line; the text around each.
BROKEN_WORDS_JS = """(share) => {
  const limit = window.innerWidth * share;
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    if (!element || element.closest('script, style, option, .visually-hidden')) continue;
    for (const match of node.data.matchAll(/[\\p{L}\\p{N}]{2,}/gu)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const rects = [...range.getClientRects()].filter((rect) => rect.width > 0);
      if (new Set(rects.map((rect) => Math.round(rect.bottom))).size < 2) continue;
      const width = rects.reduce((sum, rect) => sum + rect.width, 0);
      if (width <= limit) found.push(`${match[0]} in <${element.tagName.toLowerCase()} class="${element.className}">`);
    }
  }
  return found;
}"""

#: Where the focused element's outline is drawn, and whether the viewport
#: or an ancestor that clips its overflow cuts into it.
FOCUS_RING_JS = """() => {
  const element = document.activeElement;
  const style = getComputedStyle(element);
  const grow = parseFloat(style.outlineWidth) + parseFloat(style.outlineOffset);
  const rect = element.getBoundingClientRect();
  const ring = {left: rect.left - grow, right: rect.right + grow, top: rect.top - grow, bottom: rect.bottom + grow};
  const problems = [];
  if (style.outlineStyle === 'none' || !(parseFloat(style.outlineWidth) > 0)) problems.push('no outline');
  if (ring.left < 0 || ring.right > window.innerWidth) problems.push(`outside the viewport: ${JSON.stringify(ring)}`);
  for (let box = element.parentElement; box; box = box.parentElement) {
    const boxStyle = getComputedStyle(box);
    if (boxStyle.overflowX === 'visible' && boxStyle.overflowY === 'visible') continue;
    const outer = box.getBoundingClientRect();
    if (ring.left < outer.left || ring.right > outer.right || ring.top < outer.top || ring.bottom > outer.bottom) {
      problems.push(`clipped by <${box.tagName.toLowerCase()} class="${box.className}">`);
    }
  }
  return {text: element.textContent.trim(), inNav: !!element.closest('nav.portal-nav'), problems};
}"""


@pytest.fixture
def page_at(browser: Any, own_live_server: Any) -> Callable[..., Any]:
    """``with page_at(width) as page``: a fresh context that wide, on a shop
    of the test's own (the walk signs customers in, which adds sessions)."""

    @contextmanager
    def make(width: int, *, phone: bool = True) -> Iterator[Any]:
        context = browser.new_context(
            base_url=own_live_server.url,
            locale="en-US",
            viewport={"width": width, "height": 740 if phone else 800},
            device_scale_factor=2 if phone else 1,
            is_mobile=phone,
            has_touch=phone,
        )
        context.set_default_timeout(5_000)
        try:
            yield context.new_page()
        finally:
            context.close()

    return make


def _sign_in(page: Any, server: Any, customer_id: str) -> None:
    open_portal(page, server.magic_link(customer_id))


def _layout_problems(page: Any, width: int) -> list[str]:
    problems = []
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    # A phone widens its layout viewport to fit what is too wide (and zooms
    # the page out), so innerWidth grows with scrollWidth.
    inner_width = page.evaluate("window.innerWidth")
    if max(scroll_width, inner_width) > width:
        problems.append(f"scrolls sideways: scrollWidth {scroll_width}, innerWidth {inner_width} > {width}")
    problems.extend(f"word broken: {word}" for word in page.evaluate(BROKEN_WORDS_JS, SHORT_WORD_SHARE))
    return problems


def _visit(page: Any, visited: Page, width: int) -> list[str]:
    response = page.goto(visited.path)
    assert response is not None
    assert response.status == visited.status, (visited.name, response.status)
    return [f"{visited.name}: {problem}" for problem in _layout_problems(page, width)]


def test_the_billing_history_is_a_compact_row_per_invoice(
    page_at: Any, own_live_server: Any, axe_check: Any
) -> None:
    with page_at(PHONE) as phone:
        _sign_in(phone, own_live_server, "cus_demo_ava")
        phone.goto("/portal/invoices")
        rows = phone.locator("table.invoice-list tbody tr")
        count = rows.count()
        assert count >= 12
        heights = [box["height"] for box in (rows.nth(i).bounding_box() for i in range(count)) if box]
        page_height = phone.evaluate("document.documentElement.scrollHeight")
        # What the invoices add to the page: its height with and without them.
        without_rows = phone.evaluate(
            """() => {
              const body = document.querySelector('table.invoice-list tbody');
              body.style.display = 'none';
              const height = document.documentElement.scrollHeight;
              body.style.display = '';
              return height;
            }"""
        )
        per_invoice = (page_height - without_rows) / count
        print(
            f"billing history at {PHONE} px: {count} invoices, page {page_height} px, "
            f"{per_invoice:.0f} px per invoice (rows {min(heights):.0f}-{max(heights):.0f} px)"
        )
        assert per_invoice <= MAX_HEIGHT_PER_INVOICE_PX, per_invoice
        assert max(heights) <= MAX_HEIGHT_PER_INVOICE_PX, heights
        assert page_height <= MAX_PAGE_HEIGHT_PX, page_height
        axe_check(phone)
        # Each row shows date, number, amount and status, and a tap anywhere
        # on it opens the invoice.
        first = rows.first
        for cell in (
            ".invoice-row-date",
            ".invoice-row-number",
            ".invoice-row-amount",
            ".invoice-row-status",
        ):
            expect(first.locator(cell)).to_be_visible()
        number = first.locator(".invoice-row-number").inner_text()
        box = first.bounding_box()
        assert box is not None
        with phone.expect_navigation():
            phone.mouse.click(box["x"] + box["width"] - 8, box["y"] + box["height"] - 6)
        expect(phone.get_by_role("heading", level=1)).to_have_text(f"Invoice {number}")

    with page_at(DESKTOP, phone=False) as desktop:
        _sign_in(desktop, own_live_server, "cus_demo_ava")
        desktop.goto("/portal/invoices")
        # The wide screen keeps the table, with its header and every column.
        expect(desktop.locator("table.invoice-list thead")).to_be_visible()
        row = desktop.locator("table.invoice-list tbody tr").first
        assert row.evaluate("row => getComputedStyle(row).display") == "table-row"
        expect(row.locator(".invoice-row-description")).to_be_visible()


@pytest.mark.parametrize("width", [NARROWEST, PHONE])
def test_every_section_is_on_screen_and_focus_rings_are_whole(
    page_at: Any, own_live_server: Any, axe_check: Any, width: int
) -> None:
    with page_at(width) as phone:
        _sign_in(phone, own_live_server, "cus_demo_budi")  # Indonesian: the longest labels
        phone.goto("/portal/invoices")
        nav = phone.get_by_role("navigation", name="Portal")
        links = nav.get_by_role("link")
        assert links.count() == 6
        for i in range(links.count()):
            box = links.nth(i).bounding_box()
            assert box is not None
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (links.nth(i).inner_text(), box)
            assert box["height"] >= 44, (links.nth(i).inner_text(), box)
        assert not nav.evaluate("nav => nav.scrollWidth > nav.clientWidth"), "the navigation scrolls"
        current = nav.locator("[aria-current]")
        expect(current).to_have_count(1)
        expect(current).to_have_text("Riwayat Penagihan")
        # The current section looks different from the others, not only to a
        # screen reader.
        look = (
            "a => { const s = getComputedStyle(a); return [s.backgroundColor, s.color, s.fontWeight].join() }"
        )
        assert current.evaluate(look) != nav.locator("a:not([aria-current])").first.evaluate(look)
        assert not [w for w in phone.evaluate(BROKEN_WORDS_JS, SHORT_WORD_SHARE) if "<a " in w]
        axe_check(phone)

        # Tab from the top of the page through the whole navigation.
        phone.locator("body").focus()
        seen = []
        for _ in range(20):
            phone.keyboard.press("Tab")
            focused = phone.evaluate(FOCUS_RING_JS)
            if focused["inNav"]:
                seen.append(focused["text"])
                assert not focused["problems"], focused
            elif seen:
                break
        assert len(seen) == 6, seen


def test_the_layout_check_finds_what_it_looks_for(page_at: Any, own_live_server: Any) -> None:
    """A squeezed word and a box wider than the screen are both reported."""
    with page_at(NARROWEST) as phone:
        phone.goto("/portal/login/biz_demo")
        assert _layout_problems(phone, NARROWEST) == []
        # Styled through the CSSOM: the portal's Content-Security-Policy
        # ignores style attributes.
        phone.evaluate(
            """() => {
              const main = document.querySelector('main');
              const word = main.appendChild(document.createElement('p'));
              word.textContent = 'Langganan';
              Object.assign(word.style, {width: '3em', overflowWrap: 'anywhere'});
              const wide = main.appendChild(document.createElement('div'));
              wide.textContent = 'wide';
              wide.style.width = '400px';
            }"""
        )
        problems = _layout_problems(phone, NARROWEST)
        assert len(problems) == 2, problems
        assert problems[0].startswith("scrolls sideways: scrollWidth ")
        assert problems[1].startswith("word broken: Langganan in <p")


def test_no_page_scrolls_sideways_or_breaks_words_at_320_px(page_at: Any, own_live_server: Any) -> None:
    problems: list[str] = []
    visited = 0
    for customer_id in DEMO_CUSTOMERS:
        pages = signed_in_pages(own_live_server.app, customer_id)
        with page_at(NARROWEST) as phone:
            _sign_in(phone, own_live_server, customer_id)
            for page in pages:
                problems.extend(_visit(phone, page, NARROWEST))
                visited += 1
    with page_at(NARROWEST) as phone:
        signed_out = [
            Page("signed out", "/portal/login/biz_demo", 200, ""),
            Page("signed out", "/portal/no-such-page", 404, ""),
            Page("signed out", "/portal/logout", 405, ""),
            Page("signed out", "/portal/session/not-a-token", 404, ""),
        ]
        for page in signed_out:
            problems.extend(_visit(phone, page, NARROWEST))
            visited += 1
        # The link page, and "check your email" after asking for a link.
        phone.goto(own_live_server.magic_link("cus_demo_chen"))
        problems.extend(f"link page: {p}" for p in _layout_problems(phone, NARROWEST))
        phone.goto("/portal/login/biz_demo")
        phone.get_by_label("Email").fill("chen@example.com")
        with phone.expect_navigation():
            phone.locator("form button[type=submit]").last.click()
        problems.extend(f"link sent: {p}" for p in _layout_problems(phone, NARROWEST))
        visited += 2
    print(f"{visited} pages checked at {NARROWEST} px")
    assert visited >= 50, visited
    assert not problems, "\n".join(problems)
