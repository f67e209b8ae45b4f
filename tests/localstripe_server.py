"""Runs localstripe on 127.0.0.1 with its state in memory.

``python tests/localstripe_server.py`` listens on a free port of 127.0.0.1
only, prints ``PORT <n>`` once it accepts connections and serves until it is
terminated. localstripe's own command line binds every interface and keeps
its state in ``/tmp/localstripe.pickle``, shared by every run on the machine
and rewritten on every change; here nothing is read from or written to disk
(which also makes each request about twice as fast), and products can be
listed by id (``ids``), as on Stripe. The
``localstripe_url`` fixture in ``tests/stripe_support.py`` starts and stops it.

Paying an invoice takes Stripe's ``payment_method`` and ``off_session``
here (localstripe's own refuses them and always charges the customer's
default), and a subscription takes a ``default_payment_method``, so the
portal's reactivation runs against it as against Stripe: the invoice is paid
with the card the customer chose, and an invoice that is paid already is
refused, never paid twice. Idempotency keys are not
replayed: what keeps two workers from paying twice is the portal's lock.
Every such payment request is recorded (the invoice, the ``Idempotency-Key``
header and the answer's status) and listed by ``GET
/_config/invoice_pays?invoice=in_…`` (see ``invoice_pays`` in
``tests/stripe_support.py``).

An invoice has ``payments`` (expandable) as in API versions since
2025-03-31. A subscription made with a trial is ``trialing``, the trial its current
period, and a customer without subscriptions can be sent an invoice for
their pending invoice items, as on Stripe.
"""

from __future__ import annotations

import asyncio
import re
import signal
from typing import Any

#: Every ``POST /v1/invoices/{id}/pay``: invoice, idempotency key, HTTP status.
PAYS: list[dict[str, Any]] = []
_PAY_PATH = re.compile(r"/v1/invoices/([^/]+)/pay")


def _pay_with_a_chosen_card() -> None:
    """``POST /v1/invoices/{id}/pay`` with ``payment_method`` (and
    ``off_session``), as Stripe takes it. Must run before
    ``localstripe.server`` is imported: its routes are made from
    ``resources.extra_apis`` then."""
    from localstripe import resources
    from localstripe.errors import UserError

    original = resources.Invoice._api_pay_invoice

    def pay(id: str, payment_method: str | None = None, off_session: Any = None, **unexpected: Any) -> Any:
        if unexpected:
            raise UserError(400, "Unexpected " + ", ".join(unexpected))
        if payment_method is None:
            return original(id)
        invoice = resources.Invoice._api_retrieve(id)
        if invoice.status == "paid":
            raise UserError(400, "Invoice is already paid")
        if invoice.status not in ("draft", "open"):
            raise UserError(400, "Bad request")
        method = resources.PaymentMethod._api_retrieve(payment_method)
        if method.customer != invoice.customer:
            raise UserError(400, "The payment method is not the invoice's customer's")
        invoice._draft = False
        intent = resources.PaymentIntent(
            amount=invoice.total,
            currency=invoice.currency,
            customer=invoice.customer,
            payment_method=method.id,
        )
        invoice.payment_intent = intent.id
        intent.invoice = invoice.id
        intent._confirm(on_failure_now=lambda: None)
        return invoice

    update = resources.Subscription._update

    def update_subscription(self: Any, default_payment_method: str | None = None, **changes: Any) -> Any:
        if default_payment_method is not None:
            if default_payment_method:
                method = resources.PaymentMethod._api_retrieve(default_payment_method)
                if method.customer != self.customer:
                    raise UserError(400, "The payment method is not the subscription's customer's")
            self.default_payment_method = default_payment_method or None
        return update(self, **changes)

    resources.Subscription._update = update_subscription
    route = ("POST", "/v1/invoices/{id}/pay")
    resources.extra_apis[:] = [
        (method, url, pay if (method, url) == route else func) for method, url, func in resources.extra_apis
    ]


def _record_pays(app: Any) -> None:
    from aiohttp import web

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        match = _PAY_PATH.fullmatch(request.path) if request.method == "POST" else None
        status = 500
        try:
            response: web.StreamResponse = await handler(request)
            status = response.status
            return response
        finally:
            if match:
                key = request.headers.get("Idempotency-Key")
                PAYS.append({"invoice": match[1], "idempotency_key": key, "status": status})

    async def pays(request: web.Request) -> web.Response:
        invoice = request.query.get("invoice")
        return web.json_response([pay for pay in PAYS if invoice is None or pay["invoice"] == invoice])

    app.middlewares.insert(0, record)  # outermost: it sees localstripe's error answers too
    app.router.add_get("/_config/invoice_pays", pays)


