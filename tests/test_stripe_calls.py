"""Stripe API requests per page, and the reuse of a customer's reads.

Against localstripe, every request the SDK sends is counted at its HTTP
client (``tests/stripe_calls_support.py``): each page makes a fixed handful
for a customer with many invoices, subscriptions and cards (one request per
invoice or per subscription fails here). With a cache (the process's memory
when the portal runs as one process, or one every worker shares) pages
reuse the reads, and a webhook or the customer's own change shows on the
next page.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe
from flask import Flask
from stripe_calls_support import (
    PAGES,
    WEBHOOK_SECRET,
    BusyCustomer,
    CountingHTTPClient,
    calls_per_page,
    counting_client,
    kinds,
    make_counted_portal,
    seed_busy_customer,
    signed_in,
)
from stripe_support import RecordedStripe, ScriptedStripe

from flask_customer_portal.contrib.stripe import MemoryReadCache
from flask_customer_portal.contrib.stripe import _cache as cache_module
from flask_customer_portal.contrib.stripe._cache import CustomerReads
from flask_customer_portal.errors import ConfigurationError
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import csrf_token_from

SUBSCRIPTIONS = "GET /v1/subscriptions"
CARDS = "GET /v1/payment_methods"
CUSTOMER = "GET /v1/customers/{id}"
PRODUCTS = "GET /v1/products"
INVOICES = "GET /v1/invoices"
INVOICE = "GET /v1/invoices/{id}"
SUBSCRIPTION = "GET /v1/subscriptions/{id}"
#: The subscriptions with their cards and the customer's default: one read, shared.
SUBSCRIPTION_READS = Counter({SUBSCRIPTIONS: 1, CARDS: 1, CUSTOMER: 1})
NO_CACHE = {"CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS": 0}
ONE_PROCESS = {"CUSTOMER_PORTAL_SINGLE_PROCESS": True}


@pytest.fixture
def counted(
    localstripe_url: str, localstripe: stripe.StripeClient
) -> tuple[stripe.StripeClient, CountingHTTPClient]:
    return counting_client(localstripe_url)


@pytest.fixture
def busy(localstripe: stripe.StripeClient) -> BusyCustomer:
    """Ava: 30 invoices, 3 subscriptions (each of another product), 3 cards."""
    return seed_busy_customer(localstripe, invoices=30, subscriptions=3, cards=3)


def _portal(tmp_path: Path, client: stripe.StripeClient, busy: BusyCustomer, **config: Any) -> Flask:
    name = f"portal-{len(list(tmp_path.iterdir()))}.db"
    customers = {"ava": busy.customer_id, "budi": busy.other_customer_id}
    return make_counted_portal(f"sqlite:///{tmp_path / name}", client, customers, **config)


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def _count(http: CountingHTTPClient, browser: Any, path: str) -> tuple[Any, Counter[str]]:
    with http.counting() as sent:
        response = browser.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response, kinds(sent)


def _signed(payload: str) -> dict[str, str]:
    timestamp = int(time.time())
    signature = hmac.new(
        WEBHOOK_SECRET.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256
    ).hexdigest()
    return {"Stripe-Signature": f"t={timestamp},v1={signature}"}


def _deliver(
    app: Flask, event_type: str, data: dict[str, Any], previous: dict[str, Any] | None = None
) -> None:
    event: dict[str, Any] = {
        "id": f"evt_{time.monotonic_ns()}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": data, **({"previous_attributes": previous} if previous else {})},
    }
    payload = json.dumps(event)
    assert (
        app.test_client().post("/stripe/webhook", data=payload, headers=_signed(payload)).status_code == 204
    )


class PicklingCache(MemoryReadCache):
    """Keeps values pickled, as Flask-Caching's Redis and Memcached caches do."""

    def get(self, key: str) -> Any:
        found = super().get(key)
        return None if found is None else pickle.loads(found)  # noqa: S301 - this test's own bytes

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return super().set(key, pickle.dumps(value), timeout)

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return super().add(key, pickle.dumps(value), timeout)


# -- requests per page --------------------------------------------------------------------------


