"""What a merchant installs: the wheel and the sdist as ``make dist`` builds
them, their metadata, and dependencies whose bounds are declared and tested.

The wheel is built once for this module (``python -m build``, sdist then
wheel from it, as a release would be); ``make deps-bounds`` and ``make
python-versions`` then install it into clean virtualenvs (scripts/check_dist.py).
"""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import flask_customer_portal
from flask_customer_portal.pdf.fonts import PROVEN_FPDF2_RELEASES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_customer_portal"

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
#: The extras a merchant installs for features; the others are for this repository.
RUNTIME_EXTRAS = ("pdf", "postgres", "postgres-binary", "stripe", "dodo", "redis", "pytest")

sys.path.insert(0, str(ROOT / "scripts"))
import check_dist  # noqa: E402 - scripts/ is not a package


@dataclass(frozen=True)
class Built:
    wheel: zipfile.ZipFile
    sdist: tarfile.TarFile
    log: str

    @property
    def wheel_names(self) -> set[str]:
        return set(self.wheel.namelist())

    @property
    def sdist_names(self) -> set[str]:
        return {name.split("/", 1)[1] for name in self.sdist.getnames() if "/" in name}

    def metadata(self) -> Message:
        [name] = [n for n in self.wheel_names if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(self.wheel.read(name).decode())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = out.glob("*.whl")
    [sdist] = out.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as wheel_file, tarfile.open(sdist) as sdist_file:
        yield Built(wheel_file, sdist_file, result.stdout + result.stderr)


# -- the wheel ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_holds_the_license_the_data_and_compiled_catalogues(built: Built) -> None:
    names = built.wheel_names
    version = flask_customer_portal.__version__
    assert f"flask_customer_portal-{version}.dist-info/licenses/LICENSE" in names
    assert "flask_customer_portal/py.typed" in names
    shipped_data = [
        path.relative_to(ROOT).as_posix()
        for folder in ("templates", "static", "fonts")
        for path in (PACKAGE / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert shipped_data and set(shipped_data) <= names
    catalogues = [p.relative_to(ROOT).as_posix() for p in PACKAGE.glob("translations/*/LC_MESSAGES/*.po")]
    assert catalogues
    for po in catalogues:
        assert po in names and po[: -len(".po")] + ".mo" in names
    modules = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")}
    assert modules <= names
    assert not [n for n in names if n.startswith(("tests/", "example_app/", "docs/", "scripts/"))]


@pytest.mark.slow
def test_the_build_ignores_no_package_data(built: Built) -> None:
    assert "would be ignored" not in built.log
    assert "is absent from the `packages` configuration" not in built.log


@pytest.mark.slow
def test_the_license_is_mit_in_the_repository_and_the_metadata(built: Built) -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c)" in text and "The flask-customer-portal authors" in text
    assert built.metadata()["License-Expression"] == "MIT"


@pytest.mark.slow
def test_the_metadata_speaks_to_pypi(built: Built) -> None:
    metadata = built.metadata()
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert description.strip() == (ROOT / "README.pypi.md").read_text().strip()
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "make demo" not in description and "make test" not in description
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert {"Documentation", "Changelog"} <= urls.keys()
    assert all(url.startswith("https://") for url in urls.values())


@pytest.mark.slow
def test_the_sdist_builds_the_wheel_and_carries_the_changelog(built: Built) -> None:
    names = built.sdist_names
    assert {
        "LICENSE",
        "CHANGES.rst",
        "docs/changelog.rst",
        "README.pypi.md",
        "setup.py",
        "pyproject.toml",
    } <= names
    assert "flask_customer_portal/translations/id/LC_MESSAGES/customer_portal.po" in names
    assert "tests/test_smoke.py" in names and "tests/conftest.py" in names


@pytest.mark.slow
def test_neither_archive_carries_compiled_bytecode(built: Built) -> None:
    """A checkout where tests have run holds ``__pycache__`` directories
    (pytest's rewritten test modules among them); they stay out."""
    compiled = [
        name
        for name in built.sdist_names | built.wheel_names
        if "__pycache__" in name.split("/") or name.endswith((".pyc", ".pyo"))
    ]
    assert compiled == []


# -- one version, one changelog -----------------------------------------------------


@pytest.mark.slow
def test_the_version_is_written_in_one_place(built: Built) -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "flask_customer_portal.__version__"
    }
    assert built.metadata()["Version"] == flask_customer_portal.__version__
    assert "release = flask_customer_portal.__version__" in (ROOT / "docs" / "conf.py").read_text()


def _changelog_sections() -> list[str]:
    lines = (ROOT / "docs" / "changelog.rst").read_text().splitlines()
    return [
        title
        for title, underline in itertools.pairwise(lines)
        if title and re.fullmatch(r"-+", underline) and len(underline) >= len(title)
    ]


def test_the_changelog_has_a_section_per_release() -> None:
    sections = _changelog_sections()
    version = flask_customer_portal.__version__
    if ".dev" in version or "rc" in version:
        assert sections[0] == "Unreleased"
        released = sections[1:]
    else:
        assert sections[0].split()[0] == version
        released = sections
    assert released and all(re.fullmatch(r"\d+\.\d+\.\d+", section.split()[0]) for section in released)
    assert not [section for section in released if "unreleased" in section.lower()]
    assert "docs/changelog.rst" in (ROOT / "CHANGES.rst").read_text()


# -- dependencies -----------------------------------------------------------------


def _requirements(*extras: str) -> list[Requirement]:
    found = [Requirement(line) for line in PROJECT["dependencies"]]
    for extra in extras:
        found += [Requirement(line) for line in PROJECT["optional-dependencies"][extra]]
    return [r for r in found if canonicalize_name(r.name) != "flask-customer-portal"]


def test_every_dependency_has_a_floor_the_ci_installs() -> None:
    floors = check_dist.floors(_requirements(*RUNTIME_EXTRAS, "example"))
    assert floors["flask"].major == 3
    # Withdrawn releases are not floors (make deps-bounds checks it against the index).
    assert str(floors["python-stdnum"]) != "2.0" and str(floors["email-validator"]) != "2.1"


def test_every_third_party_module_the_package_imports_is_declared() -> None:
    declared = {canonicalize_name(r.name) for r in _requirements(*RUNTIME_EXTRAS)}
    distributions = packages_distributions()
    imported: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "flask_customer_portal":
                    imported.setdefault(top, str(path.relative_to(ROOT)))
    undeclared = {
        module: where
        for module, where in imported.items()
        if not {canonicalize_name(d) for d in distributions.get(module, [module])} & declared
    }
    assert undeclared == {}
    assert "fontTools" in imported and "fonttools" in {
        canonicalize_name(r.name) for r in _requirements("pdf")
    }


def test_the_package_travels_light() -> None:
    runtime = {canonicalize_name(r.name) for r in _requirements()}
    assert "phonenumberslite" in runtime and "phonenumbers" not in runtime  # no 40 MB of geodata
    assert "flask-login" not in runtime  # the example shop's, not the portal's
    assert "redis" not in runtime and "redis" in {canonicalize_name(r.name) for r in _requirements("redis")}
    assert {canonicalize_name(r.name) for r in _requirements("example")} >= {"flask-login"}
    [psycopg] = [Requirement(line) for line in PROJECT["optional-dependencies"]["postgres"]]
    assert psycopg.name == "psycopg" and psycopg.extras == set()  # the system's libpq
    [binary] = [Requirement(line) for line in PROJECT["optional-dependencies"]["postgres-binary"]]
    assert binary.name == "psycopg" and binary.extras == {"binary"}


def test_the_pdf_extra_allows_only_tested_fpdf2_releases() -> None:
    [fpdf2] = [r for r in _requirements("pdf") if r.name == "fpdf2"]
    specifier: SpecifierSet = fpdf2.specifier
    assert all(release in specifier for release in PROVEN_FPDF2_RELEASES)
    assert "2.8.1" not in specifier  # writes a wrong creation date
    assert "2.9.0" not in specifier  # not tested
    assert "2.8.2" in specifier


def test_every_python_version_claimed_is_tried_in_ci() -> None:
    claimed = {
        classifier.rsplit(" :: ", 1)[1]
        for classifier in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", classifier)
    }
    tried = {environment.python for environment in check_dist.ENVIRONMENTS.values()}
    assert claimed == tried == {"3.10", "3.11", "3.12", "3.13"}
    assert PROJECT["requires-python"] == f">={check_dist.OLDEST_PYTHON}"
    assert check_dist.ENVIRONMENTS["lowest"].python == min(
        claimed, key=lambda v: tuple(map(int, v.split(".")))
    )
    assert check_dist.ENVIRONMENTS["newest"].python == max(
        claimed, key=lambda v: tuple(map(int, v.split(".")))
    )
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make deps-bounds python-versions" in ci