def main() -> None:
    from aiohttp import web
    from localstripe import resources

    _pay_with_a_chosen_card()
    from localstripe.server import app

    _record_pays(app)
    _trials(resources)
    _one_off_invoices(resources)
    _invoice_payments(resources)
    _subscription_discounts(resources)

    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    resources.Store.try_load_from_disk = lambda self: None  # type: ignore[method-assign]
    _products_by_ids(resources)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"PORT {port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())


def _trials(resources: Any) -> None:
    """A subscription made with ``trial_end`` or ``trial_period_days`` is
    ``trialing`` with the trial as its current period, as on Stripe
    (localstripe leaves it ``incomplete`` with a period of the plan's
    interval)."""
    from datetime import datetime, timedelta

    subscription_init = resources.Subscription.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        subscription_init(self, *args, **kwargs)
        if self.status == "incomplete" and (self.trial_end is not None or self.trial_period_days):
            self.trial_start = self.start_date
            if self.trial_end is None:
                end = datetime.fromtimestamp(self.start_date) + timedelta(days=self.trial_period_days)
                self.trial_end = int(end.timestamp())
            self.status = "trialing"

    current_period = resources.SubscriptionItem._current_period

    def period(self: Any) -> Any:
        if self._subscription:
            subscription = resources.Subscription._api_retrieve(self._subscription)
            if getattr(subscription, "status", None) == "trialing":
                return {"start": subscription.trial_start, "end": subscription.trial_end}
        return current_period(self)

    resources.Subscription.__init__ = init
    resources.SubscriptionItem._current_period = period


def _one_off_invoices(resources: Any) -> None:
    """``POST /v1/invoices`` for a customer without subscriptions bills their
    pending invoice items, as Stripe does (localstripe answers 404, "No
    upcoming invoices")."""
    create = resources.Invoice._api_create.__func__

    def create_invoice(cls: Any, customer: Any = None, subscription: Any = None, **kwargs: Any) -> Any:
        if (
            customer is not None
            and subscription is None
            and set(kwargs) <= {"description", "metadata"}
            and not resources.Customer._api_retrieve(customer).subscriptions._list
        ):
            return cls(customer=customer, **kwargs)
        return create(cls, customer=customer, subscription=subscription, **kwargs)

    resources.Invoice._api_create = classmethod(create_invoice)


def _invoice_payments(resources: Any) -> None:
    """An invoice's ``payments`` (API versions since 2025-03-31), so that
    ``expand[]=data.payments`` is answered as on Stripe: its payment intent,
    once it has one."""

    def payments(self: Any) -> dict[str, Any]:
        paid = []
        if self.payment_intent:
            intent = resources.PaymentIntent._api_retrieve(self.payment_intent)
            paid.append(
                {
                    "object": "invoice_payment",
                    "invoice": self.id,
                    "status": "paid" if intent.status == "succeeded" else "open",
                    "payment": {"type": "payment_intent", "payment_intent": intent.id},
                }
            )
        return {"object": "list", "data": paid, "has_more": False, "url": "/v1/invoice_payments"}

    resources.Invoice.payments = property(payments)


def _subscription_discounts(resources: Any) -> None:
    """A subscription's ``discounts`` (API versions since 2025-03-31), so
    that ``expand[]=data.discounts.source.coupon`` is answered as on Stripe
    (localstripe keeps no discounts: the list is empty)."""
    resources.Subscription.discounts = property(lambda self: [])


def _products_by_ids(resources: Any) -> None:
    """``GET /v1/products?ids[]=…``, which Stripe has and localstripe lacks."""
    list_all = resources.Product._api_list_all.__func__

    def list_products(cls: Any, url: Any, ids: Any = None, **kwargs: Any) -> Any:
        found = list_all(cls, url, **kwargs)
        if ids is not None:
            wanted = set(ids.values() if isinstance(ids, dict) else ids)
            found._list = [product for product in found._list if product.id in wanted]
        return found

    resources.Product._api_list_all = classmethod(list_products)


if __name__ == "__main__":
    main()
