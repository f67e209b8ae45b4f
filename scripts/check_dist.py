"""The built wheel, installed into clean virtual environments and tried.

``make deps-bounds`` and ``make python-versions`` run this after ``make
dist``. Each environment gets the wheel (with the ``pdf``, ``postgres``,
``stripe``, ``dodo``, ``redis`` and ``example`` extras) and the smoke suite
(``tests/test_smoke.py``, run from a directory outside the source tree so
that it imports the installed package), on SQLite and, when the PostgreSQL
server binaries are there, on a throwaway PostgreSQL cluster; its rate
limits also on a throwaway Redis server (``tests/redis_server.py``):

``lowest``
    every dependency of the package at the lowest version its bounds allow
    (a constraint ``name==floor`` for each, read from the wheel's metadata;
    a dependency without a floor is an error), on the oldest Python the
    package claims; then the Stripe and Dodo Payments adapters' tests.
``newest``
    every dependency at its newest release, on the newest Python claimed;
    then the adapters' tests.
``python3.X``
    the newest releases on another Python version the package claims.

A claimed Python version that cannot be found fails the run: the claim in
``requires-python`` and the classifiers is proven, or narrowed.

Usage: ``python scripts/check_dist.py dist/flask_customer_portal-*.whl lowest newest``
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "flask-customer-portal"
EXTRAS = ("pdf", "postgres", "stripe", "dodo", "redis", "example")
#: What the smoke suite needs besides the package.
SMOKE_TOOLS = ("pytest>=8.0", "pypdf>=4.0")
#: What tests/test_dodo.py and tests/test_stripe.py need (with tests/conftest.py).
ADAPTER_TOOLS = ("requests>=2.31", "localstripe>=1.15.10", "time-machine>=2.14", "hypothesis>=6.100")
ADAPTER_TESTS = ("tests/test_dodo.py", "tests/test_stripe.py")
#: The Python versions the package claims (requires-python and classifiers).
OLDEST_PYTHON, NEWEST_PYTHON = "3.10", "3.13"

PYTEST_INI = """\
[pytest]
markers =
    smoke: the smoke suite
addopts = -ra --strict-markers -p no:cacheprovider
filterwarnings =
    error
    default::DeprecationWarning
    default::PendingDeprecationWarning
"""


@dataclass(frozen=True)
class Environment:
    name: str
    python: str
    lowest: bool = False
    adapters: bool = False


ENVIRONMENTS = {
    "lowest": Environment("lowest", OLDEST_PYTHON, lowest=True, adapters=True),
    "newest": Environment("newest", NEWEST_PYTHON, adapters=True),
    "python3.11": Environment("python3.11", "3.11"),
    "python3.12": Environment("python3.12", "3.12"),
}


def log(message: str) -> None:
    print(f"check_dist: {message}", flush=True)


def run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, capture: bool = False
) -> str:
    """Run a command of ours; its standard output if ``capture``. Fails the check if it fails."""
    command = [str(arg) for arg in args]
    result = subprocess.run(  # noqa: S603  # nosec B603 - our own commands
        command, cwd=cwd, env=env, check=False, capture_output=capture, text=True
    )
    if result.returncode != 0:
        raise SystemExit(
            f"check_dist: failed ({result.returncode}): {' '.join(command)}\n{result.stderr or ''}"
        )
    return result.stdout or ""


# -- what the wheel asks for --------------------------------------------------------


def wheel_requirements(wheel: Path, extras: tuple[str, ...]) -> list[Requirement]:
    """The wheel's dependencies, with those of ``extras``, other than itself."""
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    found: list[Requirement] = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == PROJECT:
            continue
        marker = requirement.marker
        if marker is None or any(
            marker.evaluate({**default_environment(), "extra": extra}) for extra in extras
        ):
            found.append(requirement)
    return found


def floors(requirements: list[Requirement]) -> dict[str, Version]:
    """The lowest version each requirement allows, by canonical name."""
    found: dict[str, Version] = {}
    for requirement in requirements:
        lows = [
            Version(spec.version) for spec in requirement.specifier if spec.operator in (">=", "==", "~=")
        ]
        if not lows:
            raise SystemExit(f"check_dist: {requirement} has no lower bound: give it one, and it is tested")
        name = canonicalize_name(requirement.name)
        found[name] = max([*lows, *([found[name]] if name in found else [])])
    return found


def _unmarked(requirement: Requirement) -> Requirement:
    """``requirement`` without its environment marker (its extra was chosen)."""
    unmarked = Requirement(str(requirement))
    unmarked.marker = None
    return unmarked


def installed_versions(venv_python: Path) -> dict[str, Version]:
    frozen = run(uv(), "pip", "freeze", "--python", venv_python, capture=True).split()
    pairs = (line.split("==", 1) for line in frozen if "==" in line)
    return {canonicalize_name(name): Version(version) for name, version in pairs}


# -- interpreters ------------------------------------------------------------------


