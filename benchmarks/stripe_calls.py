"""Stripe API requests per portal page, against localstripe.

Each page is read twice in a row ("first" and "again") by a signed-in
customer with a short and a long billing history; every request the Stripe
SDK sends is counted by its HTTP client (``tests/stripe_calls_support.py``).
Two set-ups: the default (reads shared within a request only) and the
cache of list reads (``CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS``, here in the
process's memory with ``CUSTOMER_PORTAL_SINGLE_PROCESS = True``).
Goal: a small number per page, the same for both customers but for the
invoice list, read 100 invoices a request (Stripe's largest page).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.stripe_calls_support import (
    PAGES,
    BusyCustomer,
    calls_per_page,
    counting_client,
    kinds,
    make_counted_portal,
    seed_busy_customer,
    signed_in,
)

SERVER = Path(__file__).resolve().parent.parent / "tests" / "localstripe_server.py"

#: (invoices, subscriptions, cards) of the two customers.
SIZES = ((5, 2, 2), (150, 6, 6))
INVOICE_PAGES = "GET /v1/invoices"
SETUPS: dict[str, dict[str, object]] = {
    "default": {},
    "cached": {"CUSTOMER_PORTAL_SINGLE_PROCESS": True},
}


@dataclass(frozen=True)
class PageCalls:
    page: str
    setup: str
    size: tuple[int, int, int]
    first: int
    again: int
    invoice_pages: int
    """Requests for pages of the invoice list among ``first``."""


@dataclass(frozen=True)
class StripeCallsResult:
    calls: tuple[PageCalls, ...]

    def of(self, setup: str, size: tuple[int, int, int]) -> dict[str, PageCalls]:
        return {c.page: c for c in self.calls if c.setup == setup and c.size == size}

    def flat(self) -> bool:
        """Whether every page makes as many requests for the long history as
        for the short one, pages of the invoice list aside."""
        for setup in SETUPS:
            small, large = (self.of(setup, size) for size in (min(self.sizes), max(self.sizes)))
            for page in small:
                if (
                    small[page].first - small[page].invoice_pages
                    != large[page].first - large[page].invoice_pages
                ):
                    return False
        return True

    @property
    def sizes(self) -> list[tuple[int, int, int]]:
        return sorted({c.size for c in self.calls})


def _start_localstripe() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError("localstripe did not start (a dev dependency: pip install -e .[dev])")
    return process, f"http://127.0.0.1:{int(line.split()[1])}"


def _measure(url: str, size: tuple[int, int, int], tmp: Path) -> list[PageCalls]:
    with requests.delete(f"{url}/_config/data", timeout=10) as response:
        response.raise_for_status()
    client, http = counting_client(url)
    invoices, subscriptions, cards = size
    customer: BusyCustomer = seed_busy_customer(
        client, invoices=invoices, subscriptions=subscriptions, cards=cards
    )
    found: list[PageCalls] = []
    for setup, config in SETUPS.items():
        # A new client each time: the products it has read are not carried over.
        client, http = counting_client(url)
        app = make_counted_portal(
            f"sqlite:///{tmp / f'{setup}-{invoices}.db'}",
            client,
            {"ava": customer.customer_id, "budi": customer.other_customer_id},
            **config,
        )
        try:
            browser = signed_in(app)
            first = calls_per_page(browser, http, customer)
            again = calls_per_page(browser, http, customer)
        finally:
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()
        found.extend(
            PageCalls(
                page, setup, size, len(first[page]), len(again[page]), kinds(first[page])[INVOICE_PAGES]
            )
            for page in PAGES
        )
    return found


def run(*, sizes: tuple[tuple[int, int, int], ...] = SIZES) -> StripeCallsResult:
    process, url = _start_localstripe()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            calls = [c for size in sizes for c in _measure(url, size, Path(tmp))]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    result = StripeCallsResult(tuple(calls))
    print("\n## Stripe API requests per page (localstripe; first view / the same page again)")
    names = [f"{i} inv, {s} subs, {c} cards" for i, s, c in result.sizes]
    print(f"| Page | {' | '.join(f'{setup}: {name}' for setup in SETUPS for name in names)} |")
    print(f"| --- |{' --- |' * (len(SETUPS) * len(names))}")
    for page in PAGES:
        cells = []
        for setup in SETUPS:
            for size in result.sizes:
                c = result.of(setup, size)[page]
                cells.append(f"{c.first} / {c.again}")
        print(f"| {page} | {' | '.join(cells)} |")
    print(
        "same requests for the short and the long history (one more per 100 invoices listed): "
        f"{'yes' if result.flat() else 'NO'}"
    )
    return result
