"""A throwaway PostgreSQL cluster for the test suite.

Used by the ``postgres_url`` fixture in ``conftest.py``, and from the shell so
that a Makefile or CI script can share one cluster across runs::

    $ python tests/pg.py start            # prints the database URL
    postgresql+psycopg://postgres@127.0.0.1:54321/portal_test
    $ CUSTOMER_PORTAL_TEST_POSTGRES_URL=$(python tests/pg.py url) pytest
    $ python tests/pg.py stop

The cluster lives in a directory (``--dir``, default ``.pgdata`` at the repo
root), listens on a free TCP port on 127.0.0.1 only, has no Unix socket,
trusts local connections and skips fsync: it is for tests, never for data.

PostgreSQL refuses to run as root. Containers and CI run as root, so there
the server runs as the ``postgres`` OS user (created with ``useradd
--system`` if it is missing).
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresCluster", "PostgresUnavailable", "find_bin_dir", "start_cluster"]

DATABASE = "portal_test"
SUPERUSER = "postgres"
OS_USER = "postgres"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".pgdata"

# A server zone east of UTC, so a test that forgets to normalise to UTC
# fails here instead of in production.
SERVER_TIMEZONE = "Asia/Jakarta"

_SETTINGS = f"""
# -- throwaway test cluster (tests/pg.py) --
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
timezone = '{SERVER_TIMEZONE}'
"""


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or the cluster could not start."""


def find_bin_dir() -> Path | None:
    """Directory of the newest installed ``initdb``/``pg_ctl``, or ``None``.

    Looks in Debian's ``/usr/lib/postgresql/<version>/bin`` first, then on
    ``PATH`` (Homebrew, other distributions).
    """

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "pg_ctl").is_file()]
    if candidates:
        return max(candidates, key=version)
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_user() -> pwd.struct_passwd | None:
    """The OS user to run the server as, or ``None`` for the current user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PostgresUnavailable("running as root and there is no postgres user nor useradd")
    subprocess.run(  # fixed arguments
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(OS_USER)


@dataclass
class PostgresCluster:
    """A running cluster; :meth:`stop` shuts it down and deletes its files."""

    bin_dir: Path
    base_dir: Path
    port: int
    user: pwd.struct_passwd | None

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the server's OS user."""
        user = self.user
        return subprocess.run(  # arguments are ours, not user input
            [str(self.bin_dir / program), *args],
            check=False,
            capture_output=True,
            text=True,
            cwd=self.base_dir,  # a directory the server user can enter
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=None if user is None else [],
        )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise PostgresUnavailable(
                f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}{log}"
            )

    def init(self) -> None:
        result = self.run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        self._check(result, "initdb")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(_SETTINGS)

    def start(self) -> None:
        result = self.run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_file),
            "--wait",
            "--timeout",
            "60",
            "-o",
            f"-p {self.port}",
        )
        self._check(result, "pg_ctl start")

    def create_database(self) -> None:
        result = self.run(
            "createdb", "--host", "127.0.0.1", "--port", str(self.port),
            "--username", SUPERUSER, DATABASE,
        )  # fmt: skip
        self._check(result, "createdb")

    def is_running(self) -> bool:
        return self.run("pg_ctl", "status", "--pgdata", str(self.data_dir)).returncode == 0

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (fast shutdown) and delete the cluster's files."""
        if self.data_dir.exists() and self.is_running():
            result = self.run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait")
            self._check(result, "pg_ctl stop")
        if remove:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def start_cluster(base_dir: Path | None = None, *, attempts: int = 3) -> PostgresCluster:
    """Create and start a cluster with an empty :data:`DATABASE`.

    ``base_dir`` must not exist yet (a fresh temporary directory by default).
    Raises :class:`PostgresUnavailable` when there are no server binaries or
    the server does not come up.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (looked in /usr/lib/postgresql/*/bin and on PATH)"
        )
    user = _server_user()
    if base_dir is None:
        base_dir = Path(tempfile.mkdtemp(prefix="portal-pg-"))
    else:
        base_dir.mkdir(parents=True)
    if user is not None:
        os.chown(base_dir, user.pw_uid, user.pw_gid)
    base_dir.chmod(0o700)

    cluster = PostgresCluster(bin_dir=bin_dir, base_dir=base_dir, port=_free_port(), user=user)
    try:
        cluster.init()
        for attempt in range(attempts):
            try:
                cluster.start()
                break
            except PostgresUnavailable:
                # Most likely the free port was taken in the meantime.
                if attempt == attempts - 1:
                    raise
                cluster.port = _free_port()
                time.sleep(0.2)
        cluster.create_database()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _saved_cluster(base_dir: Path) -> PostgresCluster | None:
    """The cluster that ``start`` left in ``base_dir``, if any."""
    port_file = base_dir / "port"
    bin_dir = find_bin_dir()
    if not port_file.exists() or bin_dir is None:
        return None
    user = pwd.getpwnam(OS_USER) if os.geteuid() == 0 else None
    return PostgresCluster(bin_dir, base_dir, int(port_file.read_text()), user)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=["start", "stop", "url"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="cluster directory")
    args = parser.parse_args(argv)
    base_dir: Path = args.dir.resolve()
    saved = _saved_cluster(base_dir)

    if args.command == "start":
        if saved is not None and saved.is_running():
            print(saved.url)
            return 0
        if base_dir.exists():
            shutil.rmtree(base_dir)  # left over from a crash
        try:
            cluster = start_cluster(base_dir)
        except PostgresUnavailable as exc:
            print(exc, file=sys.stderr)
            return 1
        (base_dir / "port").write_text(str(cluster.port))
        print(cluster.url)
    elif args.command == "url":
        if saved is None or not saved.is_running():
            print(f"no cluster running in {base_dir}", file=sys.stderr)
            return 1
        print(saved.url)
    elif saved is not None:
        saved.stop()
    elif base_dir.exists():
        shutil.rmtree(base_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
