"""Timing helpers shared by the benchmarks.

Contenders are measured side by side: each round runs every contender once,
in an order that rotates from round to round, so that whatever else the
machine is doing at that moment (another process, a frequency change, a
garbage collection) lands on all of them alike. The figure kept for each is
the median of its rounds; the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Samples:
    """Wall times of one contender, in milliseconds."""

    name: str
    times_ms: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p90(self) -> float:
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


@dataclass(frozen=True)
class Comparison:
    """Interleaved samples of several contenders."""

    samples: Mapping[str, Samples]

    def __getitem__(self, name: str) -> Samples:
        return self.samples[name]

    def ratio(self, name: str, baseline: str) -> float:
        """Median over rounds of ``name``'s time divided by ``baseline``'s."""
        pairs = zip(self.samples[name].times_ms, self.samples[baseline].times_ms, strict=True)
        return statistics.median(a / b for a, b in pairs)


def compare(
    contenders: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    warmup: int = 5,
    setup: Mapping[str, Callable[[], object]] | None = None,
) -> Comparison:
    """Time every contender ``rounds`` times, interleaved (see the module doc).

    ``setup[name]``, if given, runs untimed before each call of that
    contender (to make a fresh one-time link, say).
    """
    if rounds < 1:
        raise ValueError("rounds must be 1 or more")
    names = list(contenders)
    prepare = setup or {}
    for _ in range(warmup):
        for name in names:
            if name in prepare:
                prepare[name]()
            contenders[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            if name in prepare:
                prepare[name]()
            func = contenders[name]
            start = time.perf_counter()
            func()
            times[name].append((time.perf_counter() - start) * 1000)
    return Comparison({name: Samples(name, tuple(values)) for name, values in times.items()})


def measure(func: Callable[[], object], *, warmup: int = 20, runs: int = 300) -> float:
    """Median wall time of ``func`` alone, in milliseconds."""
    return compare({"only": func}, rounds=runs, warmup=warmup)["only"].median


def verdict(met: bool) -> str:
    return "goal met" if met else "goal NOT met"
