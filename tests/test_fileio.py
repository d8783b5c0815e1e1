"""edgecv.fileio: a failed write leaves the previous file byte-identical and no temporary file behind.

The file-size limit case is real: a child process lowers RLIMIT_FSIZE (with SIGXFSZ ignored, so
the kernel answers the write with EFBIG instead of killing the process), as ``ulimit -f`` does.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgecv.fileio import WriteError, atomic_open, atomic_path, write_bytes, write_json, write_text, write_with

REPO = Path(__file__).resolve().parents[1]
OLD = b"the previous, good content\n" * 100


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Names in ``folder`` other than ``keep`` (temporary files a failed write would leave)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_writers_create_and_replace(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "doc.json"  # missing parent folders are created
    assert write_json(target, {"a": 1}) == target and json.loads(target.read_text()) == {"a": 1}
    write_text(target, "two")
    assert target.read_text() == "two"
    write_bytes(target, memoryview(b"\x00\x01"))
    assert target.read_bytes() == b"\x00\x01"
    write_with(target, lambda p: p.write_bytes(b"by name"))
    assert target.read_bytes() == b"by name"
    assert leftovers(target.parent, {"doc.json"}) == []


def test_exception_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(OLD)
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_open(target, "wb") as handle:
            handle.write(b"half of a new model")
            handle.flush()
            raise RuntimeError("crash in the middle of the write")
    assert target.read_bytes() == OLD
    assert leftovers(tmp_path, {"model.onnx"}) == []


def test_writer_reporting_failure_raises_write_error(tmp_path: Path) -> None:
    target = tmp_path / "annotated.png"
    target.write_bytes(OLD)

    def fails(path: Path) -> bool:  # like cv2.imwrite: writes part of the file, then returns False
        path.write_bytes(b"partial")
        return False

    with pytest.raises(WriteError, match="annotated.png"):
        write_with(target, fails)
    assert target.read_bytes() == OLD
    assert leftovers(tmp_path, {"annotated.png"}) == []


def test_temporary_name_keeps_the_suffix(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "image.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name != "image.png"
        tmp.write_bytes(b"png")
    assert (tmp_path / "image.png").read_bytes() == b"png"


def test_mode_of_the_replaced_file_is_kept(tmp_path: Path) -> None:
    private = tmp_path / "private.json"
    private.write_text("{}")
    private.chmod(0o600)
    write_json(private, {"new": True})
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    shared = tmp_path / "shared.json"
    shared.write_text("{}")
    shared.chmod(0o664)
    write_text(shared, "x")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664
    fresh = write_text(tmp_path / "fresh.txt", "x")  # not the 0600 of mkstemp
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644


def test_unwritable_folder_is_a_write_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(WriteError, match="a_file"):
        write_text(blocker / "out.json", "x")


def test_atomic_open_refuses_append(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'a'"):
        with atomic_open(tmp_path / "log.jsonl", "a"):
            pass


CHILD = textwrap.dedent("""
    import resource, signal, sys
    sys.path.insert(0, sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, as a shell's ulimit -f gives
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    from edgecv.fileio import WriteError, write_bytes
    try:
        write_bytes(sys.argv[1], b"x" * (1024 * 1024))
    except WriteError as exc:
        print(exc)
        sys.exit(2)
""")


def test_file_size_limit_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(OLD)
    run = subprocess.run([sys.executable, "-c", CHILD, str(target), str(REPO)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2, run.stderr
    assert "cannot write" in run.stdout and str(target) in run.stdout and "unchanged" in run.stdout
    assert target.read_bytes() == OLD
    assert leftovers(tmp_path, {"model.onnx"}) == []
    assert os.access(target, os.R_OK)
