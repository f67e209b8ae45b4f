"""Runs localstripe on 127.0.0.1 with its state in memory.

``python tests/localstripe_server.py`` listens on a free port of 127.0.0.1
only, prints ``PORT <n>`` once it accepts connections and serves until it is
terminated. localstripe's own command line binds every interface and keeps
its state in ``/tmp/localstripe.pickle``, shared by every run on the machine
and rewritten on every change; here nothing is read from or written to disk
(which also makes each request about twice as fast), and products can be
listed by id (``ids``), as on Stripe. The
``localstripe_url`` fixture in ``tests/stripe_support.py`` starts and stops it.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any


def main() -> None:
    from aiohttp import web
    from localstripe import resources
    from localstripe.server import app

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
