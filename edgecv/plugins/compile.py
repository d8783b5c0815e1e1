"""Compile edgecv's Triton kernels ahead of time, without a GPU, and say what each compiled kernel needs.

``triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", cc, 32))`` runs
Triton's whole NVIDIA pipeline (TTIR -> TTGIR -> LLVM -> PTX, then the ``ptxas`` bundled in the
triton wheel -> cubin) on a CPU-only machine. :func:`compile_kernel` wraps it and returns a
:class:`CompiledKernel`: kernel name, PTX text, cubin bytes, the PTX ISA version written in the
PTX (``.version 8.8``), the target (``sm_87``), launch facts (warps, shared memory) and the
minimum NVIDIA driver able to load that PTX.

Why the driver matters: TensorRT's Quick Deployable Plugins take the kernel as **PTX** (the AOT
route accepts nothing else today), and the driver JIT-compiles it. A driver only JIT-compiles PTX
ISA versions up to the one of the CUDA release it ships with -- CUDA's minor-version
compatibility does not cover PTX -- so the driver floor of a kernel is that of the CUDA release
which introduced its PTX ISA (:data:`PTX_ISA_MIN_DRIVER`, from NVIDIA's CUDA release notes,
Linux x86-64 "toolkit driver version" column). Triton writes the newest ISA its bundled ptxas
knows unless ``ptx_version`` is given (e.g. ``84`` for CUDA 12.4 drivers, if the kernel uses no
newer feature).

Targets claimed: :data:`TARGETS` (sm_87 Jetson Orin, sm_89 Ada, sm_90 Hopper; Triton emits
``sm_90a`` for the latter: arch-specific code that runs on compute capability 9.0 only, which is
exactly the claim). The QDP AOT
route needs TensorRT >= 10.10: on Jetson that is JetPack 7 (its driver, CUDA 13, loads every ISA
in the table); JetPack 6 ships TensorRT 10.3 and has no AOT plugins at all.

Compiled PTX keeps Triton's two trailing pointer parameters (global / profile scratch); TensorRT
does not pass them, so :func:`compile_kernel` refuses a kernel whose scratch sizes are not 0
(then those parameters are never read).

Importing this module is cheap; triton is imported by the functions that compile.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from edgecv.errors import ExportError, MissingDependencyError

#: Compute capabilities (major * 10 + minor) edgecv compiles and claims its plugin kernels for.
TARGETS = (87, 89, 90)

#: PTX ISA version -> (CUDA release that introduced it, minimum Linux x86-64 driver of that release).
PTX_ISA_MIN_DRIVER: dict[str, tuple[str, str]] = {
    "7.8": ("11.8", "520.61.05"),
    "8.0": ("12.0", "525.60.13"),
    "8.1": ("12.1", "530.30.02"),
    "8.2": ("12.2", "535.54.03"),
    "8.3": ("12.3", "545.23.06"),
    "8.4": ("12.4", "550.54.14"),
    "8.5": ("12.5", "555.42.02"),
    "8.6": ("12.6", "560.28.03"),
    "8.7": ("12.8", "570.26"),
    "8.8": ("12.9", "575.51.03"),
    "9.0": ("13.0", "580.65.06"),
}

_PTX_VERSION = re.compile(r"^\s*\.version\s+(\d+\.\d+)", re.MULTILINE)
_PTX_TARGET = re.compile(r"^\s*\.target\s+(sm_\w+)", re.MULTILINE)


@dataclass(frozen=True)
class CompiledKernel:
    """One kernel compiled for one target. ``ptx`` is text, ``cubin`` bytes."""

    name: str
    target: str  # "sm_87"
    ptx: str
    cubin: bytes
    ptx_isa: str  # "8.8"
    cuda_version: str  # CUDA release that introduced ptx_isa
    min_driver: str  # minimum driver that JIT-compiles this PTX
    num_warps: int
    shared_mem: int  # bytes of shared memory per program
    compile_seconds: float

    def record(self) -> dict[str, Any]:
        """What ``model.engine.json`` keeps of the kernel (no code: the engine embeds it)."""
        return {"kernel": self.name, "target": self.target, "ptx_isa": self.ptx_isa, "cuda": self.cuda_version,
                "min_driver": self.min_driver, "num_warps": self.num_warps, "shared_mem": self.shared_mem,
                "ptx_bytes": len(self.ptx.encode()), "cubin_bytes": len(self.cubin)}


def parse_capability(value: str | int) -> int:
    """``"8.7"`` / ``"87"`` / ``"sm_87"`` / ``87`` -> ``87``.

    Raises:
        ExportError: anything else.
    """
    text = str(value).strip().lower().removeprefix("sm_")
    match = re.fullmatch(r"(\d+)\.(\d)|(\d{2,3})", text)
    if not match:
        raise ExportError(f"expected a compute capability like 8.7 or sm_87, found {value!r}")
    return int(match.group(1)) * 10 + int(match.group(2)) if match.group(1) else int(match.group(3))


def check_target(capability: str | int) -> int:
    """The capability as an int when edgecv claims it; else a one-line :class:`ExportError`."""
    cc = parse_capability(capability)
    if cc not in TARGETS:
        claimed = ", ".join(f"sm_{t}" for t in TARGETS)
        raise ExportError(f"edgecv's plugin kernels are compiled and claimed for {claimed}, found sm_{cc}; build "
                          "without --plugins (the portable graph) on this GPU")
    return cc


def min_driver(ptx_isa: str) -> tuple[str, str]:
    """``(cuda_version, min_driver)`` for a PTX ISA version; an unknown ISA is an :class:`ExportError`."""
    if ptx_isa not in PTX_ISA_MIN_DRIVER:
        raise ExportError(f"PTX ISA {ptx_isa}: expected one of {sorted(PTX_ISA_MIN_DRIVER)} (edgecv's driver table "
                          "in edgecv/plugins/compile.py), found a newer one; extend the table from CUDA's release notes")
    return PTX_ISA_MIN_DRIVER[ptx_isa]


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def check_driver(kernel_record: dict[str, Any], driver_cuda: str) -> None:
    """Raise :class:`ExportError` unless a driver supporting CUDA ``driver_cuda`` (e.g. ``"12.4"``, what
    ``cudaDriverGetVersion`` reports) can JIT-compile the kernel's PTX ISA."""
    need = str(kernel_record["cuda"])
    if _version_tuple(driver_cuda) < _version_tuple(need):
        raise ExportError(f"plugin kernel {kernel_record['kernel']} ({kernel_record['target']}) is PTX ISA "
                          f"{kernel_record['ptx_isa']}: expected a driver for CUDA >= {need} (driver >= "
                          f"{kernel_record['min_driver']}), found one for CUDA {driver_cuda}; update the driver or "
                          "build without --plugins")


