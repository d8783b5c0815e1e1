"""Ahead-of-time compile of a Triton kernel for a GPU target, on a machine without a GPU.

A stand-in, private to this package, for the shared ``edgecv/plugins/compile.py`` (same
``compile_kernel`` call and ``CompiledKernel`` fields; the merge replaces this module by that one):
``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`` lowers the kernel to PTX and,
with the ptxas Triton ships, to a cubin for compute capability ``cc``, FMA contraction off so the
GPU rounds as the interpreter and the twin do. The record says the PTX ISA version and the driver
that JIT-compiles it (TensorRT's AOT plugins take PTX). Triton appends two scratch pointers to
the kernel's parameters that TensorRT does not pass: a kernel needing scratch memory is refused.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from edgecv.errors import ExportError

#: GPU targets claimed: Jetson Orin (8.7), Ada (8.9), Hopper (9.0).
TARGETS = (87, 89, 90)
#: PTX ISA version -> (CUDA release that introduced it, minimum Linux driver of that release).
PTX_DRIVER = {"8.4": ("12.4", "550.54.14"), "8.5": ("12.5", "555.42.02"), "8.7": ("12.8", "570.26"),
              "8.8": ("12.9", "575.51.03"), "9.0": ("13.0", "580.65.06")}


@dataclass(frozen=True)
class CompiledKernel:
    """One kernel compiled for one target (``ptx`` text, ``cubin`` bytes)."""

    name: str
    target: str
    ptx: str
    cubin: bytes
    ptx_isa: str
    cuda_version: str
    min_driver: str
    num_warps: int
    shared_mem: int
    compile_seconds: float

    def record(self) -> dict[str, Any]:
        """What ``model.engine.json`` keeps of the kernel."""
        return {"kernel": self.name, "target": self.target, "ptx_isa": self.ptx_isa, "cuda": self.cuda_version,
                "min_driver": self.min_driver, "num_warps": self.num_warps, "shared_mem": self.shared_mem,
                "ptx_bytes": len(self.ptx.encode()), "cubin_bytes": len(self.cubin)}


def compile_kernel(fn: Callable, signature: dict[str, str], constexprs: dict[str, Any], capability: str | int, *,
                   num_warps: int = 4, ptx_version: int | None = None) -> CompiledKernel:
    """``fn`` compiled for ``sm_<capability>`` (87, "8.7" or "sm_87"); raises ExportError for an
    unclaimed target, a kernel needing scratch memory or an unknown PTX ISA."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    cc = int(str(capability).lower().removeprefix("sm_").replace(".", ""))
    if cc not in TARGETS:
        raise ExportError(f"plugin kernels: expected a target in {['sm_%d' % t for t in TARGETS]}, found sm_{cc}")
    options: dict[str, Any] = {"num_warps": num_warps, "enable_fp_fusion": False}
    if ptx_version is not None:
        options["ptx_version"] = ptx_version
    start = time.perf_counter()
    compiled = triton.compile(ASTSource(fn=fn, signature={**signature, **{k: "constexpr" for k in constexprs}},
                                        constexprs=dict(constexprs)), target=GPUTarget("cuda", cc, 32), options=options)
    seconds = time.perf_counter() - start
    meta = compiled.metadata
    if (meta.global_scratch_size or 0) + (getattr(meta, "profile_scratch_size", 0) or 0):
        raise ExportError(f"kernel {meta.name}: expected no scratch memory (TensorRT passes none), found some")
    ptx = compiled.asm["ptx"]
    isa = re.search(r"^\s*\.version\s+(\d+\.\d+)", ptx, re.M)
    target = re.search(r"^\s*\.target\s+(sm_\w+)", ptx, re.M)
    if isa is None or target is None or isa.group(1) not in PTX_DRIVER:
        raise ExportError(f"kernel {meta.name}: expected a PTX ISA in {sorted(PTX_DRIVER)}, found "
                          f"{isa.group(1) if isa else 'none'}")
    cuda, driver = PTX_DRIVER[isa.group(1)]
    return CompiledKernel(name=str(meta.name), target=target.group(1), ptx=ptx, cubin=bytes(compiled.asm["cubin"]),
                          ptx_isa=isa.group(1), cuda_version=cuda, min_driver=driver, num_warps=int(meta.num_warps),
                          shared_mem=int(meta.shared), compile_seconds=seconds)
