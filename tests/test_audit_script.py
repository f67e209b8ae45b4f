"""``scripts/audit.py``: what its pip-audit report makes of a build."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "audit.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reporting(monkeypatch: pytest.MonkeyPatch, dependencies: list[dict[str, Any]]) -> ModuleType:
    module = _load()

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert "--no-deps" in command and "--requirement" in command
        return subprocess.CompletedProcess(command, 0, json.dumps({"dependencies": dependencies}), "")

    monkeypatch.setattr(module.subprocess, "run", run)
    return module


CLEAN = {"name": "flask", "version": "3.1.3", "vulns": []}
VULNERABLE = {
    "name": "werkzeug",
    "version": "2.0.0",
    "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["2.2.3"], "description": "…"}],
}
UNREACHABLE = {"name": "jinja2", "skip_reason": "Dependency not found on PyPI and could not be audited"}


def test_clean(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _reporting(monkeypatch, [CLEAN]).main("req.txt") == 0
    assert "1 packages audited, 0 with known vulnerabilities" in capsys.readouterr().out


def test_a_vulnerability_fails(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _reporting(monkeypatch, [CLEAN, VULNERABLE, UNREACHABLE]).main("req.txt") == 1
    out = capsys.readouterr().out
    assert "VULNERABLE werkzeug 2.0.0: GHSA-xxxx (fixed in 2.2.3)" in out


def test_nothing_audited_is_said_loudly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _reporting(monkeypatch, [UNREACHABLE]).main("req.txt") == 0
    assert "this run proves nothing" in capsys.readouterr().out
    monkeypatch.setenv("AUDIT_STRICT", "1")
    assert _reporting(monkeypatch, [UNREACHABLE]).main("req.txt") == 1


def test_a_broken_run_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load()
    monkeypatch.setattr(
        module.subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(command, 2, "", "boom")
    )
    assert module.main("req.txt") == 2
