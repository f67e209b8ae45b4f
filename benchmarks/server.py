"""Benchmark 5: requests per second of the dashboard against a hello-world
route of the same app, served by gunicorn with 2 sync workers on
PostgreSQL (goal: the dashboard reaches ≥ 50 % of hello world). The bare
hand-written dashboard of benchmark 1 runs alongside, for scale: what any
page that reads the database reaches on the same server. A second goal,
one a page that reads the database can meet: the dashboard at ≥ 77 % of the
bare dashboard's req/s (1/1.3, the latency goal of benchmark 1).

PostgreSQL is a throwaway cluster (``tests/pg.py``: fsync off, so it is
CPU, not the disk, that is measured). The load comes from a small threaded
client on the same machine over loopback, one connection per request (sync
workers close each connection), in bounded phases that alternate between
the routes; the figure per route is the median phase. Each block of
consecutive phases has one phase per route, so the ratios are also given
as the median of the blocks' ratios: a shared machine's load changes less
within a block than over the run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from urllib.request import HTTPCookieProcessor, Request, build_opener

from benchmarks._server_app import HELLO_PATH
from benchmarks._timing import verdict
from flask_customer_portal.extension import get_state
from tests.portal_fixtures import BASE_URL, free_port, make_portal_app

GOAL = 0.5
#: The dashboard's req/s against the bare dashboard's (1/1.3, benchmark 1's goal).
BARE_GOAL = 1 / 1.3
WORKERS = 2
ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_PATH = "/portal/"
BARE_PATH = "/bare/"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


@dataclass(frozen=True)
class Phase:
    path: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: tuple[float, ...]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class ServerResult:
    database: str
    hello_rps: float
    dashboard_rps: float
    bare_rps: float
    hello_latency_ms: float
    dashboard_latency_ms: float
    bare_latency_ms: float
    phases: tuple[Phase, ...]
    paired_share: float
    """Median over blocks of the dashboard's req/s / hello world's."""
    paired_share_of_bare: float
    """Median over blocks of the dashboard's req/s / the bare dashboard's."""

    @property
    def share(self) -> float:
        return self.dashboard_rps / self.hello_rps

    @property
    def met(self) -> bool:
        return self.share >= GOAL

    @property
    def met_against_bare(self) -> bool:
        return self.paired_share_of_bare >= BARE_GOAL


def paired_ratio(phases: tuple[Phase, ...], block: int, numerator: str, denominator: str) -> float:
    """The median over blocks of ``block`` consecutive phases (one per route)
    of the two routes' req/s ratio."""
    ratios = []
    for start in range(0, len(phases) - block + 1, block):
        rates = {phase.path: phase.per_second for phase in phases[start : start + block]}
        if rates.get(denominator):
            ratios.append(rates[numerator] / rates[denominator])
    return statistics.median(ratios)


def load(
    port: int, path: str, cookie: str, *, seconds: float, threads: int, max_requests: int, expect: bytes
) -> Phase:
    """GET ``path`` from ``threads`` threads for ``seconds`` (at most
    ``max_requests`` in all), each request on its own connection."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
        "User-Agent: portal-bench\r\nConnection: close\r\n\r\n"
    ).encode()
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    deadline = started + seconds

    def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            with lock:
                if len(latencies) + errors >= max_requests:
                    return
            begin = time.perf_counter()
            chunks = []
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                    conn.sendall(request)
                    while data := conn.recv(65536):
                        chunks.append(data)
            except OSError:
                with lock:
                    errors += 1
                continue
            body = b"".join(chunks)
            ok = body.startswith(b"HTTP/1.1 200") and expect in body
            with lock:
                if ok:
                    latencies.append((time.perf_counter() - begin) * 1000)
                else:
                    errors += 1

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    return Phase(path, len(latencies), errors, elapsed, tuple(latencies))


def _sign_in_over_http(port: int, link_path: str) -> str:
    """Open the link and press its button like a browser; the Cookie header."""
    jar = CookieJar()
    opener = build_opener(HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"
    with opener.open(base + link_path, timeout=30) as page:
        html = page.read().decode()
    match = _CSRF.search(html)
    if match is None:
        raise RuntimeError("no CSRF token on the link page")
    form = urlencode({"csrf_token": match.group(1) or match.group(2)}).encode()
    with opener.open(Request(base + link_path, data=form, method="POST"), timeout=30) as landed:  # noqa: S310
        if b"Hello, Ava" not in landed.read():
            raise RuntimeError("signing in did not land on Ava's dashboard")
    with opener.open(f"{base}/bare/sign-in/cus_demo_ava", timeout=30) as bare:
        bare.read()
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


def _wait_until_up(port: int, alive: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    probe = f"GET {HELLO_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(probe)
                if conn.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not answer in time")


@contextmanager
def gunicorn_server(settings: dict[str, str]) -> Iterator[int]:
    """gunicorn with :data:`WORKERS` sync workers serving ``_server_app``; yields its port."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--worker-class", "sync"]
    command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning", "benchmarks._server_app:app"]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **settings}, stdout=log, stderr=log)
        try:
            _wait_until_up(port, lambda: server.poll() is None)
            yield port
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGQUIT)  # gunicorn's quick shutdown: the load has ended
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()


