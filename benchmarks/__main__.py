"""Run every benchmark and print the figures (``make bench``)."""

from __future__ import annotations

import platform
import sys

from benchmarks import dashboard, invoice_list


def main() -> int:
    print(f"# flask-customer-portal benchmarks — Python {platform.python_version()} on {platform.machine()}")
    dashboard.run()
    invoice_list.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
