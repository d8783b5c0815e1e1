"""Interleaved timing runs, ratios with their spread, and the CPU class every table names.

    from interleave import interleaved_runs, ratio, cpu_class
    runs = interleaved_runs({"A": a, "B": b, "C": c}, runs=5, iters=10, warmup=3)
    print(ratio(runs["A"], runs["B"]))     # "0.912x [0.897-0.931]": median of the per-run ratios, min-max

One *run* times every callable once as a block (``warmup`` untimed calls, then ``iters`` timed
ones, kept as their median), in the given order: runs go A,B,C,A,B,C,... A ratio between two
callables is computed per run (the two blocks of one run saw the same machine load) and reported
as the median over runs with the min-max of those per-run ratios as the spread. On a shared
machine the spread is the error bar: a difference inside it is a tie.

Blocks rather than call-by-call alternation: every runtime keeps worker threads spinning for a
while after a call (ONNX Runtime's pool, OpenVINO's TBB arena); alternating single calls between
runtimes on 2 cores makes each pay for the other's spinning. The block's warm-up calls absorb it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


#: ``--clock`` values: wall time, or CPU time of the whole process (every thread, spinning included).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved_runs(calls: dict[str, Callable[[], object]], runs: int, iters: int, warmup: int,
                     clock: str = "wall") -> dict[str, list[float]]:
    """Per-run median milliseconds of every callable: ``{name: [run0_ms, run1_ms, ...]}`` (``runs`` values each).

    ``clock="cpu"`` times process CPU time instead of wall time: on a machine shared with other jobs
    it measures the work a call costs rather than how long it waited for a core. Use it with 1
    thread (ONNX Runtime's pool and OpenVINO's workers spin while idle, and spinning is CPU time).
    """
    now = CLOCKS[clock]
    if runs < 1 or iters < 1 or warmup < 0:
        raise ValueError(f"runs >= 1, iters >= 1, warmup >= 0 expected, found {runs}, {iters}, {warmup}")
    medians: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            for _ in range(warmup):
                call()
            times = []
            for _ in range(iters):
                start = now()
                call()
                times.append((now() - start) * 1e3)
            medians[name].append(statistics.median(times))
    return medians


@dataclass(frozen=True)
class Ratio:
    """The median of per-run ratios and their min / max."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.3f}x [{self.low:.3f}-{self.high:.3f}]"

    @property
    def spread(self) -> float:
        return self.high - self.low


def ratio(numerator: list[float], denominator: list[float]) -> Ratio:
    """Per-run ``numerator[i] / denominator[i]`` (both from one :func:`interleaved_runs`), as a :class:`Ratio`."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"two equal, non-empty lists of runs expected, found {len(numerator)} and {len(denominator)}")
    values = [a / b for a, b in zip(numerator, denominator)]
    return Ratio(statistics.median(values), min(values), max(values))


def cpu_class() -> tuple[str, str]:
    """``(class, summary)``: the class the README's tables are keyed by (``"AMX"``, ``"AVX512-VNNI"``,
    ``"AVX-VNNI"``, ``"AVX2 only"``, or the ISA name) from :func:`edgecv.runtimes.cpu.cpu_features`,
    and its one-line summary (model name, int8 / bf16 support)."""
    from edgecv.runtimes.cpu import cpu_features

    features = cpu_features()
    flags = features.flags
    if "amx_int8" in flags:
        name = "AMX"
    elif flags & {"avx512_vnni", "avx512vnni"}:
        name = "AVX512-VNNI" + ("/BF16" if "avx512_bf16" in flags else "")
    elif "avx_vnni" in flags:
        name = "AVX-VNNI"
    elif features.vector_isa == "AVX2":
        name = "AVX2 only"
    else:
        name = features.vector_isa or "unknown"
    return name, features.summary()


def has_bf16() -> bool:
    """Native bf16 arithmetic on this CPU (AVX512-BF16 or AMX): the bf16 rows are run only then."""
    from edgecv.runtimes.cpu import cpu_features

    return bool(cpu_features().bf16)


def header(title: str, runs: int, iters: int, threads: int, clock: str = "wall") -> str:
    """The first line of every table: title, CPU class and the timing scheme."""
    name, summary = cpu_class()
    what = "process CPU ms" if clock == "cpu" else "wall ms"
    return (f"\n== {title} ==\n[CPU class: {name}] {summary}\n{threads} threads, {what}; every figure: median of {runs} "
            f"interleaved runs (each run: one block per row, median of {iters} calls); ratios: median of per-run "
            f"ratios [min-max over runs]")