def _require_triton() -> Any:
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as exc:
        raise MissingDependencyError(f"compiling edgecv's plugin kernels needs triton ({exc}); install the "
                                     "plugins extra: pip install 'edgecv[plugins]'") from exc
    return triton, ASTSource, GPUTarget


def compile_kernel(fn: Callable, signature: dict[str, str], constexprs: dict[str, Any], capability: str | int, *,
                   num_warps: int = 4, ptx_version: int | None = None) -> CompiledKernel:
    """Compile the ``@triton.jit`` kernel ``fn`` for ``capability`` (no GPU needed).

    ``signature``: runtime arguments -> Triton type (``"*fp32"``, ``"i32"``); ``constexprs``:
    compile-time arguments -> values (added to the signature as ``"constexpr"``). FMA contraction
    is off (``enable_fp_fusion=False``) so IoU and interpolation round as on the CPU twin.

    Raises:
        ExportError: an unclaimed target, a kernel needing scratch memory, an unknown PTX ISA.
        MissingDependencyError: triton is not installed.
    """
    cc = check_target(capability)
    triton, ast_source, gpu_target = _require_triton()
    full = dict(signature)
    full.update({name: "constexpr" for name in constexprs})
    options: dict[str, Any] = {"num_warps": int(num_warps), "enable_fp_fusion": False}
    if ptx_version is not None:
        options["ptx_version"] = int(ptx_version)
    start = time.perf_counter()
    compiled = triton.compile(ast_source(fn=fn, signature=full, constexprs=dict(constexprs)),
                              target=gpu_target("cuda", cc, 32), options=options)
    seconds = time.perf_counter() - start
    meta = compiled.metadata
    scratch = int(getattr(meta, "global_scratch_size", 0) or 0) + int(getattr(meta, "profile_scratch_size", 0) or 0)
    if scratch:
        raise ExportError(f"kernel {meta.name}: expected no global/profile scratch (TensorRT passes none), found "
                          f"{scratch} bytes")
    ptx = compiled.asm["ptx"]
    isa_match, target_match = _PTX_VERSION.search(ptx), _PTX_TARGET.search(ptx)
    if isa_match is None or target_match is None:
        raise ExportError(f"kernel {meta.name}: expected '.version' and '.target' lines in the PTX, found none")
    cuda, driver = min_driver(isa_match.group(1))
    return CompiledKernel(name=str(meta.name), target=target_match.group(1), ptx=ptx, cubin=bytes(compiled.asm["cubin"]),
                          ptx_isa=isa_match.group(1), cuda_version=cuda, min_driver=driver,
                          num_warps=int(meta.num_warps), shared_mem=int(meta.shared), compile_seconds=seconds)


def current_capability() -> int:
    """Compute capability of the GPU TensorRT builds on (Triton's active CUDA driver), e.g. 87."""
    import triton

    return int(triton.runtime.driver.active.get_current_target().arch)