def test_each_page_makes_a_fixed_handful_of_requests(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
) -> None:
    client, http = counted
    apps.append(app := _portal(tmp_path, client, busy))
    browser = signed_in(app)
    first = {page: kinds(sent) for page, sent in calls_per_page(browser, http, busy).items()}
    again = {page: kinds(sent) for page, sent in calls_per_page(browser, http, busy).items()}
    # Product names are read once per process, all unknown ones in one request.
    assert first["dashboard"] == SUBSCRIPTION_READS + Counter({PRODUCTS: 1, INVOICES: 1})
    assert again["dashboard"] == SUBSCRIPTION_READS + Counter({INVOICES: 1})
    for seen in (first, again):
        assert seen["subscriptions"] == SUBSCRIPTION_READS
        assert seen["subscription"] == SUBSCRIPTION_READS
        assert seen["payment method"] == SUBSCRIPTION_READS
        assert seen["invoices"] == Counter({INVOICES: 1})
        # localstripe gives the invoice's charge: its card is named from the
        # list, read with the customer's default as everywhere.
        assert seen["invoice"] == Counter({INVOICE: 1, CARDS: 1, CUSTOMER: 1})
        assert seen["licence keys"] == seen["profile"] == Counter()


def test_a_cache_in_memory_serves_pages_again_without_requests(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
) -> None:
    client, http = counted
    apps.append(app := _portal(tmp_path, client, busy, **ONE_PROCESS))
    browser = signed_in(app)
    first = {page: len(sent) for page, sent in calls_per_page(browser, http, busy).items()}
    again = {page: len(sent) for page, sent in calls_per_page(browser, http, busy).items()}
    assert first == dict.fromkeys(PAGES, 0) | {"dashboard": 5, "invoice": 1}
    assert again == dict.fromkeys(PAGES, 0)


def test_without_a_shared_cache_several_processes_reuse_nothing_across_requests(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
) -> None:
    client, http = counted
    for config in ({}, NO_CACHE | ONE_PROCESS):
        apps.append(app := _portal(tmp_path, client, busy, **config))
        browser = signed_in(app)
        path = PAGES["subscriptions"](busy)
        _count(http, browser, path)
        assert _count(http, browser, path)[1] == SUBSCRIPTION_READS


# -- what drops the reads ---------------------------------------------------------------------


def test_a_webhook_drops_the_customers_reads(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
) -> None:
    client, http = counted
    apps.append(app := _portal(tmp_path, client, busy, **ONE_PROCESS))
    ava, budi = signed_in(app), signed_in(app, "budi")
    sub = busy.subscription_ids[0]
    path = f"/portal/subscriptions/{sub}"
    assert f"{path}/resume" not in _count(http, ava, path)[0].text
    _count(http, budi, "/portal/subscriptions")
    client.v1.subscriptions.update(sub, params={"cancel_at_period_end": True})
    # Changed at Stripe, not yet told: the page is the one read before.
    page, sent = _count(http, ava, path)
    assert sent == Counter() and f"{path}/resume" not in page.text
    _deliver(
        app,
        "customer.subscription.updated",
        {"id": sub, "object": "subscription", "customer": busy.customer_id},
    )
    page, sent = _count(http, ava, path)
    assert f"{path}/resume" in page.text
    assert sent == SUBSCRIPTION_READS
    # Another customer's reads are kept.
    assert _count(http, budi, "/portal/subscriptions")[1] == Counter()


@pytest.mark.parametrize("how", ["customer", "payment_method.detached"])
def test_events_about_the_customer_or_a_card_drop_the_reads_too(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
    how: str,
) -> None:
    client, http = counted
    apps.append(app := _portal(tmp_path, client, busy, **ONE_PROCESS))
    ava = signed_in(app)
    path = PAGES["payment method"](busy)
    assert busy.card_ids[-1] in _count(http, ava, path)[0].text
    client.v1.payment_methods.detach(busy.card_ids[-1])
    assert busy.card_ids[-1] in _count(http, ava, path)[0].text  # not told yet
    if how == "customer":
        _deliver(app, "customer.updated", {"id": busy.customer_id, "object": "customer"})
    else:
        # A detached card no longer names its customer: the event's previous attributes do.
        card = {"id": busy.card_ids[-1], "object": "payment_method", "customer": None}
        _deliver(app, "payment_method.detached", card, previous={"customer": busy.customer_id})
    page, sent = _count(http, ava, path)
    assert busy.card_ids[-1] not in page.text
    assert sent == SUBSCRIPTION_READS


