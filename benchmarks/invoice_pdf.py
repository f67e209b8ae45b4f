"""Benchmark 4: the invoice PDF, the portal's fpdf2 renderer
(:class:`~flask_customer_portal.pdf.FPDFInvoiceRenderer`) against WeasyPrint
rendering the same invoice written as HTML with the same font (goal: ≥ 10×
faster), and the peak memory of each, measured in a fresh process per
renderer.

WeasyPrint needs Pango (Debian: ``libpango-1.0-0 libpangoft2-1.0-0
libharfbuzz-subset0``); without it, or without the ``bench`` extra, its half
is skipped with a message.
"""

from __future__ import annotations

import functools
import importlib
import io
import json
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from jinja2 import Environment, select_autoescape
from pypdf import PdfReader

from benchmarks._timing import compare, verdict
from flask_customer_portal.formatting import format_date, format_payment_method
from flask_customer_portal.money import Money, format_money
from flask_customer_portal.pdf import FPDFInvoiceRenderer, InvoiceDocument, default_labels
from flask_customer_portal.storage import Customer, Invoice, InvoiceLine, InvoiceStatus, PaymentMethod

GOAL = 10.0
ROOT = Path(__file__).resolve().parent.parent
FONTS = ROOT / "flask_customer_portal" / "fonts"

#: The invoices rendered: a typical one and a long one (several pages).
LINE_COUNTS = {"3 lines, 1 page": 3, "80 lines, several pages": 80}

