"""Extract the identifier-like strings of TensorRT's compiled Python module into a small text fixture.

    pip download --no-deps "tensorrt-cu12-bindings==10.13.*" "tensorrt-cu12-bindings==11.*" -d /tmp/trt
    python tools/trt_api_names.py /tmp/trt/tensorrt_cu12_bindings-10.13*.whl --out tests/data/tensorrt_api/10.13.txt
    python tools/trt_api_names.py /tmp/trt/tensorrt_cu12_bindings-11.4*.whl  --out tests/data/tensorrt_api/11.4.txt

The ``tensorrt.so`` extension of a bindings wheel contains every name pybind11 registers
(classes, methods, properties, enum members) as a C string. The wheels install without a GPU
but cannot be imported without the TensorRT libraries, so ``strings`` is the way to read their
API on a CPU machine. Output: one identifier per line (only strings that are a whole identifier ``[A-Za-z_][A-Za-z0-9_]{2,63}``), sorted,
deduplicated, with a header comment naming the wheel; ``tests/export/test_tensorrt_api_names.py``
checks every ``trt.X`` / ``.method`` edgecv uses against these lists.
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path

IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{2,63}")
#: Runs of printable bytes at least this long are "strings" (like ``strings -n 3``).
PRINTABLE = re.compile(rb"[\x20-\x7e]{3,}")
#: Noise from the ELF/C++ side that no Python API ever spells: mangled symbols, linker names.
NOISE = re.compile(r"^(_Z|__cxa|__gxx|__cxx|GLIBC|CXXABI|GCC_)|_ZN")
#: Where a linker may start a tail-merged string inside a longer one: after ``_`` or at a
#: camel-case hump (``ILogger`` also stores ``Logger``; ``CONDITIONAL_INPUT`` also ``INPUT``).
BOUNDARY = re.compile(r"(?<=_)[A-Za-z]|(?<=[a-z0-9])[A-Z]|(?<=[A-Z])[A-Z](?=[a-z])")


def boundary_suffixes(name: str) -> list[str]:
    """``name`` and its suffixes starting at a word boundary (3+ characters)."""
    return [name] + [name[m.start():] for m in BOUNDARY.finditer(name) if len(name) - m.start() >= 3]


def extract_names(blob: bytes) -> list[str]:
    """Sorted identifier-like names among the printable strings of ``blob``."""
    names: set[str] = set()
    for run in PRINTABLE.findall(blob):
        # pybind11 registers each name as its own NUL-terminated C string, so a whole run that
        # is one identifier is an API name; words inside docstrings and messages are not kept.
        if IDENT.fullmatch(run):
            name = run.decode("ascii")
            if not NOISE.search(name):
                names.update(boundary_suffixes(name))
    return sorted(names)


def python_names(source: str) -> list[str]:
    """Top-level functions, classes and assigned names of the wheel's pure-Python ``__init__.py``
    (``trt.volume``, ``trt.nptype``, ``trt.__version__`` live there, not in the extension)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return sorted(names)


def module_bytes(wheel: Path) -> tuple[str, bytes, str]:
    """``(member name, bytes, __init__.py text)`` of the compiled ``tensorrt*.so`` in a bindings wheel."""
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if re.search(r"tensorrt[^/]*\.(so|pyd)$", n)]
        if not members:
            raise SystemExit(f"expected a tensorrt*.so in {wheel}, found {archive.namelist()[:10]}")
        init = members[0].rsplit("/", 1)[0] + "/__init__.py"
        text = archive.read(init).decode("utf-8") if init in archive.namelist() else ""
        return members[0], archive.read(members[0]), text


def write_fixture(out: Path, header: str, names: list[str]) -> None:
    """Write ``names`` one a line under the ``header`` comment (a tests/data name-list fixture)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + "\n" + "\n".join(names) + "\n")
    print(f"{out}: {len(names)} names, {out.stat().st_size // 1024} KB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="a tensorrt-cu12-bindings wheel (pip download --no-deps)")
    parser.add_argument("--out", type=Path, required=True, help="text fixture to write")
    args = parser.parse_args(argv)
    member, blob, init = module_bytes(args.wheel)
    names = sorted(set(extract_names(blob)) | set(python_names(init)))
    write_fixture(args.out, f"# identifier-like strings of {member} in {args.wheel.name} (tools/trt_api_names.py)",
                  names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
