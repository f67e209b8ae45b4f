"""What the figures were measured on: CPU, cores, memory, Python, packages."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

#: Distributions whose versions change the figures.
PACKAGES = (
    "flask",
    "werkzeug",
    "jinja2",
    "sqlalchemy",
    "flask-sqlalchemy",
    "flask-babel",
    "babel",
    "flask-wtf",
    "fpdf2",
    "psycopg",
    "flask-security-too",
    "weasyprint",
    "gunicorn",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> list[str]:
    """One line per fact, for the top of a benchmark run."""
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return [
        f"CPU: {_cpu_model()} ({platform.machine()}), {usable} usable cores of {cores}",
        f"RAM: {_memory_gib()}",
        f"OS: {platform.system()} {platform.release()}",
        f"Python: {platform.python_implementation()} {platform.python_version()}",
        "Packages: " + ", ".join(f"{name} {_version(name)}" for name in PACKAGES),
    ]