_HTML = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><title>{{ labels.invoice }} {{ invoice.number }}</title>
<style>
@font-face { font-family: "DejaVu Sans"; src: url("{{ fonts }}/DejaVuSans.ttf"); }
@font-face { font-family: "DejaVu Sans"; font-weight: bold; src: url("{{ fonts }}/DejaVuSans-Bold.ttf"); }
@page { size: A4; margin: 18mm 16mm 20mm;
  @bottom-left { content: {{ footer|safe }}; font: 7.5pt "DejaVu Sans"; color: #555; }
  @bottom-right { content: {{ page_label|safe }}; font: 7.5pt "DejaVu Sans"; color: #555; } }
body { font: 9pt "DejaVu Sans"; color: #1a1a1a; }
h1 { font-size: 20pt; margin: 0; text-align: right; }
.merchant { margin-top: -9mm; }
.parties { display: flex; justify-content: space-between; margin: 8mm 0 6mm; }
.address { white-space: pre-line; color: #555; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; border-bottom: 0.3mm solid #1a1a1a; padding: 1.5mm 0; }
td { border-bottom: 0.2mm solid #ccc; padding: 1.5mm 0; vertical-align: top; }
.num { text-align: right; }
.totals { margin-left: auto; width: 45%; margin-top: 4mm; }
.totals .strong td { font-weight: bold; }
table.facts { width: auto; }
.facts td { border: 0; padding: 0.5mm 0 0.5mm 8mm; white-space: nowrap; }
.facts td:first-child { color: #555; }
</style></head>
<body>
<h1>{{ labels.invoice }}</h1>
<div class="merchant"><strong>{{ merchant_name }}</strong><div class="address">{{ merchant_address }}</div></div>
<div class="parties">
  <p>{{ labels.bill_to }}<br><strong>{{ customer.name }}</strong><br>{{ customer.email }}</p>
  <table class="facts">{% for label, value in facts %}<tr><td>{{ label }}</td><td class="num">{{ value }}</td></tr>{% endfor %}</table>
</div>
<table>
  <thead><tr><th>{{ labels.description }}</th><th class="num">{{ labels.quantity }}</th>
    <th class="num">{{ labels.unit_price }}</th><th class="num">{{ labels.amount }}</th></tr></thead>
  <tbody>{% for row in rows %}<tr><td>{{ row.description }}</td><td class="num">{{ row.quantity }}</td>
    <td class="num">{{ money(row.unit_amount) }}</td><td class="num">{{ money(row.amount) }}</td></tr>{% endfor %}</tbody>
</table>
<table class="totals">
  <tr><td>{{ labels.subtotal }}</td><td class="num">{{ money(invoice.subtotal) }}</td></tr>
  <tr><td>{{ labels.tax }}</td><td class="num">{{ money(invoice.tax) }}</td></tr>
  <tr class="strong"><td>{{ labels.total }}</td><td class="num">{{ money(invoice.total) }}</td></tr>
</table>
{% if payment %}<p>{% for label, value in payment %}{{ label }}: {{ value }}<br>{% endfor %}</p>{% endif %}
</body></html>"""

_TEMPLATE = Environment(autoescape=select_autoescape(default=True)).from_string(_HTML)


def sample_document(lines: int) -> InvoiceDocument:
    """A paid invoice of ``lines`` lines for a customer with a card on file."""
    issued = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
    card = PaymentMethod(
        id="pm_1",
        customer_id="cus_1",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2029,
        provider_token="tok_visa_4242",  # noqa: S106 - a test card token
    )
    invoice_lines = tuple(
        InvoiceLine(
            description=f"Acme Sync — Pro seat {n + 1} (March 2026)",
            quantity=1 + n % 3,
            unit_amount=1900,
            amount=0,
        )
        for n in range(lines)
    )
    invoice_lines = tuple(
        InvoiceLine(line.description, line.quantity, line.unit_amount, line.quantity * line.unit_amount)
        for line in invoice_lines
    )
    subtotal = sum(line.amount for line in invoice_lines)
    tax = subtotal // 10
    invoice = Invoice(
        id="inv_1",
        number="INV-000123",
        customer_id="cus_1",
        status=InvoiceStatus.PAID,
        currency="USD",
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
        issued_at=issued,
        description="Acme Sync — Pro (monthly)",
        paid_at=issued + timedelta(minutes=2),
        payment_reference="ch_3PabcDEF123",
        payment_method=card,
        lines=invoice_lines,
    )
    customer = Customer(id="cus_1", email="ava@example.com", name="Ava Thompson")
    return InvoiceDocument(
        invoice=invoice,
        customer=customer,
        merchant_name="Acme Software",
        merchant_address="1 Market Street\nSan Francisco, CA 94105\nUnited States",
        locale="en",
        timezone="UTC",
        labels=default_labels(),
    )


def invoice_html(document: InvoiceDocument) -> str:
    """The same content as the portal's PDF, as HTML for WeasyPrint."""
    invoice, labels, locale = document.invoice, document.labels, document.locale

    def money(amount: int) -> str:
        return format_money(Money(amount, invoice.currency), locale)

    facts = [
        (labels["invoice_number"], invoice.number),
        (labels["date_issued"], format_date(invoice.issued_at, locale, document.timezone)),
    ]
    if invoice.paid_at is not None:
        facts.append((labels["date_paid"], format_date(invoice.paid_at, locale, document.timezone)))
    facts.append((labels["status"], labels[f"status_{invoice.status.value}"]))
    payment = []
    if invoice.payment_method is not None:
        payment.append((labels["paid_with"], format_payment_method(invoice.payment_method)))
    if invoice.payment_reference:
        payment.append((labels["payment_reference"], invoice.payment_reference))
    page_label = _css_string(labels["page_x_of_y"]) % {
        "page": '" counter(page) "',
        "pages": '" counter(pages) "',
    }
    return _TEMPLATE.render(
        lang=locale,
        fonts=FONTS.as_uri(),
        labels=labels,
        invoice=invoice,
        customer=document.customer,
        merchant_name=document.merchant_name,
        merchant_address=document.merchant_address,
        facts=facts,
        rows=[
            {
                "description": line.description,
                "quantity": line.quantity,
                "unit_amount": line.unit_amount,
                "amount": line.amount,
            }
            for line in invoice.lines
        ],
        money=money,
        payment=payment,
        footer=_css_string(f"{document.merchant_name} · {labels['invoice']} {invoice.number}"),
        page_label=page_label,
    )


def _css_string(text: str) -> str:
    """``text`` as a quoted CSS string (for ``content:``)."""
    escaped = "".join(ch if ch.isalnum() or ch in " .,·-%()" else f"\\{ord(ch):x} " for ch in text)
    return f'"{escaped}"'


def weasyprint_missing() -> str | None:
    """Why WeasyPrint cannot run here, or ``None`` if it can."""
    try:
        importlib.import_module("weasyprint")
    except ImportError:
        return "WeasyPrint is not installed (pip install -e '.[bench]')"
    except OSError as exc:  # its system libraries are missing
        return (
            f"WeasyPrint cannot load its system libraries ({exc}); on Debian: "
            "apt-get install libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0"
        )
    return None


def render_fpdf(document: InvoiceDocument) -> bytes:
    return FPDFInvoiceRenderer().render(document)


def render_weasyprint(document: InvoiceDocument) -> bytes:
    weasyprint = importlib.import_module("weasyprint")
    return bytes(weasyprint.HTML(string=invoice_html(document)).write_pdf())


RENDERERS = {"fpdf2": render_fpdf, "WeasyPrint": render_weasyprint}


@dataclass(frozen=True)
class Memory:
    """Renders in a fresh process, in KiB (Linux's VmRSS / VmHWM)."""

    rss_after_imports_kib: int
    cold_peak_kib: int
    """Peak resident memory of the process through its first render."""
    warm_render_kib: int | None
    """What a later render adds on top of the memory it starts with (its
    own peak: the high-water mark is reset before it); ``None`` where the
    kernel does not allow resetting it."""
    python_peak_kib: int
    """tracemalloc's peak during a later render (Python allocations only:
    not what C libraries such as Pango allocate)."""

    @property
    def cold_render_kib(self) -> int:
        return self.cold_peak_kib - self.rss_after_imports_kib


@dataclass(frozen=True)
class PdfResult:
    times_ms: dict[str, dict[str, float]]
    """Per invoice, per renderer: median milliseconds."""
    pages: dict[str, dict[str, int]]
    memory: dict[str, Memory]
    skipped: str | None

    def speedup(self, invoice: str) -> float | None:
        times = self.times_ms[invoice]
        if "WeasyPrint" not in times:
            return None
        return times["WeasyPrint"] / times["fpdf2"]

    @property
    def met(self) -> bool | None:
        speedups = [self.speedup(name) for name in self.times_ms]
        if any(s is None for s in speedups):
            return None
        return all(s is not None and s >= GOAL for s in speedups)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Set the process's high-water mark back to its current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _memory_child(renderer: str) -> None:
    """Run in a fresh process: render, then print what it took as JSON.

    ``getrusage``'s ``ru_maxrss`` is not used: Linux carries it over from
    the parent across ``exec``, so it would report the parent's peak.
    """
    render = RENDERERS[renderer]
    importlib.import_module("weasyprint" if renderer == "WeasyPrint" else "fpdf")  # before measuring
    document = sample_document(LINE_COUNTS["3 lines, 1 page"])
    after_imports = _status_kib("VmRSS")
    render(document)
    cold_peak = _status_kib("VmHWM")
    warm_render = None
    if _reset_peak_rss():
        before = _status_kib("VmRSS")
        render(document)
        warm_render = _status_kib("VmHWM") - before
    tracemalloc.start()
    render(document)
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "rss_after_imports_kib": after_imports,
                "cold_peak_kib": cold_peak,
                "warm_render_kib": warm_render,
                "python_peak_kib": python_peak // 1024,
            }
        )
    )


def measure_memory(renderer: str) -> Memory:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from benchmarks.invoice_pdf import _memory_child; _memory_child({renderer!r})",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return parse_memory(completed.stdout)


def parse_memory(output: str) -> Memory:
    """The :class:`Memory` that :func:`_memory_child` printed last."""
    return Memory(**json.loads(output.strip().splitlines()[-1]))


def _pages(pdf: bytes) -> int:
    return len(PdfReader(io.BytesIO(pdf)).pages)


def run(
    *, rounds: int = 30, warmup: int = 3, memory: bool = True, line_counts: dict[str, int] | None = None
) -> PdfResult:
    skipped = weasyprint_missing()
    renderers = {name: render for name, render in RENDERERS.items() if name == "fpdf2" or skipped is None}
    times: dict[str, dict[str, float]] = {}
    pages: dict[str, dict[str, int]] = {}
    for label, lines in (line_counts or LINE_COUNTS).items():
        document = sample_document(lines)
        pages[label] = {name: _pages(render(document)) for name, render in renderers.items()}
        comparison = compare(
            {name: functools.partial(render, document) for name, render in renderers.items()},
            rounds=rounds,
            warmup=warmup,
        )
        times[label] = {name: comparison[name].median for name in renderers}
    memory_use = {name: measure_memory(name) for name in renderers} if memory else {}
    result = PdfResult(times, pages, memory_use, skipped)

    print(
        f"\n## 4. Invoice PDF: fpdf2 (the portal's renderer) vs WeasyPrint (same content as HTML), median of {rounds}"
    )
    if skipped:
        print(f"WeasyPrint skipped: {skipped}")
    for label, by_renderer in times.items():
        figures = ", ".join(
            f"{name} {ms:.1f} ms ({pages[label][name]} page{'s' if pages[label][name] != 1 else ''})"
            for name, ms in by_renderer.items()
        )
        speedup = result.speedup(label)
        verdict_text = (
            ""
            if speedup is None
            else f"; fpdf2 {speedup:.1f}x faster (goal ≥ {GOAL:.0f}x: {verdict(speedup >= GOAL)})"
        )
        print(f"{label}: {figures}{verdict_text}")
    for name, used in memory_use.items():
        warm = (
            "not measurable here"
            if used.warm_render_kib is None
            else f"{used.warm_render_kib / 1024:.1f} MiB"
        )
        print(
            f"memory in a fresh process, {name}: {used.rss_after_imports_kib / 1024:.1f} MiB after imports, "
            f"peak {used.cold_peak_kib / 1024:.1f} MiB through the first render (+{used.cold_render_kib / 1024:.1f} MiB); "
            f"a later render adds {warm} at its peak; Python allocations peak {used.python_peak_kib / 1024:.1f} MiB"
        )
    return result
