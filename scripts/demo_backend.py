"""``make demo BACKEND=stripe|dodo``: the demo shop over a payment company's
API, with a stand-in for that API on 127.0.0.1, seeded with the demo
customers, so a merchant sees the portal over their provider before
writing a line.

* ``stripe``: localstripe (``tests/localstripe_server.py``, its state in
  memory) with the shop on ``PORTAL_BACKEND=stripe``. Stripe makes its own
  customer ids, so each demo customer is kept in the shop under the id
  Stripe gave it (``cus_demo_ava`` becomes ``cus_…``); the mapping is
  printed.
* ``dodo``: the fake Dodo Payments server of the tests
  (``tests/fake_dodo.py``), in this process, with the shop on
  ``PORTAL_BACKEND=dodo``. The demo customer ids are valid Dodo ids, so
  they stay as they are.

Both run from a checkout (the stand-ins live with the tests). The shop's
own records go to a database of their own under the instance folder
(``shop-stripe.db``, ``shop-dodo.db``), made afresh on every start since the
stand-in forgets everything when it stops. Everything listens on
127.0.0.1 only. ``python scripts/demo_backend.py stripe --port 5000``;
it serves until interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class DemoCustomer:
    """A demo customer as the shop keeps it (the billing is at the provider)."""

    demo_id: str
    email: str
    name: str
    phone: str | None
    locale: str | None
    timezone: str


#: The same people as ``flask --app example_app demo-data``.
CUSTOMERS = (
    DemoCustomer(
        "cus_demo_ava", "ava@example.com", "Ava Thompson", "+14155550123", "en", "America/Los_Angeles"
    ),
    DemoCustomer("cus_demo_budi", "budi@example.com", "Budi Santoso", "+6281234567890", "id", "Asia/Jakarta"),
    DemoCustomer("cus_demo_chen", "chen@example.com", "Chen Wei", None, None, "Asia/Singapore"),
    DemoCustomer("cus_demo_dewi", "dewi@example.com", "Dewi Lestari", "+6281298765432", "en", "Asia/Jakarta"),
)


# -- Stripe, through localstripe -------------------------------------------------------------


@contextmanager
def localstripe() -> Iterator[str]:
    """localstripe on a free port of 127.0.0.1; yields its URL."""
    process = subprocess.Popen(  # noqa: S603 - fixed arguments: the checkout's own server script
        [sys.executable, str(TESTS / "localstripe_server.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline() if process.stdout is not None else ""
        if not line.startswith("PORT "):
            raise SystemExit("localstripe did not start: is the demo-stripe extra installed?")
        url = f"http://127.0.0.1:{int(line.split()[1])}"
        _wait_until_it_answers(f"{url}/v1/balance")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_it_answers(url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    request = Request(url, headers={"Authorization": "Bearer sk_test_demo"})  # noqa: S310 - loopback, made here
    while True:
        try:
            with urlopen(request, timeout=2):  # noqa: S310 - loopback, made here
                return
        except URLError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer") from None
            time.sleep(0.1)


def seed_stripe(url: str) -> dict[str, str]:
    """The demo customers at localstripe; returns their Stripe ids by demo id."""
    import stripe

    client = stripe.StripeClient("sk_test_demo", base_addresses={"api": url}, max_network_retries=0)

    def plan(product: str, nickname: str, amount: int, currency: str = "usd", interval: str = "month") -> str:
        made = client.v1.products.create(params={"name": product})
        return str(
            client.v1.plans.create(
                params={
                    "amount": amount,
                    "currency": currency,
                    "interval": interval,
                    "product": made.id,
                    "nickname": nickname,
                }
            ).id
        )

    def customer(who: DemoCustomer, card: str | None) -> str:
        made = client.v1.customers.create(params={"email": who.email, "name": who.name})
        if card is not None:
            method = client.v1.payment_methods.attach(card, params={"customer": made.id})
            client.v1.customers.update(
                made.id, params={"invoice_settings": {"default_payment_method": method.id}}
            )
        return str(made.id)

    sync_pro = plan("Acme Sync", "Pro (monthly)", 1900)
    desktop_yearly = plan("Acme Desktop", "Standard (yearly)", 9900, interval="year")
    sync_pro_idr = plan("Acme Sync", "Pro (bulanan)", 15_000_000, currency="idr")
    desktop_pro = plan("Acme Desktop", "Pro (monthly)", 1200)
    sync_basic = plan("Acme Sync", "Basic (monthly)", 900)
    ava, budi, chen, dewi = CUSTOMERS

    ids = {ava.demo_id: customer(ava, "pm_card_visa")}
    client.v1.subscriptions.create(params={"customer": ids[ava.demo_id], "items": [{"plan": sync_pro}]})
    past = client.v1.subscriptions.create(
        params={"customer": ids[ava.demo_id], "items": [{"plan": desktop_yearly}]}
    )
    client.v1.subscriptions.cancel(past.id)

    # A card that attaches but whose charges fail: Budi's first renewal is
    # left unpaid, so his subscription is on hold with the invoice open.
    ids[budi.demo_id] = customer(budi, "pm_card_chargeCustomerFail")
    client.v1.subscriptions.create(params={"customer": ids[budi.demo_id], "items": [{"plan": sync_pro_idr}]})

    ids[chen.demo_id] = customer(chen, None)

    ids[dewi.demo_id] = customer(dewi, "pm_card_visa")
    client.v1.invoice_items.create(
        params={
            "customer": ids[dewi.demo_id],
            "amount": 14900,
            "currency": "usd",
            "description": "Team onboarding session (2 hours, remote)",
        }
    )
    # An invoice stays a draft until a payment is tried (localstripe has no
    # finalize): one attempt with a card that fails leaves it open to pay.
    onboarding = client.v1.invoices.create(params={"customer": ids[dewi.demo_id]})
    failing = client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": ids[dewi.demo_id]}
    )
    with suppress(stripe.StripeError):
        client.v1.invoices.pay(onboarding.id, params={"payment_method": failing.id, "off_session": True})
    client.v1.payment_methods.detach(failing.id)
    client.v1.subscriptions.create(params={"customer": ids[dewi.demo_id], "items": [{"plan": sync_basic}]})
    client.v1.subscriptions.create(
        params={"customer": ids[dewi.demo_id], "items": [{"plan": desktop_pro}], "trial_period_days": 14}
    )
    return ids


# -- Dodo Payments, through the fake Dodo server ---------------------------------------------


def dodo_product_id(plan_id: str) -> str:
    """The Dodo product a plan of the local demo's catalogue is: Dodo sells
    each plan as a product of its own (``plan_sync_pro_monthly`` is
    ``pdt_sync_pro_monthly``)."""
    return "pdt_" + plan_id.removeprefix("plan_")


def seed_dodo(fake: Any) -> dict[str, str]:
    """The demo customers at the fake Dodo server, under their own ids, the
    demo's plans as Dodo products and ``WELCOME10`` as a Dodo discount code
    (10 % off, which Dodo counts in basis points)."""
    sys.path.insert(0, str(ROOT))
    from example_app.demo import DEMO_PLANS, DEMO_PROMOTION_CODE
    from flask_customer_portal.storage import PromotionDuration

    for plan in DEMO_PLANS:
        product = dodo_product_id(plan.id)
        fake.product_prices[product] = plan.price.amount
        fake.product_names[product] = f"{plan.product_name} {plan.name}"
    code = DEMO_PROMOTION_CODE
    cycles = {PromotionDuration.ONCE: 1, PromotionDuration.REPEATING: code.duration_periods}
    fake.add_discount(
        code.code,
        amount=(code.percent_off or 0) * 100,
        subscription_cycles=cycles.get(code.duration),
    )
    for who in CUSTOMERS:
        fake.add_customer(who.demo_id, who.email, who.name)
    ava, budi, _chen, dewi = (who.demo_id for who in CUSTOMERS)

    ava_card = fake.add_payment_method(ava, last4="4242")
    ava_sync = fake.add_subscription(
        ava,
        product_name="Acme Sync Pro (monthly)",
        product_id=dodo_product_id("plan_sync_pro_monthly"),
        amount=1900,
        payment_method_id=ava_card,
        created_days_ago=400,
    )
    fake.add_subscription(
        ava,
        product_name="Acme Desktop Standard",
        amount=9900,
        interval="Year",
        status="cancelled",
        created_days_ago=450,
    )
    for n in range(14):
        fake.add_payment(
            ava, amount=1900, subscription_id=ava_sync, days_ago=30 * n + 1, payment_method_id=ava_card
        )
    for limit, instances in ((5, ("Ava's MacBook Pro", "Ava's iPhone")), (1, ())):
        key = fake.add_license_key(ava, limit=limit)
        for name in instances:
            fake.add_instance(key, name)

    budi_card = fake.add_payment_method(budi, last4="0002")
    budi_sync = fake.add_subscription(
        budi,
        product_name="Acme Sync Pro (bulanan)",
        product_id=dodo_product_id("plan_sync_pro_idr_monthly"),
        amount=15_000_000,
        currency="IDR",
        status="on_hold",
        payment_method_id=budi_card,
    )
    for days_ago, status in ((63, "succeeded"), (33, "succeeded"), (3, "failed")):
        fake.add_payment(
            budi,
            amount=15_000_000,
            currency="IDR",
            status=status,
            subscription_id=budi_sync,
            days_ago=days_ago,
            tax=1_650_000,
            payment_method_id=budi_card,
            error_code="GENERIC_DECLINE" if status == "failed" else None,
        )
    fake.add_instance(fake.add_license_key(budi), "Laptop kantor")

    dewi_card = fake.add_payment_method(dewi, last4="4242")
    dewi_sync = fake.add_subscription(
        dewi,
        product_name="Acme Sync Basic (monthly)",
        product_id=dodo_product_id("plan_sync_basic_monthly"),
        amount=900,
        payment_method_id=dewi_card,
        created_days_ago=85,
    )
    for days_ago in (85, 55, 25):
        fake.add_payment(
            dewi, amount=900, subscription_id=dewi_sync, days_ago=days_ago, payment_method_id=dewi_card
        )
    duplicate = fake.add_payment(dewi, amount=9900, days_ago=30, payment_method_id=dewi_card)
    fake.add_refund(duplicate, amount=9900, reason="Bought twice by mistake", hours_after=27)
    # Dodo has no trialing status: a subscription made with a trial is
    # active until its first billing date, which the store shows as a trial.
    fake.add_subscription(
        dewi,
        product_name="Acme Desktop Pro",
        amount=1200,
        payment_method_id=dewi_card,
        created_days_ago=1,
        trial_period_days=14,
    )
    # A one-off payment Dodo still waits for: open (Dodo pays it at its own
    # checkout page, so the portal offers no Pay button for it).
    fake.add_payment(dewi, amount=14900, status="requires_payment_method", days_ago=0)
    return {who.demo_id: who.demo_id for who in CUSTOMERS}


@contextmanager
def fake_dodo() -> Iterator[tuple[Any, str]]:
    """The tests' fake Dodo server, in this process, on 127.0.0.1, and the
    API key it takes."""
    sys.path.insert(0, str(TESTS))
    try:
        from fake_dodo import API_KEY, FakeDodo
    except ImportError as exc:
        raise SystemExit(f"the fake Dodo server needs the demo-dodo extra: {exc}") from exc
    server = FakeDodo().start()
    try:
        yield server, API_KEY
    finally:
        server.stop()


# -- the shop ---------------------------------------------------------------------------------


def _shop(backend: str, port: int, database: Path, extra: dict[str, Any]) -> Any:
    """The demo shop on ``backend``, on a database of its own, made afresh."""
    sys.path.insert(0, str(ROOT))
    from example_app import create_app

    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
            "CUSTOMER_PORTAL_BASE_URL": f"http://127.0.0.1:{port}",
            "PORTAL_BACKEND": backend,
            **extra,
        }
    )


def _add_customers(app: Any, ids: dict[str, str]) -> None:
    """The demo customers in the shop's own tables, under the provider's ids."""
    from example_app import storage
    from example_app.staff import ensure_demo_staff
    from flask_customer_portal import Customer

    now = datetime.now(timezone.utc)
    with app.app_context():
        store = storage()
        for n, who in enumerate(CUSTOMERS):
            store.add_customer(
                Customer(
                    id=ids[who.demo_id],
                    email=who.email,
                    name=who.name,
                    phone=who.phone,
                    locale=who.locale,
                    timezone=who.timezone,
                    created_at=now - timedelta(days=100 - n),
                )
            )
        ensure_demo_staff()


def _add_license_keys(app: Any, ids: dict[str, str]) -> None:
    """Ava's and Budi's licence keys, in the shop's own tables: with Stripe
    as the back end the shop keeps the keys it issues."""
    from example_app import storage
    from flask_customer_portal import LicenseKey, LicenseKeyStatus

    now = datetime.now(timezone.utc)
    with app.app_context():
        store = storage()
        for key_id, demo_id, key, product, status, limit in (
            ("lk_demo_ava_sync", "cus_demo_ava", "ACME-SYNC-7K3Q-M9VX-2HPD-4RTA", "Acme Sync", "active", 5),
            (
                "lk_demo_ava_desktop",
                "cus_demo_ava",
                "ACME-DESK-Q8WN-5ZLC-E6JB-1MYF",
                "Acme Desktop",
                "expired",
                1,
            ),
            ("lk_demo_budi_sync", "cus_demo_budi", "ACME-SYNC-B4DI-8XQE-3NWS-6GTL", "Acme Sync", "active", 3),
        ):
            store.add_license_key(
                LicenseKey(
                    id=key_id,
                    customer_id=ids[demo_id],
                    key=key,
                    product_name=product,
                    status=LicenseKeyStatus(status),
                    activations=0,
                    activation_limit=limit,
                    created_at=now - timedelta(days=90),
                )
            )


def _add_dodo_plans(app: Any) -> None:
    """The local demo's plan catalogue in the shop's tables, each plan under
    the id of the Dodo product it is (the plan pages offer them and Dodo
    changes the plan)."""
    from dataclasses import replace

    from example_app import storage
    from example_app.demo import DEMO_PLANS

    with app.app_context():
        store = storage()
        for plan in DEMO_PLANS:
            store.add_plan(replace(plan, id=dodo_product_id(plan.id)))


def _serve(app: Any, port: int, ids: dict[str, str], backend: str) -> None:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    with app.app_context():
        link = app.extensions["customer_portal"].create_session(ids["cus_demo_ava"]).link
    print(f"Demo shop over {backend} (a stand-in on 127.0.0.1): http://127.0.0.1:{port}/")
    print(f"Static link:    http://127.0.0.1:{port}/portal/login/biz_demo   (the email is printed below)")
    print(f"Staff area:     http://127.0.0.1:{port}/admin/   (staff@example.com, password acme-demo-staff)")
    for demo_id, provider_id in ids.items():
        if demo_id != provider_id:
            print(f"  {demo_id} is {provider_id} at {backend}")
    print("Magic link for Ava (one use, 24 h):")
    print(link, flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def run(backend: str, port: int, database: Path) -> None:
    runners: dict[str, Callable[[], None]] = {}

    def on_stripe() -> None:
        with localstripe() as url:
            ids = seed_stripe(url)
            app = _shop(
                "stripe",
                port,
                database,
                {
                    "STRIPE_SECRET_KEY": "sk_test_demo",
                    "STRIPE_PUBLISHABLE_KEY": "pk_test_demo",
                    "STRIPE_API_BASE": url,
                },
            )
            _add_customers(app, ids)
            _add_license_keys(app, ids)
            _serve(app, port, ids, "Stripe")

    def on_dodo() -> None:
        with fake_dodo() as (fake, api_key):
            ids = seed_dodo(fake)
            app = _shop(
                "dodo",
                port,
                database,
                {"DODO_PAYMENTS_API_KEY": api_key, "DODO_PAYMENTS_BASE_URL": fake.url},
            )
            _add_customers(app, ids)
            _add_dodo_plans(app)
            _serve(app, port, ids, "Dodo Payments")

    runners.update(stripe=on_stripe, dodo=on_dodo)
    runners[backend]()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("backend", choices=("stripe", "dodo"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    parser.add_argument(
        "--database",
        type=Path,
        help="the shop's SQLite file, deleted first (default: instance/shop-BACKEND.db)",
    )
    args = parser.parse_args(argv)
    # Where Flask puts the example app's instance folder.
    database = args.database or ROOT / "instance" / f"shop-{args.backend}.db"
    run(args.backend, args.port, database)


if __name__ == "__main__":
    main()