def test_the_customers_own_changes_show_at_once(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
) -> None:
    client, http = counted
    apps.append(app := _portal(tmp_path, client, busy, **ONE_PROCESS))
    ava = signed_in(app)
    sub = busy.subscription_ids[0]
    path = f"/portal/subscriptions/{sub}"
    page, _sent = _count(http, ava, path)
    assert f"{path}/resume" not in page.text
    assert _count(http, ava, path)[1] == Counter()

    with http.counting() as posted:
        cancelled = ava.post(
            f"{path}/cancel", data={"csrf_token": csrf_token_from(page.text), "confirm": "yes"}
        )
    assert cancelled.status_code == 303, cancelled.status_code
    # A form reads what it changes from Stripe, whatever a page kept.
    assert kinds(posted)[SUBSCRIPTION] >= 1
    page, sent = _count(http, ava, path)
    assert f"{path}/resume" in page.text
    assert sent == SUBSCRIPTION_READS  # read again once, then reused
    assert _count(http, ava, path)[1] == Counter()
    resumed = ava.post(f"{path}/resume", data={"csrf_token": csrf_token_from(page.text)})
    assert resumed.status_code == 303, resumed.status_code
    assert f"{path}/resume" not in _count(http, ava, path)[0].text

    card = busy.card_ids[-1]
    page, _sent = _count(http, ava, f"{path}/payment-method")
    assert card in page.text
    removed = ava.post(
        f"/portal/payment-methods/{card}/remove", data={"csrf_token": csrf_token_from(page.text)}
    )
    assert removed.status_code == 303, removed.status_code
    assert card not in _count(http, ava, f"{path}/payment-method")[0].text


def test_a_card_change_shows_at_once(recorded_stripe: RecordedStripe, tmp_path: Path) -> None:
    """localstripe has no ``default_payment_method`` on subscriptions: a scripted Stripe."""
    scripted = ScriptedStripe(recorded_stripe)
    scripted.subscription["status"] = "active"
    client, http = counting_client(recorded_stripe.url)
    app = make_counted_portal(f"sqlite:///{tmp_path / 'portal.db'}", client, {"ava": "cus_R"}, **ONE_PROCESS)
    try:
        ava = signed_in(app)
        path = "/portal/subscriptions/sub_R"
        assert "4444" not in _count(http, ava, path)[0].text
        form = _count(http, ava, f"{path}/payment-method")[0].text
        changed = ava.post(
            f"{path}/payment-method",
            data={"csrf_token": csrf_token_from(form), "intent": "change", "payment_method": "pm_new"},
        )
        assert changed.status_code == 303, changed.status_code
        page, sent = _count(http, ava, path)
        # The cards are read with the customer (which one is their default),
        # one request each, as on every page.
        assert "4444" in page.text and sent == SUBSCRIPTION_READS
    finally:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def test_workers_sharing_a_cache_see_each_others_changes(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
) -> None:
    """Two apps, each with its own store, as two workers would be; the
    cache they share stands for Redis (values pickled, as Flask-Caching does)."""
    client, http = counted
    shared = PicklingCache()
    customers = {"ava": busy.customer_id, "budi": busy.other_customer_id}
    for n in range(2):
        apps.append(
            make_counted_portal(f"sqlite:///{tmp_path / f'worker-{n}.db'}", client, customers, cache=shared)
        )
    one, two = (signed_in(app) for app in apps)
    sub = busy.subscription_ids[0]
    path = f"/portal/subscriptions/{sub}"
    pages = [path, "/portal/invoices", f"/portal/invoices/{busy.invoice_ids[0]}", f"{path}/payment-method"]
    for page_path in pages:
        _count(http, one, page_path)
    # What one worker read, the other reuses.
    for page_path in pages:
        assert _count(http, two, page_path)[1] == Counter(), page_path
    page = one.get(path).text
    assert (
        one.post(f"{path}/cancel", data={"csrf_token": csrf_token_from(page), "confirm": "yes"}).status_code
        == 303
    )
    page, sent = _count(http, two, path)
    # (Product names are each process's own: the second worker reads them once.)
    assert f"{path}/resume" in page.text and sent == SUBSCRIPTION_READS + Counter({PRODUCTS: 1})
    client.v1.subscriptions.update(sub, params={"cancel_at_period_end": False})
    _deliver(
        apps[0],
        "customer.subscription.updated",
        {"id": sub, "object": "subscription", "customer": busy.customer_id},
    )
    page, sent = _count(http, two, path)
    assert f"{path}/resume" not in page.text and sent == SUBSCRIPTION_READS


def test_reads_are_never_shared_between_customers(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
) -> None:
    client, _http = counted
    apps.append(app := _portal(tmp_path, client, busy, **ONE_PROCESS))
    ava, budi = signed_in(app), signed_in(app, "budi")
    ava_sub = busy.subscription_ids[0]
    assert ava.get(f"/portal/subscriptions/{ava_sub}").status_code == 200
    assert ava.get(f"/portal/invoices/{busy.invoice_ids[0]}").status_code == 200
    assert budi.get(f"/portal/subscriptions/{ava_sub}").status_code == 404
    assert budi.get(f"/portal/invoices/{busy.invoice_ids[0]}").status_code == 404
    budi_subs = client.v1.subscriptions.list(params={"customer": busy.other_customer_id}).data
    page = budi.get("/portal/subscriptions").text
    assert budi_subs[0].id in page and ava_sub not in page
    assert ava.get(f"/portal/subscriptions/{budi_subs[0].id}").status_code == 404


