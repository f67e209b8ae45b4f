"""The documentation covers the public surface: every configuration key,
every signal, every template, and it builds without a warning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flask_customer_portal import signals
from flask_customer_portal.config import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TEMPLATES = ROOT / "flask_customer_portal" / "templates" / "customer_portal"


def _all_docs() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS.glob("*.rst"))


def test_every_configuration_key_is_documented_in_the_configuration_page() -> None:
    page = (DOCS / "config.rst").read_text(encoding="utf-8")
    missing = [key for key in DEFAULTS if f"``{key}``" not in page]
    assert not missing, f"docs/config.rst does not describe {missing}"


def test_every_signal_is_documented() -> None:
    page = (DOCS / "signals.rst").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. py:data:: (\w+)", page, flags=re.MULTILINE))
    missing = sorted(set(signals.__all__) - documented)
    assert not missing, f"docs/signals.rst does not describe {missing}"


def test_every_template_is_named_in_the_docs() -> None:
    docs = _all_docs()
    templates = sorted(str(path.relative_to(TEMPLATES)) for path in TEMPLATES.rglob("*") if path.is_file())
    assert templates
    missing = []
    for name in templates:
        # Emails are named by their stem (``email/login_link.*``).
        stem = name.split(".", 1)[0] if name.startswith("email/") else name
        if f"``{name}``" not in docs and f"``{stem}" not in docs and f"{Path(stem).name}" not in docs:
            missing.append(name)
    assert not missing, f"no page of docs/ names the templates {missing}"


@pytest.mark.slow
def test_the_documentation_builds_without_a_warning(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
