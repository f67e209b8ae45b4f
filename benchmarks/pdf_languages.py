"""Benchmark 9: the invoice PDF in every shipped language — time to render
and file size, a one-page invoice and a long one, with the labels from the
language's catalogue and a customer name and line texts in its script.

python -m benchmarks pdf_languages
"""

from __future__ import annotations

import functools
import io
import itertools
from dataclasses import replace

from babel.support import Translations
from pypdf import PdfReader

from benchmarks._timing import compare
from benchmarks.invoice_pdf import LINE_COUNTS, sample_document
from flask_customer_portal.catalogues import TRANSLATIONS_DIR, shipped_languages
from flask_customer_portal.pdf import FPDFInvoiceRenderer, InvoiceDocument, default_labels

#: A customer name and a line text in the script of the language, where the
#: English sample's would not show what the language's text costs.
_SAMPLES = {
    "ar": ("سارة أحمد", "اشتراك Pro — شهر مارس"),
    "es": ("Lucía Fernández", "Suscripción Pro — marzo"),
    "id": ("Budi Santoso", "Langganan Pro — Maret"),
    "ja": ("山田太郎", "プロプラン 3月"),
    "ko": ("김민준", "프로 요금제 — 3월"),
    "pt_BR": ("João Silva", "Assinatura Pro — março"),
    "zh_Hans": ("王芳", "专业版订阅 — 3月"),
}
#: English labels with a Japanese name and lines: what the fallback font
#: (embedded only then) costs on an otherwise Latin invoice.
_CJK_SAMPLE = ("山田太郎", "プロプラン 年額 3月")


def document_in(language: str, lines: int) -> InvoiceDocument:
    base = sample_document(lines)
    cjk = language == "en+CJK"
    language = "en" if cjk else language
    translations = Translations.load(str(TRANSLATIONS_DIR), [language], domain="customer_portal")
    labels = {key: translations.gettext(text) for key, text in default_labels().items()}
    name, text = _CJK_SAMPLE if cjk else _SAMPLES.get(language, (base.customer.name, ""))
    invoice = base.invoice
    if text:
        invoice = replace(
            invoice,
            lines=tuple(replace(line, description=f"{text} {i + 1}") for i, line in enumerate(invoice.lines)),
        )
    return replace(
        base, invoice=invoice, customer=replace(base.customer, name=name), locale=language, labels=labels
    )


#: Names never rendered before in this process, for the first-render figure.
_fresh_names = ("".join(chr(0x5000 + 4 * (n % 4000) + i) for i in range(4)) for n in itertools.count())


def _fresh_cjk_document(lines: int) -> InvoiceDocument:
    document = document_in("en+CJK", lines)
    return replace(document, customer=replace(document.customer, name=next(_fresh_names)))


def run(*, rounds: int = 20, warmup: int = 2) -> dict[str, dict[str, tuple[float, int, int]]]:
    renderer = FPDFInvoiceRenderer()
    results: dict[str, dict[str, tuple[float, int, int]]] = {}
    print(f"\n## 9. Invoice PDF per language: median time of {rounds} and file size")
    print("| language | invoice | time (ms) | × en | size (KB) | pages |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for label, lines in LINE_COUNTS.items():
        documents = {language: document_in(language, lines) for language in (*shipped_languages(), "en+CJK")}
        comparison = compare(
            {language: functools.partial(renderer.render, doc) for language, doc in documents.items()},
            rounds=rounds,
            warmup=warmup,
        )
        for language, document in documents.items():
            pdf = renderer.render(document)
            pages = len(PdfReader(io.BytesIO(pdf)).pages)
            ms = comparison[language].median
            ratio = comparison.ratio(language, "en")
            results.setdefault(language, {})[label] = (ms, len(pdf), pages)
            print(f"| {language} | {label} | {ms:.1f} | {ratio:.2f} | {len(pdf) / 1024:.1f} | {pages} |")
    # A customer name whose CJK characters no document of the process has
    # drawn yet: the fallback font's glyphs are subset for it (once).
    fresh_rounds = max(3, rounds // 4)
    label, lines = next(iter(LINE_COUNTS.items()))
    english = document_in("en", lines)
    first = compare(
        {
            "en": functools.partial(renderer.render, english),
            "en+CJK, a name not drawn before": lambda: renderer.render(_fresh_cjk_document(lines)),
        },
        rounds=fresh_rounds,
        warmup=1,
    )
    name = "en+CJK, a name not drawn before"
    print(f"\nFirst render of new CJK glyphs ({label}, median of {fresh_rounds}): ")
    print(
        f"{first[name].median:.1f} ms against {first['en'].median:.1f} ms for en ({first.ratio(name, 'en'):.1f}×)"
    )
    results.setdefault(name, {})[label] = (first[name].median, 0, 1)
    return results