# -- the money path ---------------------------------------------------------------------------


def test_the_money_path_reads_stripe_under_a_cache(recorded_stripe: RecordedStripe, tmp_path: Path) -> None:
    scripted = ScriptedStripe(recorded_stripe)
    client, http = counting_client(recorded_stripe.url)
    app = make_counted_portal(f"sqlite:///{tmp_path / 'portal.db'}", client, {"ava": "cus_R"}, **ONE_PROCESS)
    try:
        ava = signed_in(app)
        path = "/portal/subscriptions/sub_R/payment-method"
        ava.get("/portal/subscriptions")
        for _ in range(2):
            # The amount due is read under the lock, from Stripe, every time.
            _page, sent = _count(http, ava, path)
            assert sent[SUBSCRIPTION] == 1 and sent[INVOICES] == 1
        # Another tab shows the subscription while it is being paid.
        watcher, seen = signed_in(app), []
        pay = scripted._pay

        def pay_while_watched(request: Any) -> tuple[int, dict[str, Any]]:
            seen.append(watcher.get("/portal/subscriptions/sub_R").text)
            return pay(request)

        recorded_stripe.handle("POST", "/v1/invoices/in_R/pay", pay_while_watched)
        page = ava.get(path).text
        paid = ava.post(
            path,
            data={
                "csrf_token": csrf_token_from(page),
                "intent": "reactivate",
                "payment_method": "pm_good",
                "amount_due": "3570 EUR",
            },
        )
        assert paid.status_code == 303, paid.status_code
        assert len(scripted.pays()) == 1
        assert len(seen) == 1 and "on hold" in seen[0].lower()
        # What that tab read (and kept) is dropped when the lock is released:
        # both show the subscription active on their next page.
        for browser in (ava, watcher):
            page = browser.get("/portal/subscriptions/sub_R").text
            assert "on hold" not in page.lower() and scripted.subscription["status"] == "active"
    finally:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


# -- the cache itself -------------------------------------------------------------------------


def test_memory_cache_entries_expire_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: now[0])
    cache = MemoryReadCache(max_entries=10)
    cache.set("a", 1, timeout=5)
    assert not cache.add("a", 2, timeout=5) and cache.get("a") == 1
    now[0] += 5
    assert cache.get("a") is None
    assert cache.add("a", 3, timeout=5) and cache.get("a") == 3
    assert cache.delete("a") and cache.get("a") is None
    for n in range(25):
        cache.set(f"k{n}", n, timeout=60)
    assert len(cache._entries) <= 10 and cache.get("k24") == 24


@pytest.mark.parametrize("value", [-1, 3601, "30", 2.5, True])
def test_the_cache_lifetime_is_checked(
    tmp_path: Path, counted: tuple[stripe.StripeClient, CountingHTTPClient], value: object
) -> None:
    client, _http = counted
    with pytest.raises(ConfigurationError) as raised:
        make_counted_portal(
            f"sqlite:///{tmp_path / 'p.db'}", client, {}, CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS=value
        )
    assert raised.value.key == "CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS"


def test_a_read_that_raced_a_change_is_not_kept(app: Flask) -> None:
    reads = CustomerReads(MemoryReadCache())

    def answered_before_the_change() -> str:
        reads.forget("cus_1")  # the webhook arrives while Stripe answers
        return "before"

    with app.test_request_context("/portal/"):
        assert reads.read("cus_1", "subscriptions", answered_before_the_change) == "before"
    with app.test_request_context("/portal/"):
        assert reads.read("cus_1", "subscriptions", lambda: "after") == "after"
    with app.test_request_context("/portal/"):
        assert reads.read("cus_1", "subscriptions", lambda: "again") == "after"
        assert reads.read("cus_2", "subscriptions", lambda: "budi's") == "budi's"


def test_forms_and_the_cli_reuse_nothing_across_requests(app: Flask) -> None:
    reads = CustomerReads(MemoryReadCache())
    answers = iter(range(10))
    with app.test_request_context("/portal/", method="POST"):
        first = reads.read("cus_1", "subscriptions", lambda: next(answers))
        assert reads.read("cus_1", "subscriptions", lambda: next(answers)) == first  # within the request
    with app.test_request_context("/portal/", method="POST"):
        assert reads.read("cus_1", "subscriptions", lambda: next(answers)) != first
    with app.app_context():
        assert reads.read("cus_1", "subscriptions", lambda: next(answers)) != reads.read(
            "cus_1", "subscriptions", lambda: next(answers)
        )


