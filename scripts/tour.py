"""The screenshot tour of the docs (docs/tour.rst): every page of the demo
shop's portal, as Ava, Budi, Chen and Dewi and as a visitor who is not
signed in, at 375 px (a phone) and 1280 px (a desktop), then the main pages
in Arabic (right to left) on a phone.

    make tour                      # or: .venv/bin/python scripts/tour.py

It starts the example app with fresh demo data on a free loopback port
(mail goes to an SMTP sink of its own), drives Debian's Chromium with
Playwright, writes the images to docs/_static/tour/ (palette PNGs: a few
tens of kilobytes each) and docs/tour.rst from :data:`PAGES`.

:data:`PAGES` and :func:`visit` are also what the browser tests sweep
(tests/browser/test_every_page_browser.py), so the tour and the tests
cover the same pages.
"""

from __future__ import annotations

import argparse
import io
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "_static" / "tour"
TOUR_RST = ROOT / "docs" / "tour.rst"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
#: (name, viewport width, viewport height) of the two sizes every page is seen at.
VIEWPORTS = (("phone", 375, 740), ("desktop", 1280, 800))
#: Screenshots stop here: what is further down a long list looks the same.
MAX_HEIGHT = {"phone": 2000, "desktop": 1400}
#: Colours of the palette PNGs; the portal's flat colours need few.
COLOURS = 64
LOGIN_PATH = "/portal/login/biz_demo"


@dataclass(frozen=True)
class Page:
    """One page of the portal, and how to get to it."""

    slug: str
    """Name of its images (``<slug>-phone.png``) and of its test."""
    title: str
    """Its caption in the tour."""
    customer: str | None
    """The demo customer signed in, or ``None`` for a visitor."""
    path: str = ""
    how: str = "get"
    """``"get"``: open ``path``; ``"login_sent"``: ask for a link on the
    static login page; ``"open_link"``: open a magic link (not used up);
    ``"signed_out"``: press **Sign out**."""
    status: int = 200


AVA, BUDI, CHEN, DEWI = "cus_demo_ava", "cus_demo_budi", "cus_demo_chen", "cus_demo_dewi"

