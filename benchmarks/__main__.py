"""Run the benchmarks and print the figures (``make bench``).

python -m benchmarks                 # all of them (several minutes)
python -m benchmarks pages invoice_pdf
python -m benchmarks --quick         # few rounds: checks they run, figures are rough
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from benchmarks import (
    _machine,
    exports,
    invoice_list,
    invoice_pdf,
    pages,
    pdf_languages,
    renewals,
    server,
    signin,
    stripe_calls,
)

FULL: dict[str, Callable[[], object]] = {
    "pages": pages.run,
    "signin": signin.run,
    "invoice_list": invoice_list.run,
    "invoice_pdf": invoice_pdf.run,
    "server": server.run,
    "exports": exports.run,
    "stripe_calls": stripe_calls.run,
    "renewals": renewals.run,
    "pdf_languages": pdf_languages.run,
}

QUICK: dict[str, Callable[[], object]] = {
    "pages": lambda: pages.run(rounds=20, warmup=3, profile_requests=20),
    "signin": lambda: signin.run(rounds=10, warmup=2),
    "invoice_list": lambda: invoice_list.run(rounds=10, warmup=2),
    "invoice_pdf": lambda: invoice_pdf.run(rounds=3, warmup=1),
    "server": lambda: server.run(phases=1, seconds=1.0),
    "exports": lambda: exports.run(invoices=200, rounds=3, warmup=1),
    "stripe_calls": lambda: stripe_calls.run(sizes=((3, 2, 2), (12, 3, 3))),
    "renewals": lambda: renewals.run(sqlite_counts=(100, 400), postgres_count=600),
    "pdf_languages": lambda: pdf_languages.run(rounds=3, warmup=1),
}


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", choices=[*FULL, []], metavar="name", help=", ".join(FULL))
    parser.add_argument("--quick", action="store_true", help="few rounds: a check that they run")
    args = parser.parse_args(argv)
    chosen = QUICK if args.quick else FULL
    print("# flask-customer-portal benchmarks")
    for line in _machine.describe():
        print(line)
    print(f"Load average at the start: {_load()}")
    started = time.monotonic()
    for name in args.names or list(chosen):
        chosen[name]()
    print(f"\nLoad average at the end: {_load()}; took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