@contextmanager
def in_process_server(settings: dict[str, str]) -> Iterator[int]:
    """The same app on Werkzeug's threaded server in this process: it starts
    at once, so a quick check can drive the whole benchmark through it."""
    from werkzeug.serving import make_server

    from benchmarks._server_app import create_app

    port = free_port()
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _wait_until_up(port, thread.is_alive)
        yield port
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def run(
    *,
    database_url: str | None = None,
    phases: int = 6,
    seconds: float = 4.0,
    threads: int = 4,
    max_requests: int = 20_000,
    warmup_seconds: float = 1.0,
    in_process: bool = False,
) -> ServerResult | None:
    """``database_url`` None: start a throwaway PostgreSQL cluster.
    ``in_process``: serve with Werkzeug in this process instead of gunicorn
    (a check that the benchmark runs; its figures mean little). Returns
    ``None`` (and says why) when PostgreSQL or gunicorn is not available."""
    if in_process:
        print("\n## 5. Check run (Werkzeug in this process, not gunicorn): dashboard vs hello world")
    else:
        print(f"\n## 5. gunicorn, {WORKERS} sync workers: dashboard vs hello world in the same app")
        if importlib.util.find_spec("gunicorn") is None:
            print("skipped: gunicorn is not installed (pip install -e '.[bench]')")
            return None
    cluster = None
    if database_url is None:
        from tests import pg

        try:
            cluster = pg.start_cluster()
        except pg.PostgresUnavailable as exc:
            print(f"skipped: no PostgreSQL ({exc})")
            return None
        database_url = cluster.url
    try:
        return _run(
            database_url,
            serve=in_process_server if in_process else gunicorn_server,
            phases=phases,
            seconds=seconds,
            threads=threads,
            max_requests=max_requests,
            warmup_seconds=warmup_seconds,
        )
    finally:
        if cluster is not None:
            cluster.stop()


def _run(
    database_url: str,
    *,
    serve: Callable[[dict[str, str]], AbstractContextManager[int]],
    phases: int,
    seconds: float,
    threads: int,
    max_requests: int,
    warmup_seconds: float,
) -> ServerResult:
    secret = secrets.token_hex(32)
    setup = make_portal_app(database_url, TESTING=False, SECRET_KEY=secret)
    with setup.app_context():
        link = setup.extensions["customer_portal"].create_session("cus_demo_ava").link
        setup.extensions["sqlalchemy"].engine.dispose()
    get_state(setup).shutdown()
    parts = urlsplit(link)
    link_path = parts.path + (f"?{parts.query}" if parts.query else "")
    settings = {
        "PORTAL_BENCH_SECRET_KEY": secret,
        "PORTAL_BENCH_DATABASE_URL": database_url,
        "PORTAL_BENCH_BASE_URL": BASE_URL,
    }
    targets = {HELLO_PATH: b"Hello, world!", DASHBOARD_PATH: b"Hello, Ava", BARE_PATH: b"Hello, Ava"}
    measured = []
    with serve(settings) as port:
        cookie = _sign_in_over_http(port, link_path)
        for path, expect in targets.items():  # warm every worker up
            load(port, path, cookie, seconds=warmup_seconds, threads=threads, max_requests=500, expect=expect)
        for number in range(phases * len(targets)):
            path = list(targets)[(number + number // len(targets)) % len(targets)]
            measured.append(
                load(
                    port,
                    path,
                    cookie,
                    seconds=seconds,
                    threads=threads,
                    max_requests=max_requests,
                    expect=targets[path],
                )
            )

    errors = sum(phase.errors for phase in measured)
    if errors:
        raise RuntimeError(f"{errors} requests failed under load")

    def median_rps(path: str) -> float:
        return statistics.median(phase.per_second for phase in measured if phase.path == path)

    def median_latency(path: str) -> float:
        return statistics.median(ms for phase in measured if phase.path == path for ms in phase.latencies_ms)

    result = ServerResult(
        database=database_url.split(":", 1)[0],
        hello_rps=median_rps(HELLO_PATH),
        dashboard_rps=median_rps(DASHBOARD_PATH),
        bare_rps=median_rps(BARE_PATH),
        hello_latency_ms=median_latency(HELLO_PATH),
        dashboard_latency_ms=median_latency(DASHBOARD_PATH),
        bare_latency_ms=median_latency(BARE_PATH),
        phases=tuple(measured),
        paired_share=paired_ratio(tuple(measured), len(targets), DASHBOARD_PATH, HELLO_PATH),
        paired_share_of_bare=paired_ratio(tuple(measured), len(targets), DASHBOARD_PATH, BARE_PATH),
    )
    print(
        f"{result.database}; client: {threads} threads on the same machine, {phases} phases of {seconds:g} s "
        "per route, alternating; median phase"
    )
    print(f"hello world: {result.hello_rps:.0f} req/s (median latency {result.hello_latency_ms:.1f} ms)")
    print(
        f"dashboard:   {result.dashboard_rps:.0f} req/s (median latency {result.dashboard_latency_ms:.1f} ms)"
    )
    print(
        f"bare dashboard (for scale): {result.bare_rps:.0f} req/s "
        f"(median latency {result.bare_latency_ms:.1f} ms), {result.bare_rps / result.hello_rps:.0%} of hello world"
    )
    print(
        f"dashboard / hello world: {result.share:.0%}, paired blocks {result.paired_share:.0%} "
        f"(goal ≥ {GOAL:.0%}: {verdict(result.met)})"
    )
    print(
        f"dashboard / bare dashboard: {result.dashboard_rps / result.bare_rps:.0%}, "
        f"paired blocks {result.paired_share_of_bare:.0%} "
        f"(goal ≥ {BARE_GOAL:.0%}: {verdict(result.met_against_bare)})"
    )
    return result