PAGES: tuple[Page, ...] = (
    # A visitor: the ways in, and the pages for a wrong address.
    Page("login", "The static sign-in link: the email form", None, LOGIN_PATH),
    Page("login-sent", "After asking for a sign-in link", None, LOGIN_PATH, how="login_sent"),
    Page("open-link", "A magic link, before it is used", AVA, how="open_link"),
    Page("link-problem", "A link that is not valid", None, "/portal/session/not-a-valid-token", status=404),
    Page("not-found", "A page that does not exist (404)", None, "/portal/no-such-page", status=404),
    Page("not-allowed", "A wrong method (405)", None, "/portal/logout", status=405),
    # Ava: an active monthly subscription, a cancelled one, invoices, licence keys.
    Page("dashboard", "Ava's overview", AVA, "/portal/"),
    Page("subscriptions", "Ava's subscriptions", AVA, "/portal/subscriptions"),
    Page("subscription", "An active subscription", AVA, "/portal/subscriptions/sub_demo_ava_sync"),
    Page(
        "subscription-cancelled",
        "A cancelled subscription",
        AVA,
        "/portal/subscriptions/sub_demo_ava_desktop",
    ),
    Page("change-plan", "Changing plan", AVA, "/portal/subscriptions/sub_demo_ava_sync/plan"),
    Page(
        "cancel-reason",
        "Cancelling: the reason",
        AVA,
        "/portal/subscriptions/sub_demo_ava_sync/cancel/reason",
    ),
    Page(
        "subscription-payment-method",
        "A subscription's card",
        AVA,
        "/portal/subscriptions/sub_demo_ava_sync/payment-method",
    ),
    Page("payment-methods", "Saved payment methods", AVA, "/portal/payment-methods"),
    Page("invoices", "Billing history", AVA, "/portal/invoices"),
    Page("invoice", "One invoice", AVA, "/portal/invoices/inv_demo_ava_sync_14"),
    Page(
        "invoice-billing-details",
        "An invoice's billing details",
        AVA,
        "/portal/invoices/inv_demo_ava_sync_14/billing-details",
    ),
    Page("license-keys", "Licence keys", AVA, "/portal/license-keys"),
    Page("license-key", "One licence key and its devices", AVA, "/portal/license-keys/lk_demo_ava_sync"),
    Page("profile", "The profile", AVA, "/portal/profile"),
    Page("billing-details", "Billing details", AVA, "/portal/profile/billing"),
    Page("sessions", "Where Ava is signed in", AVA, "/portal/sessions"),
    Page("activity", "Account activity", AVA, "/portal/activity"),
    Page(
        "not-found-signed-in",
        "A page that does not exist, signed in",
        AVA,
        "/portal/no-such-page",
        status=404,
    ),
    Page("signed-out", "After signing out", AVA, how="signed_out"),
    # Budi, in Indonesian: a subscription on hold after a declined renewal.
    Page("budi-dashboard", "Budi's overview: a payment to fix", BUDI, "/portal/"),
    Page("budi-subscriptions", "Budi's subscriptions", BUDI, "/portal/subscriptions"),
    Page("budi-subscription", "A subscription on hold", BUDI, "/portal/subscriptions/sub_demo_budi_sync"),
    Page(
        "budi-reactivate",
        "Paying the arrears with another card",
        BUDI,
        "/portal/subscriptions/sub_demo_budi_sync/payment-method",
    ),
    Page("budi-payment-methods", "Budi's saved card", BUDI, "/portal/payment-methods"),
    Page("budi-invoices", "Budi's invoices, one unpaid", BUDI, "/portal/invoices"),
    Page("budi-invoice", "An unpaid invoice", BUDI, "/portal/invoices/inv_demo_budi_sync_03"),
    Page("budi-license-keys", "Budi's licence key", BUDI, "/portal/license-keys"),
    Page("budi-license-key", "Budi's licence key and device", BUDI, "/portal/license-keys/lk_demo_budi_sync"),
    Page("budi-profile", "Budi's profile", BUDI, "/portal/profile"),
    Page("budi-billing-details", "Budi's billing details, with a tax ID", BUDI, "/portal/profile/billing"),
    Page("budi-sessions", "Where Budi is signed in", BUDI, "/portal/sessions"),
    Page("budi-activity", "Budi's activity", BUDI, "/portal/activity"),
    # Chen: signed up, bought nothing yet.
    Page("chen-dashboard", "Chen's overview: nothing bought yet", CHEN, "/portal/"),
    Page("chen-subscriptions", "No subscriptions", CHEN, "/portal/subscriptions"),
    Page("chen-invoices", "No invoices", CHEN, "/portal/invoices"),
    Page("chen-payment-methods", "No saved cards: adding one", CHEN, "/portal/payment-methods"),
    Page("chen-license-keys", "No licence keys", CHEN, "/portal/license-keys"),
    Page("chen-profile", "Chen's profile", CHEN, "/portal/profile"),
    Page("chen-billing-details", "Chen's billing details, empty", CHEN, "/portal/profile/billing"),
    Page("chen-sessions", "Where Chen is signed in", CHEN, "/portal/sessions"),
    Page("chen-activity", "Chen's activity", CHEN, "/portal/activity"),
    # Dewi: an open invoice, a free trial, a refund and a promotion code.
    Page("dewi-dashboard", "Dewi's overview", DEWI, "/portal/"),
    Page("dewi-subscriptions", "A plan and a free trial", DEWI, "/portal/subscriptions"),
    Page(
        "dewi-trial", "A subscription in its free trial", DEWI, "/portal/subscriptions/sub_demo_dewi_desktop"
    ),
    Page("dewi-invoices", "Dewi's invoices: one open, one refunded", DEWI, "/portal/invoices"),
    Page("dewi-invoice-open", "An open one-off invoice", DEWI, "/portal/invoices/inv_demo_dewi_onboarding"),
    Page(
        "dewi-invoice-refunded",
        "A refunded invoice and its credit note",
        DEWI,
        "/portal/invoices/inv_demo_dewi_desktop",
    ),
    Page(
        "dewi-change-plan",
        "Changing plan, with a field for a promotion code",
        DEWI,
        "/portal/subscriptions/sub_demo_dewi_sync/plan",
    ),
)

