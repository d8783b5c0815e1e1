"""CPU feature reading: what int8 / bf16 can gain, from /proc/cpuinfo text."""

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
    assert "gain little or nothing over fp32" in features.summary() and "AMD EPYC" in features.summary()


def test_amx_machine_lists_its_extensions():
    features = parse_cpuinfo(SAPPHIRE)
    assert features.model.startswith("Intel") and features.vector_isa == "AVX-512"
    assert features.int8_dot == ["amx_int8", "avx512_vnni"] and features.bf16 == ["amx_bf16", "avx512_bf16"]


def test_unreadable_cpuinfo_is_unknown(tmp_path):
    features = cpu_features(tmp_path / "absent")
    assert not features.known and "unknown" in features.summary()
    assert cpu_features().summary()  # this machine: some line either way
