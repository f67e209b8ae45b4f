"""Benchmarks: ``make bench`` (``python -m benchmarks``). Not part of ``make test``.

Every benchmark measures the portal and a baseline side by side in the same
run and prints the ratio, so the figures mean the same on any machine.
"""