def find_python(version: str) -> Path:
    """An interpreter of ``version`` (``"3.12"``): on PATH, from pyenv or Debian."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [
        shutil.which(f"python{version}"),
        *sorted(
            glob.glob(str(pyenv_root / "versions" / f"{version}.*" / "bin" / f"python{version}")),
            reverse=True,
        ),
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
    ]
    for candidate in candidates:
        if not candidate or not Path(candidate).exists():
            continue
        probe = subprocess.run(  # noqa: S603  # nosec B603 - an interpreter we found
            [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return Path(candidate)
    raise SystemExit(
        f"check_dist: no Python {version} found (PATH, {pyenv_root}/versions, /usr/bin): the package "
        f"claims it; install it or narrow requires-python and the classifiers"
    )


# -- the environments ----------------------------------------------------------------


@contextmanager
def postgres() -> Iterator[str | None]:
    """A throwaway PostgreSQL database URL (tests/pg.py), or ``None`` without the server."""
    sys.path.insert(0, str(ROOT / "tests"))
    import pg

    try:
        cluster = pg.start_cluster()
    except pg.PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            raise SystemExit(f"check_dist: CI must try PostgreSQL too: {exc}") from exc
        log(f"PostgreSQL not available, SQLite only: {exc}")
        yield None
        return
    try:
        yield cluster.url
    finally:
        cluster.stop()


@contextmanager
def redis() -> Iterator[str | None]:
    """A throwaway Redis server's URL (tests/redis_server.py), or ``None`` without one."""
    sys.path.insert(0, str(ROOT / "tests"))
    import redis_server

    try:
        server = redis_server.start_redis()
    except redis_server.RedisUnavailable as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            raise SystemExit(f"check_dist: CI must try Redis too: {exc}") from exc
        log(f"Redis not available, its smoke test skips: {exc}")
        yield None
        return
    try:
        yield server.url
    finally:
        server.stop()


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        raise SystemExit("check_dist: uv is needed (pip install uv, or the dev extra)")
    return found


def try_environment(
    environment: Environment, wheel: Path, work: Path, database: str | None, redis_url: str | None
) -> float:
    started = time.monotonic()
    venv = work / environment.name
    python = find_python(environment.python)
    log(f"{environment.name}: Python {environment.python} ({python})")
    run(uv(), "venv", "--quiet", "--python", python, venv)
    venv_python = venv / "bin" / "python"

    package = f"{PROJECT}[{','.join(EXTRAS)}] @ {wheel.as_uri()}"
    dependencies = wheel_requirements(wheel, EXTRAS)
    install = [uv(), "pip", "install", "--quiet", "--python", venv_python]
    if environment.lowest:
        # Each dependency as a direct requirement, so that uv takes the lowest
        # release its bounds allow; the tools come second, constrained to what
        # the first step chose, so they cannot raise a floor behind our back.
        run(*install, "--resolution", "lowest-direct", package, *(str(_unmarked(r)) for r in dependencies))
    else:
        run(*install, "--upgrade", package)
    versions = installed_versions(venv_python)
    chosen = {name: versions[name] for name in sorted({canonicalize_name(r.name) for r in dependencies})}
    log(f"{environment.name}: " + " ".join(f"{name}=={version}" for name, version in chosen.items()))
    if environment.lowest:
        wrong = {
            name: (floor, chosen[name])
            for name, floor in floors(dependencies).items()
            if chosen[name] != floor
        }
        if wrong:
            raise SystemExit(
                "check_dist: these floors are not what installs (withdrawn, or never released): "
                + ", ".join(f"{name}>={floor} gives {got}" for name, (floor, got) in wrong.items())
            )
    pins = work / f"{environment.name}-chosen.txt"
    pins.write_text("".join(f"{name}=={version}\n" for name, version in chosen.items()))
    tools = [*SMOKE_TOOLS, *(ADAPTER_TOOLS if environment.adapters else ())]
    run(*install, "--constraint", pins, *tools)

    # The smoke suite from outside the source tree: the installed wheel is what it imports.
    suite = work / f"{environment.name}-smoke"
    suite.mkdir()
    shutil.copy(ROOT / "tests" / "test_smoke.py", suite / "test_smoke.py")
    (suite / "pytest.ini").write_text(PYTEST_INI)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if database is not None:
        env["CUSTOMER_PORTAL_SMOKE_POSTGRES_URL"] = database
    if redis_url is not None:
        env["CUSTOMER_PORTAL_SMOKE_REDIS_URL"] = redis_url
    where = run(
        venv_python,
        "-c",
        "import flask_customer_portal as p; print(p.__file__)",
        cwd=suite,
        env=env,
        capture=True,
    ).strip()
    if not where.startswith(str(venv)):
        raise SystemExit(f"check_dist: the smoke suite would import {where}, not the installed wheel")
    run(venv_python, "-m", "pytest", "-q", suite, cwd=suite, env=env)

    if environment.adapters:
        # The adapters against the fakes in tests/ (the source tree's package,
        # these dependency versions).
        run(
            venv_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not postgres",
            "-W", "default::DeprecationWarning", "-W", "default::PendingDeprecationWarning",
            *ADAPTER_TESTS, cwd=ROOT, env=env,
        )  # fmt: skip
    elapsed = time.monotonic() - started
    log(f"{environment.name}: passed in {elapsed:.0f} s")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("wheel", type=Path)
    parser.add_argument("environments", nargs="+", choices=sorted(ENVIRONMENTS))
    args = parser.parse_args(argv)
    wheel: Path = args.wheel.resolve()
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="check-dist-") as tmp,
        postgres() as database,
        redis() as redis_url,
    ):
        for name in args.environments:
            try_environment(ENVIRONMENTS[name], wheel, Path(tmp), database, redis_url)
    log(f"{', '.join(args.environments)}: all passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
