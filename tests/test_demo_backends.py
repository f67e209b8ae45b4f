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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
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


@dataclass
class RunningDemo:
    url: str
    printed: list[str]
    stderr: Path

    @property
    def link(self) -> str:
        return self.printed[-1]


@contextmanager
def running_demo(backend: str, tmp_path: Path) -> Iterator[RunningDemo]:
    """``scripts/demo_backend.py BACKEND`` on a free port, up to the printed
    magic link for Ava; stopped with SIGTERM, which it must exit 0 on."""
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
        yield RunningDemo(f"http://127.0.0.1:{port}", printed, log)
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


def _open_session(http: requests.Session, demo: RunningDemo, link: str) -> None:
    page = http.get(link, timeout=30)
    assert page.status_code == 200 and "Open my portal" in page.text
    opened = http.post(
        f"{demo.url}{path_of(link)}",
        data={"csrf_token": csrf_token_from(page.text)},
        allow_redirects=False,
        timeout=30,
    )
    assert opened.status_code == 303, opened.text


def sign_in(http: requests.Session, demo: RunningDemo, email: str) -> None:
    """Sign in at the demo's static link, with the link of the email the
    shop prints (no mail server in the demo)."""
    login = f"{demo.url}/portal/login/biz_demo"
    form = http.get(login, timeout=30)
    sent = http.post(login, data={"csrf_token": csrf_token_from(form.text), "email": email}, timeout=30)
    assert sent.status_code == 200
    pattern = re.compile(rf"^To: {re.escape(email)}$.*?^({re.escape(login)}/\S+)$", re.M | re.S)
    deadline = time.monotonic() + 10
    while not (found := pattern.findall(demo.stderr.read_text())):
        assert time.monotonic() < deadline, demo.stderr.read_text()
        time.sleep(0.1)
    _open_session(http, demo, found[-1])


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _dollars(text: str, after: str) -> Decimal:
    """The dollar amount shown next after the pattern ``after``."""
    match = re.search(rf"{after} [\u2212-]?\$(\d+\.\d\d)", text)
    assert match, (after, text)
    return Decimal(match.group(1))


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "ids_mapped"), [("stripe", True), ("dodo", False)])
def test_the_demo_serves_avas_dashboard_over_the_backend(
    backend: str, ids_mapped: bool, tmp_path: Path
) -> None:
    with running_demo(backend, tmp_path) as demo:
        assert demo.link.startswith(f"{demo.url}/portal/session/")
        mapped = [line for line in demo.printed if re.match(r"\s+cus_demo_\w+ is cus_\w+ at ", line)]
        assert len(mapped) == (4 if ids_mapped else 0), demo.printed

        http = requests.Session()
        _open_session(http, demo, demo.link)
        dashboard = http.get(f"{demo.url}/portal/", timeout=30)
        assert dashboard.status_code == 200
        assert "Ava Thompson" in dashboard.text
        assert "1 active" in dashboard.text  # her Acme Sync subscription, read from the provider
        subscriptions = http.get(f"{demo.url}/portal/subscriptions", timeout=30)
        assert subscriptions.status_code == 200 and "Acme Sync" in subscriptions.text


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dodo"])
def test_dewi_changes_plan_with_welcome10_over_the_backend(backend: str, tmp_path: Path) -> None:
    """The local demo's Acme Sync plans are offered, and WELCOME10 takes 10 %
    off the provider's prorated price of the new plan in its preview; the
    confirmed change moves her subscription to it."""
    with running_demo(backend, tmp_path) as demo:
        http = requests.Session()
        sign_in(http, demo, "dewi@example.com")
        listing = http.get(f"{demo.url}/portal/subscriptions", timeout=30)
        plan_pages = {
            path
            for sid in set(re.findall(r'href="/portal/subscriptions/(sub_\w+)"', listing.text))
            if (path := f"/portal/subscriptions/{sid}/plan")
            in http.get(f"{demo.url}/portal/subscriptions/{sid}", timeout=30).text
        }
        assert len(plan_pages) == 1, listing.text  # Acme Sync; Acme Desktop is in its trial
        url = f"{demo.url}{plan_pages.pop()}"
        page = http.get(url, timeout=30)
        assert page.status_code == 200
        offered = _text(page.text)
        for plan in (
            "Basic (monthly)",
            "Pro (monthly)",
            "Business (monthly)",
            "Pro (yearly)",
            "Team (monthly)",
        ):
            assert plan in offered, offered
        assert 'name="promotion_code"' in page.text
        pro = re.search(r'name="plan" id="[\w-]+" value="(\w+)"', page.text)
        assert pro, page.text
        preview = http.post(
            url,
            data={
                "csrf_token": csrf_token_from(page.text),
                "step": "preview",
                "plan": pro.group(1),
                "quantity": "1",
                "promotion_code": "welcome10",
            },
            timeout=30,
        )
        assert preview.status_code == 200, preview.text
        shown = _text(preview.text)
        assert "Change to Pro (monthly)?" in shown, shown
        credit = _dollars(shown, r"Credit for the unused time on Basic \(monthly\)")
        prorated = _dollars(shown, r"for the rest of this period, to [^$]+?")
        off = _dollars(shown, "Promotion code WELCOME10")
        due = _dollars(shown, "Due now")
        assert off == (prorated / 10).quantize(Decimal("0.01")) and off > 0, shown
        assert due == prorated - credit - off, shown

        confirmed = http.post(
            url,
            data={
                "csrf_token": csrf_token_from(preview.text),
                **dict(
                    re.findall(
                        r'<input type="hidden" name="(step|plan|quantity|quote|promotion_code)" value="([^"]*)"',
                        preview.text,
                    )
                ),
            },
            allow_redirects=False,
            timeout=30,
        )
        assert confirmed.status_code == 303, confirmed.text
        subscription = http.get(url.removesuffix("/plan"), timeout=30)
        assert "Pro (monthly)" in _text(subscription.text)
