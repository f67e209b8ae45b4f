"""The example app under gunicorn, for tests that need several processes
and several servers: each server is a gunicorn master with its own workers
on its own loopback port, as two hosts behind one proxy would be.

``example_app_servers(env, count)`` starts ``count`` of them with the same
environment (the same database, secret key and billing back end), waits
until each answers, yields them, and stops them afterwards. Each server's
log goes to a file; a server that exits or does not answer in time fails
the test with the end of its log; ``ExampleServer.failures()`` lists the requests that
failed in a worker.

Make the database's tables before starting them (``create_app`` in the test
process does): every worker runs the app factory, and would otherwise race
the others to create them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from portal_fixtures import free_port

__all__ = ["ExampleServer", "example_app_servers"]

ROOT = Path(__file__).resolve().parent.parent
#: How long a server may take to answer its first request.
START_TIMEOUT = 90.0
#: How long a server may take to stop once asked.
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class ExampleServer:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, characters: int = 4000) -> str:
        """The end of the server's log."""
        return self.log.read_text(errors="replace")[-characters:] if self.log.exists() else ""

    def failures(self) -> list[str]:
        """The log's lines of requests that failed in a worker."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if "Exception on" in line or "Traceback" in line]


#: Settings of the test run's own environment that must not reach the servers.
_NOT_INHERITED = ("MAIL_", "CUSTOMER_PORTAL_", "STRIPE_", "DODO_PAYMENTS_", "PORTAL_BACKEND", "DATABASE_URL")


def _wait_until_up(server: ExampleServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn on port {server.port} exited:\n{server.tail()}")
        try:
            with requests.get(server.url + "/", timeout=5) as answer:
                if answer.status_code == 200:
                    return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn on port {server.port} did not answer in time:\n{server.tail()}")


@contextmanager
def _server(
    env: dict[str, str], log_dir: Path, *, workers: int, threads: int, app: str
) -> Iterator[tuple[ExampleServer, subprocess.Popen[bytes]]]:
    port = free_port()
    server = ExampleServer(port, log_dir / f"gunicorn-{port}.log")
    command = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", str(threads)]
    command += ["--bind", f"127.0.0.1:{port}", "--timeout", "120", "--log-level", "warning"]
    command += [app]
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED) and k != "SECRET_KEY"
    }
    settings = {
        **inherited,
        **env,
        "PORT": str(port),
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    with server.log.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=settings, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield server, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # graceful: workers finish their requests
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def example_app_servers(
    env: dict[str, str],
    log_dir: Path,
    *,
    count: int = 2,
    workers: int = 2,
    threads: int = 4,
    app: str = "example_app:create_app()",
) -> Iterator[list[ExampleServer]]:
    """``count`` gunicorn servers of ``app`` (settings that the environment
    cannot give go in its call: ``example_app:create_app({...})``), each
    with ``workers`` worker processes of ``threads`` threads, on free
    loopback ports, all with ``env``; stopped when the block ends."""
    with ExitStack() as stack:
        started = [
            stack.enter_context(_server(env, log_dir, workers=workers, threads=threads, app=app))
            for _ in range(count)
        ]
        for server, process in started:
            _wait_until_up(server, process)
        yield [server for server, _ in started]
