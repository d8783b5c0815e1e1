"""CPU feature reading: what int8 / bf16 can gain, from /proc/cpuinfo text."""

from pathlib import Path

from edgecv.runtimes.cpu import cpu_features, parse_cpuinfo

AVX2_ONLY = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse4_2 avx avx2 fma
"""
SAPPHIRE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8
processor\t: 1
model name\t: ignored
"""


def test_avx2_without_vnni_says_int8_does_not_pay():
    features = parse_cpuinfo(AVX2_ONLY)
    assert features.vector_isa == "AVX2" and features.int8_dot == [] and features.bf16 == []
    assert "no int8 dot-product (VNNI/AMX): measure int8" in features.summary() and "AMD EPYC" in features.summary()


def test_amx_machine_lists_its_extensions():
    features = parse_cpuinfo(SAPPHIRE)
    assert features.model.startswith("Intel") and features.vector_isa == "AVX-512"
    assert features.int8_dot == ["amx_int8", "avx512_vnni"] and features.bf16 == ["amx_bf16", "avx512_bf16"]


def test_unreadable_cpuinfo_is_unknown(tmp_path):
    features = cpu_features(tmp_path / "absent")
    assert not features.known and "unknown" in features.summary()
    assert features.summary() == ("CPU features unknown (no /proc/cpuinfo): measure int8 against fp32 "
                                  "before choosing")


def test_default_reads_this_machines_cpuinfo():
    """The suite runs on Linux: the default path is /proc/cpuinfo, and what it says is what comes back."""
    here = cpu_features()
    assert here == parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    assert here.known and here.vector_isa  # an x86 or ARM CPU lists SIMD flags
    assert here.summary().startswith(f"{here.model or 'CPU'}: {here.vector_isa};")
