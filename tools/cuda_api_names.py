"""Extract the identifier-like strings of cuda-python's runtime bindings into a small text fixture.

    pip download --no-deps "cuda-bindings==12.9.*" -d /tmp/cuda12
    pip download --no-deps "cuda-bindings==13.*" -d /tmp/cuda13
    python tools/cuda_api_names.py /tmp/cuda12/cuda_bindings-12.9*.whl --out tests/data/cuda_api/12.9.txt
    python tools/cuda_api_names.py /tmp/cuda13/cuda_bindings-13.*.whl --out tests/data/cuda_api/13.5.txt

Same method as ``tools/trt_api_names.py`` (whose extraction functions it reuses): the Cython
extension ``cuda/bindings/runtime*.so`` holds every function, enum and member name it exports as
a C string (enum members excepted: those are read from the ``cyruntime`` declaration files),
and ``cuda/bindings/utils/__init__.py`` (12.9.1+) is plain Python. The wheels cannot
be imported without a CUDA driver, so this reads them as files. ``tests/export/test_tensorrt_build.py``
checks every ``cudart.X`` (and ``cuda.bindings.utils`` name) edgecv uses against these lists.
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trt_api_names import extract_names, python_names, write_fixture  # noqa: E402


def wheel_names(wheel: Path) -> tuple[str, list[str]]:
    """``(runtime member name, sorted names)`` of a cuda-bindings wheel: runtime extension + utils package."""
    with zipfile.ZipFile(wheel) as archive:
        members = archive.namelist()
        runtime = [n for n in members if re.fullmatch(r"cuda/bindings/runtime[^/]*\.(so|pyd)", n)]
        if not runtime:
            raise SystemExit(f"expected cuda/bindings/runtime*.so in {wheel}, found none")
        names = set(extract_names(archive.read(runtime[0])))
        for member in members:
            if re.fullmatch(r"cuda/bindings/utils/[^/]*\.py", member):
                names |= set(python_names(archive.read(member).decode("utf-8")))
            elif re.fullmatch(r"cuda/bindings/cyruntime(_types)?\.(pxd|pxi)", member):
                # Cython stores enum member names (cudaMemcpyHostToDevice, ...) in a compressed
                # string table; the declaration files list them as plain tokens.
                names |= set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]{2,63}\b", archive.read(member).decode("utf-8")))
    return runtime[0], sorted(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="a cuda-bindings wheel (pip download --no-deps)")
    parser.add_argument("--out", type=Path, required=True, help="text fixture to write")
    args = parser.parse_args(argv)
    member, names = wheel_names(args.wheel)
    write_fixture(args.out, f"# identifier-like strings of {member} (+ cuda/bindings/utils) in {args.wheel.name} "
                  "(tools/cuda_api_names.py)", names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
