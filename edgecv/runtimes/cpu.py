"""Which reduced-precision paths this CPU can speed up, read from the instruction-set flags.

    from edgecv.runtimes.cpu import cpu_features
    features = cpu_features()          # CpuFeatures, from /proc/cpuinfo (Linux; empty elsewhere)
    print(features.summary())          # e.g. "AMD EPYC: AVX2, no int8 dot-product (VNNI/AMX): ..."

Why it matters (measured with ``benchmarks/bench_backends.py``): on an AVX512-VNNI CPU the int8
graph ran the demo YOLO at 0.42x the fp32 latency; on an AVX2-only CPU OpenVINO's int8
convolutions (``jit_avx2_I8``) took as long as its fp32 ones (``brgconv_avx2_f32``), so int8 was
no faster than fp32 there. bf16 pays with AVX512-BF16 or AMX; OpenVINO picks it by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Flags of /proc/cpuinfo that carry an int8 dot-product instruction.
INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512vnni")
#: Flags that carry native bf16 arithmetic.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class CpuFeatures:
    """The model name and the instruction-set flags of the first CPU listed (empty when unknown)."""

    model: str
    flags: frozenset[str]

    @property
    def known(self) -> bool:
        return bool(self.flags)

    @property
    def vector_isa(self) -> str:
        """The widest SIMD extension: ``"AVX-512"``, ``"AVX2"``, ``"AVX"``, ``"SSE"``, ``"NEON"`` or ``""``."""
        for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("asimd", "NEON"),
                           ("sse4_2", "SSE")):
            if flag in self.flags:
                return name
        return ""

    @property
    def int8_dot(self) -> list[str]:
        """The int8 dot-product extensions present (empty: int8 is no faster than fp32 on convolutions)."""
        return [flag for flag in INT8_DOT_FLAGS if flag in self.flags]

    @property
    def bf16(self) -> list[str]:
        return [flag for flag in BF16_FLAGS if flag in self.flags]

    def summary(self) -> str:
        """One line for people: the ISA and what int8 / bf16 can gain here."""
        if not self.known:
            return "CPU features unknown (no /proc/cpuinfo): measure int8 against fp32 before choosing"
        int8 = (f"int8 dot-product: {', '.join(self.int8_dot)}" if self.int8_dot else
                "no int8 dot-product (VNNI/AMX): measure int8 against fp32 (on AVX2 it paid 0.63-0.73x in our benchmarks)")
        bf16 = f"bf16: {', '.join(self.bf16)}" if self.bf16 else "no native bf16"
        return f"{self.model or 'CPU'}: {self.vector_isa or 'no SIMD flags'}; {int8}; {bf16}"


def parse_cpuinfo(text: str) -> CpuFeatures:
    """Parse the text of ``/proc/cpuinfo`` (x86 ``flags`` / ARM ``Features`` of the first processor)."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return CpuFeatures(model, flags)


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuFeatures:
    """:func:`parse_cpuinfo` of ``cpuinfo``; an empty :class:`CpuFeatures` where the file is unreadable."""
    try:
        return parse_cpuinfo(Path(cpuinfo).read_text(errors="replace"))
    except OSError:
        return CpuFeatures("", frozenset())
