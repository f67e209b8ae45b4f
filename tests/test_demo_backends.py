"""``make demo BACKEND=stripe|dodo`` as a merchant runs it: the script
starts the stand-in for the provider's API, seeds the demo customers,
serves the shop over that back end and prints Ava's magic link, which
opens her dashboard with her subscription read from the provider."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from portal_fixtures import path_of

from flask_customer_portal.testing import csrf_token_from

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "demo_backend.py"
START_TIMEOUT = 90.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "ids_mapped"), [("stripe", True), ("dodo", False)])
def test_the_demo_serves_avas_dashboard_over_the_backend(
    backend: str, ids_mapped: bool, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(  # fixed arguments: the checkout's own script
            [
                sys.executable,
                str(SCRIPT),
                backend,
                "--port",
                str(port),
                "--database",
                str(tmp_path / "shop.db"),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=tmp_path,
        )
    try:
        assert process.stdout is not None
        printed: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT
        while not printed or not printed[-1].startswith("http://"):
            line = process.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(printed) + log.read_text()
            if printed and printed[-1].startswith("Magic link for Ava"):
                printed.append(line.strip())
            else:
                printed.append(line)
        link = printed[-1]
        assert link.startswith(f"http://127.0.0.1:{port}/portal/session/")
        mapped = [line for line in printed if re.match(r"\s+cus_demo_\w+ is cus_\w+ at ", line)]
        assert len(mapped) == (4 if ids_mapped else 0), printed

        http = requests.Session()
        page = http.get(link, timeout=30)
        assert page.status_code == 200 and "Open my portal" in page.text
        opened = http.post(
            f"http://127.0.0.1:{port}{path_of(link)}",
            data={"csrf_token": csrf_token_from(page.text)},
            allow_redirects=False,
            timeout=30,
        )
        assert opened.status_code == 303, opened.text
        dashboard = http.get(f"http://127.0.0.1:{port}/portal/", timeout=30)
        assert dashboard.status_code == 200
        assert "Ava Thompson" in dashboard.text
        assert "1 active" in dashboard.text  # her Acme Sync subscription, read from the provider
        subscriptions = http.get(f"http://127.0.0.1:{port}/portal/subscriptions", timeout=30)
        assert subscriptions.status_code == 200 and "Acme Sync" in subscriptions.text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0, log.read_text()
