"""Every benchmark (``make bench``) still runs: each one once, with a
handful of rounds, so that the code cannot rot between benchmark runs.

The figures are not checked (too few rounds to mean anything); what the
benchmarks assert on the way (status codes, the page showing the right
customer, statement counts) is. Parts that need the ``bench`` extra
(Flask-Security-Too, WeasyPrint, gunicorn) skip without it, in CI too;
a missing core or dev dependency fails under CI.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

import pytest
from portal_fixtures import running_in_ci

from benchmarks import __main__ as bench_main
from benchmarks import invoice_list, invoice_pdf, pages, server, signin
from benchmarks._timing import compare

#: Each test runs a benchmark: in `make test`, not `make check`.
pytestmark = pytest.mark.slow


def require(module: str, *, bench_only: bool) -> None:
    """Skip without ``module``; fail instead under CI if it is not a bench-only dependency."""
    try:
        importlib.import_module(module)
    except (ImportError, OSError) as exc:  # OSError: a library WeasyPrint loads is missing
        reason = f"{module} is not usable here: {exc}"
        if not bench_only and running_in_ci():
            pytest.fail(f"CI must run this benchmark: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _fast_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks' databases on tmpfs where there is one: a commit that
    waits for the disk would make this check slow, not surer."""
    shm = Path("/dev/shm")  # noqa: S108 - only a parent: each directory in it is mkdtemp's, mode 0700
    if shm.is_dir() and os.access(shm, os.W_OK):
        monkeypatch.setattr(tempfile, "tempdir", str(shm))


def test_compare_interleaves_and_takes_medians() -> None:
    calls: list[str] = []
    comparison = compare(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        rounds=4,
        warmup=1,
        setup={"a": lambda: calls.append("setup a")},
    )
    assert calls[:3] == ["setup a", "a", "b"]  # warm-up
    # Each round runs both, the order rotating, each "a" right after its setup.
    assert calls[3:] == ["setup a", "a", "b", "b", "setup a", "a"] * 2
    assert len(comparison["a"].times_ms) == len(comparison["b"].times_ms) == 4
    assert comparison.ratio("a", "a") == 1


def test_pages(capsys: pytest.CaptureFixture[str]) -> None:
    result = pages.run(rounds=1, warmup=0, profile_requests=1)
    assert [page.page for page in result.pages] == ["dashboard", "invoice list"]
    assert all(page.portal_ms > 0 and page.bare_ms > 0 for page in result.pages)
    # The profile still finds the portal's functions it names.
    dashboard_phases = {label.strip() for label, _ms, _share in result.profiles["dashboard"]}
    assert {"render_template", "signed-in customer (session record + customer)"} <= dashboard_phases
    assert "## 1." in capsys.readouterr().out


def test_signin() -> None:
    require("flask_security", bench_only=True)
    require("cryptography", bench_only=True)
    durable = next(iter(signin.VARIANTS))
    results = signin.run(rounds=1, warmup=0, variants=(durable,))
    assert [r.portal_writes for r in results] == [3]  # link used, session started, audit event
    assert all(r.portal_flow_ms > 0 and r.fs_flow_ms > 0 for r in results)


def test_invoice_list() -> None:
    result = invoice_list.run(sizes=(10, 30), rounds=1, warmup=0)
    assert [size.invoices for size in result.sizes] == [10, 30]
    # The same statements for a short and a long history.
    assert result.sizes[0].statements_per_page == result.sizes[1].statements_per_page


def test_invoice_pdf_fpdf2(capsys: pytest.CaptureFixture[str]) -> None:
    require("fpdf", bench_only=False)
    require("pypdf", bench_only=False)
    document = invoice_pdf.sample_document(3)
    assert invoice_pdf.render_fpdf(document).startswith(b"%PDF-")
    html = invoice_pdf.invoice_html(document)
    assert "INV-000123" in html
    assert "counter(pages)" in html
    # What the fresh process of the memory figure runs (here in this one, to stay fast).
    invoice_pdf._memory_child("fpdf2")
    memory = invoice_pdf.parse_memory(capsys.readouterr().out)
    assert memory.cold_peak_kib >= memory.rss_after_imports_kib > 0
    assert memory.python_peak_kib > 0


def test_invoice_pdf_against_weasyprint() -> None:
    require("fpdf", bench_only=False)
    require("weasyprint", bench_only=True)
    result = invoice_pdf.run(rounds=1, warmup=0, memory=False, line_counts={"3 lines": 3})
    assert result.skipped is None
    assert result.pages["3 lines"] == {"fpdf2": 1, "WeasyPrint": 1}
    assert result.speedup("3 lines") is not None


def test_server_on_sqlite() -> None:
    # Werkzeug in this process instead of gunicorn, whose two workers take
    # seconds to start; the app, the sign-in and the load client are the same.
    with tempfile.TemporaryDirectory() as tmp:
        result = server.run(
            database_url=f"sqlite:///{Path(tmp) / 'server.db'}",
            phases=1,
            seconds=0.1,
            threads=2,
            warmup_seconds=0.1,
            in_process=True,
        )
    assert result is not None
    assert result.hello_rps > 0
    assert result.dashboard_rps > 0
    assert result.bare_rps > 0
    assert result.paired_share > 0
    assert result.paired_share_of_bare > 0


def test_server_pairs_each_block_of_phases() -> None:
    def phase(path: str, requests: int) -> server.Phase:
        return server.Phase(path=path, requests=requests, errors=0, seconds=1.0, latencies_ms=(1.0,))

    hello, portal, bare = server.HELLO_PATH, server.DASHBOARD_PATH, server.BARE_PATH
    phases = (
        phase(hello, 1000),
        phase(portal, 100),
        phase(bare, 125),  # a quiet block: 80 %
        phase(portal, 40),
        phase(bare, 80),
        phase(hello, 500),  # a loaded block: 50 %
        phase(bare, 100),
        phase(hello, 900),
        phase(portal, 90),  # 90 %
    )
    assert server.paired_ratio(phases, 3, portal, bare) == pytest.approx(0.8)
    assert server.paired_ratio(phases, 3, portal, hello) == pytest.approx(0.1)


def test_main_knows_every_benchmark() -> None:
    assert (
        set(bench_main.FULL)
        == set(bench_main.QUICK)
        == {
            "pages",
            "signin",
            "invoice_list",
            "invoice_pdf",
            "server",
            "exports",
            "stripe_calls",
            "renewals",
            "pdf_languages",
        }
    )


def test_exports() -> None:
    from benchmarks import exports

    result = exports.run(invoices=120, rounds=1, warmup=0)
    # Two batches of 100 and the session lookups: not one query per invoice.
    assert result.statements < 10
    assert result.ratio > 0
    assert result.rows_ratio > 0


def test_stripe_calls(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import stripe_calls

    result = stripe_calls.run(sizes=((3, 2, 2), (8, 3, 3)))
    assert result.flat()
    cached = result.of("cached", (8, 3, 3))
    assert all(calls.again == 0 for calls in cached.values())
    assert "Stripe API requests per page" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.postgres
def test_renewals() -> None:
    from benchmarks import renewals

    sqlite = renewals._sqlite(60)
    assert sqlite.portal_ms > 0 and sqlite.bare_ms > 0
    # One runner, then three at once, each checked: one invoice and one charge each.
    result = renewals._postgres(90)
    if result is None:
        require("psycopg", bench_only=False)
        pytest.skip("no PostgreSQL")
    assert result.one_runner_s > 0 and result.three_runners_s > 0
