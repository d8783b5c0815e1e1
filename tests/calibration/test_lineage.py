"""Stale pairs: an int8/fp16 graph records its fp32 parent's SHA-256; opening it or re-exporting
the fp32 graph notices when the parent beside it has changed."""

from __future__ import annotations

import shutil
import warnings

import onnx
import pytest
from rich.console import Console

from edgecv.calibration import quantize
from edgecv.calibration.api import read_metadata, write_metadata
from edgecv.runtimes import Predictor
from edgecv.runtimes.lineage import StaleArtifactWarning, file_sha256, stale_derivatives


def _rethreshold(path, conf: float) -> None:
    """Rewrite the fp32 graph at ``path`` with another score threshold in its metadata (a re-export's effect)."""
    model = onnx.load(str(path))
    meta = read_metadata(model, str(path))
    meta.conf_threshold = conf
    write_metadata(model, meta)
    onnx.save(model, str(path))


def _open_warnings(path) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Predictor(path).close()
    return [str(w.message) for w in caught if issubclass(w.category, StaleArtifactWarning)]


def test_int8_records_parent_and_warns_when_parent_changes(model_copy, tmp_path):
    int8 = quantize(model_copy, samples=4, cache=False, console=Console(quiet=True)).path
    meta = read_metadata(onnx.load(str(int8)), str(int8))
    assert meta.parent == {"name": "model.onnx", "sha256": file_sha256(model_copy)}
    assert _open_warnings(int8) == []  # a fresh pair is quiet
    _rethreshold(model_copy, 0.3)
    messages = _open_warnings(int8)
    assert len(messages) == 1 and "\n" not in messages[0]
    assert str(int8) in messages[0] and str(model_copy) in messages[0]
    assert f"edgecv calibrate {model_copy} --target onnxruntime --method percentile --out {int8}" in messages[0]
    # shipped alone (no parent beside it): nothing to compare, no warning
    alone = tmp_path / "deploy" / int8.name
    alone.parent.mkdir()
    shutil.copy(int8, alone)
    assert _open_warnings(alone) == []


def test_reexport_lists_stale_derived_graphs(model_copy, capsys):
    from edgecv.export.api import export_model
    from edgecv.export.fp16 import export_fp16
    from edgecv.export.onnx_export import ExportOptions

    int8 = quantize(model_copy, samples=4, target="tensorrt", cache=False, console=Console(quiet=True)).path
    fp16 = export_fp16(model_copy)
    assert stale_derivatives(model_copy) == []
    export_model("yolo", out=model_copy, opts=ExportOptions(imgsz=160, conf=0.3, check=False),
                 console=Console(width=120))
    out = capsys.readouterr().out
    warned = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warned) == 2
    assert any(str(int8) in line and "edgecv calibrate" in line and "--target tensorrt" in line
               for line in warned), warned
    assert any(str(fp16) in line and "export_fp16" in line for line in warned)
    assert {p for p, _ in stale_derivatives(model_copy)} == {int8, fp16}


def test_fp16_parent_is_checked_on_open(model_copy):
    from edgecv.export.fp16 import export_fp16

    fp16 = export_fp16(model_copy)
    assert read_metadata(onnx.load(str(fp16)), str(fp16)).parent["sha256"] == file_sha256(model_copy)
    _rethreshold(model_copy, 0.2)
    with pytest.warns(StaleArtifactWarning, match="model_fp16.onnx \\(fp16\\) was made from another model.onnx"):
        Predictor(fp16).close()


def test_scan_skips_unrelated_and_unreadable_siblings(model_copy):
    folder = model_copy.parent
    (folder / "junk.onnx").write_bytes(b"not a protobuf at all \x00\xff" * 10)
    model = onnx.load(str(model_copy))
    meta = read_metadata(model, str(model_copy))
    meta.precision, meta.parent = "fp16", {"name": "other.onnx", "sha256": "0" * 64}  # another parent
    write_metadata(model, meta)
    onnx.save(model, str(folder / "unrelated_fp16.onnx"))
    meta.parent = {"name": "model.onnx", "sha256": "0" * 64}
    write_metadata(model, meta)
    onnx.save(model, str(folder / "old_fp16.onnx"))
    with pytest.warns(StaleArtifactWarning, match="skipped .*junk.onnx"):
        stale = stale_derivatives(model_copy)
    assert [path.name for path, _ in stale] == ["old_fp16.onnx"]