#: The main pages again in Arabic, right to left, on a phone only: the sign-in
#: page for a visitor whose browser asks for Arabic, then Ava's pages after
#: she picks Arabic in the language picker (her saved language is English,
#: and a saved language wins over the browser's).
RTL_LANGUAGE = "ar"
RTL_PAGES: tuple[Page, ...] = (
    Page("ar-login", "The static sign-in link", None, LOGIN_PATH),
    Page("ar-dashboard", "The overview", AVA, "/portal/"),
    Page("ar-subscriptions", "The subscriptions", AVA, "/portal/subscriptions"),
    Page("ar-subscription", "One subscription", AVA, "/portal/subscriptions/sub_demo_ava_sync"),
    Page(
        "ar-subscription-payment-method",
        "A subscription's card",
        AVA,
        "/portal/subscriptions/sub_demo_ava_sync/payment-method",
    ),
    Page("ar-payment-methods", "Saved payment methods", AVA, "/portal/payment-methods"),
    Page("ar-invoices", "Billing history", AVA, "/portal/invoices"),
    Page("ar-invoice", "One invoice", AVA, "/portal/invoices/inv_demo_ava_sync_14"),
    Page("ar-license-keys", "Licence keys", AVA, "/portal/license-keys"),
    Page("ar-profile", "The profile", AVA, "/portal/profile"),
)

#: Whose pages, in the order they are visited, and the pages of each
#: (a visitor's first; Ava's sign-out last).
AUDIENCES: tuple[str | None, ...] = (None, AVA, BUDI, CHEN, DEWI)


def pages_of(customer: str | None) -> list[Page]:
    """The pages seen as ``customer``: signed-in pages for a customer, with
    the magic-link page (``open_link``) counted as a visitor's."""
    if customer is None:
        return [p for p in PAGES if p.customer is None or p.how == "open_link"]
    return [p for p in PAGES if p.customer == customer and p.how != "open_link"]


def open_portal(page: Any, link: str) -> None:
    """Open a magic link and press **Open my portal**."""
    page.goto(link)
    with page.expect_navigation():
        page.get_by_role("button", name="Open my portal").click()
    if urlsplit(page.url).path != "/portal/":
        raise RuntimeError(f"opening a magic link led to {page.url}")


def visit(page: Any, target: Page, magic_link: Any) -> int:
    """Show ``target`` in ``page`` (signed in already when it is a
    customer's page); ``magic_link(customer_id)`` makes a link. Returns
    the status the page was answered with."""
    if target.how == "get":
        response = page.goto(target.path)
        return int(response.status)
    if target.how == "open_link":
        response = page.goto(magic_link(target.customer or AVA))
        return int(response.status)
    if target.how == "login_sent":
        page.goto(target.path)
        # An address no customer has: the page is the same for every address.
        page.get_by_label("Email address").fill("visitor@example.com")
        with page.expect_navigation():
            page.get_by_role("button", name="Email me a sign-in link").click()
        return 200
    if target.how == "signed_out":
        page.goto("/portal/")
        with page.expect_navigation():
            page.locator(".portal-signout button").click()
        return 200
    raise ValueError(f"unknown way to a page: {target.how}")


# -- the demo app ------------------------------------------------------------------


class _Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        return "250 OK"