def test_two_apps_share_reads_in_redis_through_flask_caching(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
    redis_url: str,
) -> None:
    """The cache a merchant sets up with Flask-Caching over a real Redis
    server, one ``Cache`` per app as each worker process has its own: what
    one app read from Stripe the other serves without asking Stripe, and a
    webhook delivered to one app makes the other read Stripe again."""
    from flask_caching import Cache

    client, http = counted
    prefix = f"portal_test_{time.monotonic_ns()}_"
    customers = {"ava": busy.customer_id, "budi": busy.other_customer_id}
    caches = []
    for n in range(2):
        cache = Cache(
            config={"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_url, "CACHE_KEY_PREFIX": prefix}
        )
        app = make_counted_portal(f"sqlite:///{tmp_path / f'redis-{n}.db'}", client, customers, cache=cache)
        cache.init_app(app)
        apps.append(app)
        caches.append(cache)
    one, two = (signed_in(app) for app in apps)
    sub = busy.subscription_ids[0]
    path = f"/portal/subscriptions/{sub}"
    first, sent = _count(http, one, path)
    assert sent == SUBSCRIPTION_READS + Counter({PRODUCTS: 1})
    # Another process's Cache object, the same Redis: no Stripe read for the
    # customer's subscriptions (product names are kept per client).
    page, sent = _count(http, two, path)
    assert not sent & SUBSCRIPTION_READS and set(sent) <= {PRODUCTS}, sent
    assert f"{path}/cancel" in page.text and f"{path}/cancel" in first.text
    with apps[1].app_context():
        keys = list(caches[1].cache._write_client.scan_iter(f"{prefix}*"))  # type: ignore[attr-defined]
    assert any(busy.customer_id.encode() in key for key in keys), keys

    # Changed at Stripe behind the portal's back: the cached page is served
    # until the webhook comes, to either app.
    client.v1.subscriptions.update(sub, params={"cancel_at_period_end": True})
    page, sent = _count(http, two, path)
    assert sent == Counter() and f"{path}/resume" not in page.text
    _deliver(
        apps[0],
        "customer.subscription.updated",
        {"id": sub, "object": "subscription", "customer": busy.customer_id},
    )
    page, sent = _count(http, two, path)
    # (Product names may be read again with them.)
    assert sent - Counter({PRODUCTS: 1}) == SUBSCRIPTION_READS, sent
    assert f"{path}/resume" in page.text
    # And the first app reuses what the second read after the webhook.
    page, sent = _count(http, one, path)
    assert sent == Counter() and f"{path}/resume" in page.text
    client.v1.subscriptions.update(sub, params={"cancel_at_period_end": False})


def test_a_refund_shows_on_the_invoice_once_stripe_says_so(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
) -> None:
    client, _http = counted
    apps.append(app := _portal(tmp_path, client, busy, **ONE_PROCESS))
    ava = signed_in(app)
    invoice_id = busy.invoice_ids[0]
    path = f"/portal/invoices/{invoice_id}"
    assert "Partially refunded" not in ava.get(path).text
    charge = client.v1.invoices.retrieve(invoice_id).charge
    charge_id = charge if isinstance(charge, str) else charge.id
    client.v1.refunds.create(params={"charge": charge_id, "amount": 100})
    assert "Partially refunded" not in ava.get(path).text  # not told yet
    _deliver(app, "charge.refunded", {"id": charge_id, "object": "charge", "customer": busy.customer_id})
    assert "Partially refunded" in ava.get(path).text


def test_the_invoice_list_shows_partial_refunds_without_a_request_per_invoice(
    tmp_path: Path,
    counted: tuple[stripe.StripeClient, CountingHTTPClient],
    busy: BusyCustomer,
    apps: list[Flask],
) -> None:
    client, http = counted
    refunded = busy.invoice_ids[:5]
    for invoice_id in refunded:
        charge = client.v1.invoices.retrieve(invoice_id).charge
        client.v1.refunds.create(
            params={"charge": charge if isinstance(charge, str) else charge.id, "amount": 100}
        )
    apps.append(app := _portal(tmp_path, client, busy))
    ava = signed_in(app)
    shown = 0
    for number in (1, 2):
        page, sent = _count(http, ava, f"/portal/invoices?page={number}")
        shown += page.text.count("Partially refunded")
        # One list call, each invoice's charge expanded in it (localstripe
        # always gives it; Stripe's own list is asked with expand[]).
        assert sent == Counter({INVOICES: 1})
    assert shown == len(refunded)
