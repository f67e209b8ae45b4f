"""A throwaway Redis server for the test suite, and its ``redis_url`` fixture.

Loaded as a pytest plugin by ``conftest.py``. ``redis_url`` starts one
private ``redis-server`` per test session (for each pytest-xdist worker its
own) on a free port of 127.0.0.1, with nothing written to disk (``--save
''``, ``--appendonly no``), and kills it at the end. Without Debian's
``redis-server`` (``scripts/system-deps.sh`` installs it) the tests that
need it skip, except under CI (``CI=true``), where that is a failure.

From the shell, for a look at a server the way the tests run it::

    $ python tests/redis_server.py      # prints the URL; Ctrl-C or SIGTERM stops it
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["RedisServer", "RedisUnavailable", "redis_url", "start_redis"]


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` binary, or the server did not come up."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A running server; :meth:`stop` kills it and deletes its directory."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _launch(binary: str, directory: Path, port: int, timeout: float) -> RedisServer:
    log = directory / "redis.log"
    command = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--dir", str(directory),
        "--logfile", str(log),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(process, port, directory)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RedisUnavailable(
                f"redis-server exited ({process.returncode}) on port {port}:\n{text[-2000:]}"
            )
        if _answers_ping(port):
            return server
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RedisUnavailable(f"redis-server did not answer on port {port} within {timeout:g} s")


def start_redis(*, attempts: int = 3, timeout: float = 20) -> RedisServer:
    """Start a private ``redis-server`` on a free loopback port.

    Raises :class:`RedisUnavailable` when there is no binary or the server
    does not come up (a port taken in the meantime is tried again).
    """
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        raise RedisUnavailable("no redis-server on PATH (Debian: apt-get install redis-server)")
    directory = Path(tempfile.mkdtemp(prefix="portal-redis-"))
    try:
        for attempt in range(attempts):
            try:
                return _launch(binary, directory, _free_port(), timeout)
            except RedisUnavailable:
                if attempt == attempts - 1:
                    raise
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    raise AssertionError("unreachable")


def redis_or_skip() -> RedisServer:
    """:func:`start_redis`, or a skip (a failure under CI) without it."""
    try:
        return start_redis()
    except RedisUnavailable as exc:
        from portal_fixtures import running_in_ci

        reason = f"Redis is not available ({exc}); bash scripts/system-deps.sh installs it"
        if running_in_ci():
            pytest.fail(f"CI must run the Redis tests: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a private, empty Redis server for this test session."""
    server = redis_or_skip()
    try:
        yield server.url
    finally:
        server.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by a script as by Ctrl-C
    running = start_redis()
    print(running.url, flush=True)
    try:
        running.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    sys.exit(0)