@contextmanager
def serve_demo(directory: Path) -> Iterator[tuple[str, Any]]:
    """The example app with fresh demo data in ``directory``, served on a
    free loopback port from a thread; yields its URL and the app."""
    from aiosmtpd.controller import Controller
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    sys.path.insert(0, str(ROOT))
    from example_app import create_app
    from example_app.demo import load_demo_data
    from flask_customer_portal.state import get_state

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(_Sink(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    holder: dict[str, Any] = {}

    def late_app(environ: Any, start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    server = make_server("127.0.0.1", 0, late_app, threaded=True, request_handler=QuietHandler)
    url = f"http://127.0.0.1:{server.server_port}"
    app = create_app(
        {
            "SECRET_KEY": "tour-" + "0123456789abcdef" * 3,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{directory / 'tour.db'}",
            "CUSTOMER_PORTAL_BASE_URL": url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": smtp_port,
        }
    )
    state = get_state(app)
    with app.app_context():
        load_demo_data(state.storage)
    holder["app"] = app
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield url, app
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        state.wait_for_background_tasks()
        state.shutdown()
        smtp.stop()


def magic_link_maker(app: Any) -> Any:
    lock = threading.Lock()

    def make(customer_id: str) -> str:
        with lock, app.app_context():
            return str(app.extensions["customer_portal"].create_session(customer_id).link)

    return make


# -- the images and the page -------------------------------------------------------


def _save(png: bytes, path: Path) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        small = image.convert("RGB").quantize(
            colors=COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
        small.save(path, format="PNG", optimize=True)


def _shoot_page(page: Any, target: Page, size: str, width: int, out: Path) -> Path:
    full = page.evaluate("document.documentElement.scrollHeight")
    clip = {"x": 0, "y": 0, "width": width, "height": min(full, MAX_HEIGHT[size])}
    path = out / f"{target.slug}-{size}.png"
    _save(page.screenshot(full_page=True, clip=clip), path)
    return path


def pick_language(page: Any, code: str) -> None:
    """Choose ``code`` in the footer's language picker, as a customer would."""
    page.locator("#portal-language").select_option(code)
    with page.expect_navigation():
        page.locator(".portal-language button").click()
    direction = page.evaluate("document.documentElement.dir")
    if page.evaluate("document.documentElement.lang") != code or direction != "rtl":
        raise RuntimeError(f"picking {code} left the page in lang={code!r}, dir={direction!r}")


def shoot_rtl(browser: Any, url: str, app: Any, out: Path, only: frozenset[str] = frozenset()) -> list[Path]:
    """Screenshots of :data:`RTL_PAGES` (or of those in ``only``) in Arabic
    on a phone into ``out``. Ava's saved language becomes Arabic, so this
    comes after every other screenshot of her."""
    size, width, height = VIEWPORTS[0]
    make_link = magic_link_maker(app)
    saved: list[Path] = []
    for customer in (None, AVA):
        targets = [p for p in RTL_PAGES if p.customer == customer and (not only or p.slug in only)]
        if not targets:
            continue
        context = browser.new_context(
            base_url=url,
            # A visitor's browser asks for Arabic; Ava opens her portal in
            # English and picks Arabic, which is saved with her account.
            locale=RTL_LANGUAGE if customer is None else "en-US",
            viewport={"width": width, "height": height},
            color_scheme="light",
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        try:
            if customer is not None:
                open_portal(page, make_link(customer))
                pick_language(page, RTL_LANGUAGE)
            for target in targets:
                status = visit(page, target, make_link)
                direction = page.evaluate("document.documentElement.dir")
                if status != target.status or direction != "rtl":
                    raise RuntimeError(f"{target.slug}: {page.url} answered {status}, dir={direction!r}")
                saved.append(_shoot_page(page, target, size, width, out))
        finally:
            context.close()
    return saved


def shoot(browser: Any, url: str, app: Any, out: Path, only: frozenset[str] = frozenset()) -> list[Path]:
    """Screenshots of every page (or of those in ``only``) at both sizes
    into ``out``."""
    make_link = magic_link_maker(app)
    saved: list[Path] = []
    for size, width, height in VIEWPORTS:
        for customer in AUDIENCES:
            if only and not only & {p.slug for p in pages_of(customer)}:
                continue
            context = browser.new_context(
                base_url=url,
                locale="en-US",
                viewport={"width": width, "height": height},
                color_scheme="light",
            )
            context.set_default_timeout(10_000)
            page = context.new_page()
            try:
                if customer is not None:
                    open_portal(page, make_link(customer))
                for target in pages_of(customer):
                    status = visit(page, target, make_link)
                    if only and target.slug not in only:
                        continue
                    if status != target.status:
                        raise RuntimeError(
                            f"{target.slug}: {page.url} answered {status}, not {target.status}"
                        )
                    saved.append(_shoot_page(page, target, size, width, out))
            finally:
                context.close()
    return saved


def tour_rst() -> str:
    """docs/tour.rst for :data:`PAGES`."""
    lines = [
        ".. This file is written by scripts/tour.py (make tour); edit the script, not this file.",
        "",
        "A tour of the portal",
        "====================",
        "",
        "Every page of the portal as the demo shop shows it (``make demo``), on a",
        "phone (375 px wide) and on a desktop (1280 px), before you install",
        "anything. Ava has an active subscription, twelve months of invoices and",
        "licence keys; Budi's subscription is on hold after a declined renewal",
        "(his pages are in Indonesian); Chen has bought nothing yet; Dewi has an",
        "open invoice to pay, a free trial, a refunded purchase and a plan to",
        "change with the promotion code WELCOME10. The images",
        "are made from the demo by ``make tour`` (``scripts/tour.py``), so they",
        "show this version of the portal; long pages are cut at the bottom.",
        "",
    ]
    headings = {
        None: "Signing in",
        AVA: "Ava",
        BUDI: "Budi, in Indonesian",
        CHEN: "Chen, before buying",
        DEWI: "Dewi: an open invoice, a trial, a refund",
    }
    for customer in AUDIENCES:
        heading = headings[customer]
        lines += [heading, "-" * len(heading), ""]
        for target in pages_of(customer):
            lines += [target.title, "~" * len(target.title), ""]
            if target.how == "get":
                lines += [
                    f"``GET {target.path}``" + (f" ({target.status})" if target.status != 200 else ""),
                    "",
                ]
            lines += [
                f".. image:: _static/tour/{target.slug}-phone.png",
                f"   :alt: {target.title}, on a phone",
                "   :width: 300px",
                "",
                f".. image:: _static/tour/{target.slug}-desktop.png",
                f"   :alt: {target.title}, on a desktop",
                "",
            ]
    heading = "Right to left, in Arabic"
    lines += [
        heading,
        "-" * len(heading),
        "",
        "The main pages in Arabic on a phone: the whole layout is mirrored",
        '(``<html dir="rtl">``), so it reads from right to left. The sign-in page',
        "follows the visitor's browser (``Accept-Language: ar``); Ava's pages",
        "follow the language she picked at the foot of a page, which is saved",
        "with her account.",
        "",
    ]
    for target in RTL_PAGES:
        lines += [target.title, "~" * len(target.title), ""]
        lines += [f"``GET {target.path}``", ""]
        lines += [
            f".. image:: _static/tour/{target.slug}-phone.png",
            f"   :alt: {target.title}, in Arabic, on a phone",
            "   :width: 300px",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the images go (default: %(default)s)")
    parser.add_argument("--rst", type=Path, default=TOUR_RST, help="the page to write (default: %(default)s)")
    parser.add_argument("--chromium", default=CHROMIUM, help="Chromium's executable (default: %(default)s)")
    parser.add_argument(
        "--only", default="", help="comma-separated slugs: make these images again, keep the others"
    )
    options = parser.parse_args(argv)
    only = frozenset(filter(None, options.only.split(",")))
    unknown = only - {p.slug for p in (*PAGES, *RTL_PAGES)}
    if unknown:
        parser.error(f"no such pages: {', '.join(sorted(unknown))}")

    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="portal-tour-") as temporary:
        made = Path(temporary) / "images"
        made.mkdir()
        with serve_demo(Path(temporary)) as (url, app), sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=options.chromium, args=CHROMIUM_ARGS)
            try:
                saved: list[Path] = []
                if not only or only & {p.slug for p in PAGES}:
                    saved += shoot(browser, url, app, made, only)
                if not only or only & {p.slug for p in RTL_PAGES}:
                    saved += shoot_rtl(browser, url, app, made, only)
            finally:
                browser.close()
        # Replace the old images only once every new one is made.
        if options.out.exists() and not only:
            shutil.rmtree(options.out)
        shutil.copytree(made, options.out, dirs_exist_ok=True)
    options.rst.write_text(tour_rst() + "\n")
    total = sum(p.stat().st_size for p in options.out.iterdir())
    print(
        f"{len(saved)} images, {total / 1024:.0f} KiB, in {options.out}; "
        f"{options.rst} written; {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
