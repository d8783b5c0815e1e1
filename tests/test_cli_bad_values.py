"""Every command, walked with bad values: one line naming what was expected, exit code 2, no
traceback, and nothing written. Values are refused before any slow work (export, calibration)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecv.cli import app

#: (arguments, a phrase the one-line message must contain). ``{onnx}`` is the demo artifact,
#: ``{out}`` a fresh folder that must stay empty.
CASES = [
    (["export", "yolo", "--conf", "1.5", "--out", "{out}/m.onnx"], "conf"),
    (["export", "yolo", "--iou", "-0.1", "--out", "{out}/m.onnx"], "iou"),
    (["export", "yolo", "--max-det", "5000", "--out", "{out}/m.onnx"], "3840"),
    (["export", "yolo", "--max-det", "0", "--out", "{out}/m.onnx"], "max_det"),
    (["export", "yolo", "--imgsz", "100", "--out", "{out}/m.onnx"], "multiple of 32"),
    (["export", "yolo", "--fidelity-match", "1.5", "--out", "{out}/m.onnx"], "fidelity"),
    (["export", "yolo", "--check-images", "{out}/none", "--out", "{out}/m.onnx"], "none"),
    (["export", "yolo", "--int8", "--calib-data", "{out}/none", "--out", "{out}/m.onnx"], "none"),
    (["export", "yolo", "--int8", "--calib-method", "magic", "--out", "{out}/m.onnx"], "magic"),
    (["export", "yolo", "--int8", "--target", "tpu", "--out", "{out}/m.onnx"], "tpu"),
    (["export", "yolo", "--int8", "--class-map", "a=b=c", "--out", "{out}/m.onnx"], "class map"),
    (["export", "yolo", "--int8", "--class-map", "circle", "--out", "{out}/m.onnx"], "DATASET=MODEL"),
    (["predict", "{onnx}", "--source", "{out}/none.jpg", "--save", "{out}/p"], "none.jpg"),
    (["predict", "{onnx}", "--source", "{out}/none.jpg", "--conf", "2", "--save", "{out}/p"], "conf"),
    (["predict", "{onnx}", "--source", "0", "--backend", "tpu"], "tpu"),
    (["predict", "{out}/none.onnx", "--source", "0"], "none.onnx"),
    (["eval", "{onnx}", "--data", "{out}/none"], "none"),
    (["eval", "{onnx}", "--class-map", "a=b=c"], "class map"),
    (["calibrate", "{onnx}", "--method", "magic", "--out", "{out}/q.onnx"], "magic"),
    (["calibrate", "{onnx}", "--target", "tpu", "--out", "{out}/q.onnx"], "tpu"),
    (["calibrate", "{onnx}", "--data", "{out}/none", "--out", "{out}/q.onnx"], "none"),
    (["calibrate", "{onnx}", "--class-map", "circle", "--out", "{out}/q.onnx"], "DATASET=MODEL"),
    (["benchmark", "{onnx}", "--imgsz", "64y48"], "64y48"),
    (["benchmark", "{onnx}", "--backend", "tpu"], "tpu"),
    (["info", "{out}/none.onnx"], "none.onnx"),
    (["build", "{onnx}", "--opt-shape", "1x3xbig", "--out", "{out}/m.engine"], "1x3xbig"),
    (["train", "yolo", "--data", "coco", "--out", "{out}/t.pt"], "coco"),
    (["train", "detr", "--out", "{out}/t.pt"], "detr"),
]


@pytest.mark.parametrize("args, phrase", CASES, ids=[" ".join(a[:1] + a[2:4]) for a, _ in CASES])
def test_bad_value_is_one_line_and_exit_2(args: list[str], phrase: str, demo_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    argv = [a.format(onnx=demo_onnx, out=out) for a in args]
    result = CliRunner().invoke(app, argv)
    text = result.output.strip()
    assert result.exit_code == 2, (argv, result.output)
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and phrase.lower() in " ".join(text.split()).lower(), text
    assert list(out.iterdir()) == [], f"{argv} wrote {list(out.iterdir())}"
