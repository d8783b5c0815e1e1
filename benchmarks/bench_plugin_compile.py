"""Ahead-of-time compile of every edgecv plugin kernel for every claimed GPU target, on this CPU.

    python benchmarks/bench_plugin_compile.py [--ptx-version 84]

For each plugin in edgecv.plugins.PLUGINS present in this install, compiles its kernels (with the
plugin's DEFAULT_ATTRS) for sm_87, sm_89 and sm_90 with a fresh Triton cache (so every figure is a
real LLVM + ptxas run, not a cache read) and prints compile time, PTX and cubin sizes, PTX ISA and
the minimum driver, then the total. Names the CPU class: compile time is CPU-bound.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from rich.console import Console
from rich.table import Table

from edgecv.plugins import available, plugin_module, plugin_names
from edgecv.plugins.compile import TARGETS
from edgecv.runtimes.cpu import cpu_features


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ptx-version", type=int, default=None, help="PTX ISA to emit, e.g. 84 (default: Triton's)")
    args = parser.parse_args(argv)
    console = Console(width=150)
    cpu = cpu_features()
    console.print(f"CPU: {cpu.model or 'unknown'} ({os.cpu_count()} logical cores)")
    table = Table("plugin", "kernel", "target", "compile s", "PTX KiB", "cubin KiB", "PTX ISA", "min driver")
    total = 0.0
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRITON_CACHE_DIR"] = cache  # fresh: no compile below is a cache hit
        for name in plugin_names(None):
            if not available(name):
                continue
            module = plugin_module(name)
            for cc in TARGETS:
                start = time.perf_counter()
                kernels = module.compile_node(module.DEFAULT_ATTRS, cc, ptx_version=args.ptx_version)
                total += time.perf_counter() - start
                for k in kernels:
                    table.add_row(name, k.name, k.target, f"{k.compile_seconds:.2f}", f"{len(k.ptx) / 1024:.1f}",
                                  f"{len(k.cubin) / 1024:.1f}", k.ptx_isa, k.min_driver)
    console.print(table)
    console.print(f"total compile time: {total:.2f} s for {len(TARGETS)} targets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
