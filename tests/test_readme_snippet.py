"""The README's "Use it in your app" snippet runs as printed: on SQLite, in
a fresh directory, with only the public API, and the link it prints opens
the portal of the customer it added, under the merchant's brand."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest

import flask_customer_portal
from flask_customer_portal.testing import csrf_token_from

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- readme-snippet:start -->", "<!-- readme-snippet:end -->"
LINK = re.compile(r"^http://127\.0\.0\.1:5000/portal/session/\S+$")


def readme_snippet() -> str:
    """The Python code between the README's snippet markers."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(START) == 1 and readme.count(END) == 1, "mark the snippet once"
    block = readme.split(START, 1)[1].split(END, 1)[0]
    # Kept as printed: ruff's formatter leaves the block alone.
    block = block.replace("<!-- fmt: off -->", "").replace("<!-- fmt: on -->", "").strip()
    assert block.startswith("```python\n") and block.endswith("\n```"), block
    return block.removeprefix("```python\n").removesuffix("```")


def _run(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "CUSTOMER_PORTAL_", "SQLALCHEMY"))
    }
    return subprocess.run(  # the snippet, as a reader would run it
        [sys.executable, "shop.py"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("readme")
    (directory / "shop.py").write_text(readme_snippet(), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def printed_link(shop_dir: Path) -> str:
    result = _run(shop_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and LINK.match(lines[0]), result.stdout
    return lines[0]


@pytest.fixture
def shop_module(shop_dir: Path, printed_link: str) -> Iterator[ModuleType]:
    """``shop.py`` imported as ``flask --app shop run`` would import it."""
    spec = importlib.util.spec_from_file_location("readme_shop", shop_dir / "shop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # where Flask looks for the app's root (and instance) path
    try:
        spec.loader.exec_module(module)
        assert module.app.instance_path == str(shop_dir / "instance")
        yield module
        module.portal.get_state(module.app).shutdown()
        with module.app.app_context():
            module.db.engine.dispose()
    finally:
        del sys.modules[spec.name]


def test_the_snippet_is_short_and_needs_no_server() -> None:
    code = readme_snippet()
    assert len(code.splitlines()) <= 12
    assert "sqlite:///" in code
    assert "postgres" not in code.lower() and "psycopg" not in code.lower()
    assert "CUSTOMER_PORTAL_MERCHANT_NAME" in code  # the brand, not the raw business id


def test_the_snippet_uses_only_the_public_api() -> None:
    tree = ast.parse(readme_snippet())
    modules: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            pytest.fail(f"use from-imports of public names, not import {node.names[0].name}")
        if isinstance(node, ast.ImportFrom):
            modules.setdefault(node.module or "", set()).update(alias.name for alias in node.names)
    assert set(modules) == {"flask", "flask_sqlalchemy", "flask_customer_portal"}
    assert modules["flask_customer_portal"] <= set(flask_customer_portal.__all__)


def test_it_runs_as_printed_and_again(shop_dir: Path, printed_link: str) -> None:
    assert (
        shop_dir / "instance" / "shop.db"
    ).is_file()  # Flask-SQLAlchemy's place for a relative SQLite path
    again = _run(shop_dir)  # the same customer again: still one link, no error
    assert again.returncode == 0, again.stderr
    assert LINK.match(again.stdout.strip())
    assert again.stdout.strip() != printed_link


def test_the_printed_link_opens_the_portal(shop_module: ModuleType, printed_link: str) -> None:
    client = shop_module.app.test_client()
    path = urlsplit(printed_link).path
    page = client.get(path)
    assert page.status_code == 200
    assert "Open my portal" in page.text
    assert "Acme Software" in page.text
    signed_in = client.post(path, data={"csrf_token": csrf_token_from(page.text)})
    assert signed_in.status_code == 303
    portal = client.get(signed_in.headers["Location"])
    assert portal.status_code == 200
    assert "Ada Lovelace" in portal.text
    assert "Acme Software" in portal.text
    assert ">acme<" not in portal.text  # the business id is not the brand
    # One use: the link is spent now.
    assert client.get(path).status_code == 410
