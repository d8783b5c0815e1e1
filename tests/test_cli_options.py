"""Every CLI option, passed once, checked for its EFFECT (not only exit code 0).

One row per option: ``(command, option, check)``. Options whose effects are independent share one
run (a module-scoped export with a dozen options combined, one calibrate run, one benchmark run),
so the table stays within its time budget on 2 cores: models at 128-160 px, 3-6 images, 4
calibration samples. The COCO branches of ``eval`` and ``calibrate`` (a folder written by
:func:`edgecv.data.coco.write_coco` with the demo's class names) are rows too.

Where an effect is not visible in a file (``predict --threads``, ``--backend``, ``--rect``,
``benchmark --warmup``), a recording subclass of the real :class:`Predictor` notes what the command
built and fed it; the real predictor still does all the work.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.data.coco import write_coco
from edgecv.data.synthetic import CLASS_NAMES, ShapesDataset
from edgecv.metadata import METADATA_KEY
from edgecv.runtimes.predictor import Predictor

runner = CliRunner()
NAMES = ["a", "b", "c", "d", "e"]  # --names for the demo's 5 classes
STEM_CONV = "/model/stem/stem.0/conv/Conv"
COCO_IMAGES = 6


def run(*args: object) -> str:
    """Invoke ``edgecv *args`` in-process; fails the test with the output unless it exits 0."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def meta(path: Path) -> dict:
    """The edgecv metadata document of an ONNX artifact, as plain JSON."""
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[METADATA_KEY])


def int8_graph(folder: Path) -> Path:
    """The int8 graph beside an export (``model_int8.onnx`` today, ``model_int8_<target>.onnx`` later)."""
    found = sorted(folder.glob("model_int8*.onnx"))
    assert len(found) == 1, found
    return found[0]


def dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


class Recorder:
    """Patches Predictor with a subclass that records each instance, its thread setting and input shapes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[dict] = []
        made = self.made

        class Recording(Predictor):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                session = getattr(self.backend, "session", None)
                self.record = {"backend": self.backend.name, "shapes": [], "calls": 0,
                               "threads": session.get_session_options().intra_op_num_threads if session else None}
                made.append(self.record)
                infer = self.backend.infer

                def recording_infer(batch: np.ndarray) -> dict:
                    self.record["shapes"].append(tuple(batch.shape))
                    return infer(batch)

                self.backend.infer = recording_infer

            def predict_batch(self, images, *, conf=None):
                self.record["calls"] += 1
                return super().predict_batch(images, conf=conf)

        import edgecv.runtimes
        import edgecv.runtimes.predictor

        monkeypatch.setattr(edgecv.runtimes, "Predictor", Recording)
        monkeypatch.setattr(edgecv.runtimes.predictor, "Predictor", Recording)


# --- shared inputs and runs (module scope: each is made once) ----------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli_options")


@pytest.fixture(scope="module")
def coco(work: Path) -> Path:
    """A COCO folder of the first 6 synthetic validation scenes at 160 px, categories named as the demo's."""
    folder = work / "coco"
    write_coco(ShapesDataset("val", COCO_IMAGES, 160, seed=0), folder, show_progress=False)
    assert [c["name"] for c in json.loads((folder / "annotations.json").read_text())["categories"]] == list(CLASS_NAMES)
    return folder


@pytest.fixture(scope="module")
def images(work: Path) -> Path:
    """Three 160x160 scenes, and ``wide.png``: a 160x96 crop (w x h) for --rect."""
    folder = work / "images"
    folder.mkdir()
    data = ShapesDataset("test", 3, 160, seed=11)
    for i in range(3):
        cv2.imwrite(str(folder / f"scene{i}.png"), data[i].image)
    cv2.imwrite(str(work / "wide.png"), data[0].image[32:128])
    return folder


@pytest.fixture(scope="module")
def exported(work: Path, coco: Path) -> dict:
    """``e1``: fixed batch 2 with thresholds, opset, K, fp16 and int8 options; ``e2``: dynamic, renamed, checked."""
    e1 = work / "e1" / "model.onnx"
    e1_log = run("export", "yolo", "--imgsz", 160, "--batch", 2, "--conf", 0.2, "--iou", 0.5, "--opset", 13,
                 "--max-det", 7, "--out", e1, "--no-check", "--fp16", "--int8", "--calib-data", coco,
                 "--calib-samples", 4, "--calib-method", "minmax", "--max-drop", 0, "--eval-count", 4)
    e2 = work / "e2" / "model.onnx"
    e2_log = run("export", "yolo", "--imgsz", 128, "--dynamic", "--names", ",".join(NAMES), "--out", e2)
    return {"e1": e1, "e1_log": e1_log, "e2": e2, "e2_log": e2_log}


@pytest.fixture(scope="module")
def predict_base(work: Path, exported: dict, images: Path) -> list[dict]:
    """Detections of the dynamic artifact on the three scenes with default options (from --save's jsonl)."""
    run("predict", exported["e2"], "--source", images, "--save", work / "pred_base")
    return [json.loads(line) for line in (work / "pred_base" / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def torch_eval_base(work: Path) -> dict:
    """PyTorch eval of the demo weights, 160 px, 4 scenes, default conf/iou."""
    out = work / "torch_base.json"
    run("eval", "yolo", "--imgsz", 160, "--count", 4, "--json", out)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def calibrated(work: Path, exported: dict) -> dict:
    """One calibrate run with every option of it, on a copy of the fp32 export, then a second run reusing the cache.

    The copy has a fixed batch of 2 (odd sample counts: test_fixed_batch_calibration_with_odd_samples).
    """
    folder = work / "calib"
    folder.mkdir()
    model = folder / "model.onnx"
    shutil.copy(exported["e1"], model)
    first = run("calibrate", model, "--method", "entropy", "--samples", 6, "--target", "tensorrt",
                "--exclude", STEM_CONV, "--out", folder / "custom.onnx", "--cache", folder / "ranges.json")
    again = run("calibrate", model, "--method", "entropy", "--samples", 6, "--target", "openvino",
                "--out", folder / "second.onnx", "--cache", folder / "ranges.json")
    return {"model": model, "out": folder / "custom.onnx", "cache": folder / "ranges.json", "first": first,
            "again": again, "second": folder / "second.onnx"}


@pytest.fixture(scope="module")
def benchmarked(work: Path, exported: dict) -> dict:
    out = work / "bench.json"
    with pytest.MonkeyPatch.context() as patch:
        recorder = Recorder(patch)
        log = run("benchmark", exported["e2"], "--iters", 3, "--warmup", 2, "--batch", 2, "--imgsz", "200x100",
                  "--json", out, "--compare", "onnxruntime,openvino")
    return {"doc": json.loads(out.read_text()), "made": recorder.made, "log": log}


# --- the checks, one per option ------------------------------------------------------------------------------


def export_dynamic(f) -> None:
    model = onnx.load(str(f.exported["e2"]))
    shape = dims(model.graph.input[0])
    assert isinstance(shape[0], str) and isinstance(shape[2], str) and isinstance(shape[3], str), shape
    doc = meta(f.exported["e2"])
    assert doc["dynamic"] and doc["input_shape"][0] == -1
    assert len(doc["fidelity"]["sizes"]) == 2  # a dynamic export is checked at a second size too


def export_batch(f) -> None:
    assert dims(onnx.load(str(f.exported["e1"])).graph.input[0]) == [2, 3, 160, 160]
    assert meta(f.exported["e1"])["input_shape"] == [2, 3, 160, 160]


def export_conf(f) -> None:
    assert meta(f.exported["e1"])["conf_threshold"] == pytest.approx(0.2)
    assert meta(f.exported["e2"])["conf_threshold"] == pytest.approx(0.25)  # the default, for contrast
    with Predictor(f.exported["e1"]) as predictor:
        dets = predictor([cv2.imread(str(p)) for p in sorted(f.images.glob("*.png"))])
    scores = np.concatenate([d.scores for d in dets])
    assert len(scores) and scores.min() > 0.2  # the threshold is in the graph


def export_iou(f) -> None:
    assert meta(f.exported["e1"])["iou_threshold"] == pytest.approx(0.5)
    nms = next(n for n in onnx.load(str(f.exported["e1"])).graph.node if n.op_type == "NonMaxSuppression")
    assert json.loads(nms.doc_string)["iou_threshold"] == pytest.approx(0.5)


def export_opset(f) -> None:
    for path in (f.exported["e1"], f.exported["e1"].with_name("model_fp16.onnx"), int8_graph(f.exported["e1"].parent)):
        opsets = {o.domain: o.version for o in onnx.load(str(path)).opset_import}
        assert opsets.get("", opsets.get("ai.onnx")) == 13, (path.name, opsets)
    assert {o.version for o in onnx.load(str(f.exported["e2"])).opset_import if o.domain in ("", "ai.onnx")} == {17}


def export_max_det(f) -> None:
    outputs = {o.name: dims(o) for o in onnx.load(str(f.exported["e1"])).graph.output}
    assert outputs["boxes"] == [2, 7, 4] and outputs["scores"] == [2, 7] and outputs["classes"] == [2, 7]
    assert meta(f.exported["e1"])["max_det"] == 7


def export_imgsz(f) -> None:
    assert meta(f.exported["e1"])["letterbox_size"] == [160, 160]
    assert meta(f.exported["e2"])["letterbox_size"] == [128, 128]


def export_out(f) -> None:
    for key in ("e1", "e2"):
        assert f.exported[key].is_file() and str(f.exported[key]) in " ".join(f.exported[f"{key}_log"].split())
    assert not (f.work / "exports").exists()


def export_names(f) -> None:
    assert meta(f.exported["e2"])["class_names"] == NAMES
    assert meta(f.exported["e1"])["class_names"] == list(CLASS_NAMES)


def export_no_check(f) -> None:
    assert not meta(f.exported["e1"])["fidelity"] and "fidelity check passed" not in f.exported["e1_log"]
    assert meta(f.exported["e2"])["fidelity"]["passed"] and "fidelity check passed" in f.exported["e2_log"]


def export_calib_data(f) -> None:
    calibration = meta(int8_graph(f.exported["e1"].parent))["calibration"]
    assert Path(calibration["data"]) == f.coco


def export_calib_samples(f) -> None:
    assert meta(int8_graph(f.exported["e1"].parent))["calibration"]["samples"] == 4


def export_calib_method(f) -> None:
    assert meta(int8_graph(f.exported["e1"].parent))["calibration"]["method"] == "minmax"


def export_max_drop(f) -> None:
    accuracy = meta(int8_graph(f.exported["e1"].parent))["accuracy"]
    assert accuracy["max_drop"] == 0 and accuracy["eval_images"] == 4
    excluded = meta(int8_graph(f.exported["e1"].parent))["calibration"]["excluded_nodes"]
    # the budget holds, or the fallback kept the most sensitive layers float (measured here: it had to search;
    # this run is also the regression test of the fallback's probe batches on a fixed batch-2 graph)
    assert accuracy["drop_points"] <= 0 or excluded, accuracy


def export_fp16(f) -> None:
    path = f.exported["e1"].with_name("model_fp16.onnx")
    assert meta(path)["precision"] == "fp16"
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(path)).graph.initializer)
    assert not (f.exported["e2"].parent / "model_fp16.onnx").exists()


def export_int8(f) -> None:
    path = int8_graph(f.exported["e1"].parent)
    assert meta(path)["precision"] == "int8"
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)
    assert not list(f.exported["e2"].parent.glob("model_int8*.onnx"))


def _predict(f, *options: object, source: Path | None = None) -> tuple[list[dict], list[dict]]:
    """Run predict on the dynamic export with ``options``; returns (jsonl records, recorded predictors)."""
    save = f.work / f"pred_{len(list(f.work.glob('pred_*')))}"
    with pytest.MonkeyPatch.context() as patch:
        recorder = Recorder(patch)
        run("predict", f.exported["e2"], "--source", source or f.images, "--save", save, *options)
    records = [json.loads(line) for line in (save / "predictions.jsonl").read_text().splitlines()]
    return records, recorder.made


def _scores(records: list[dict]) -> list[float]:
    """Every detection score of a predictions.jsonl (one record per frame: name, boxes, scores, class_ids, labels)."""
    return [score for record in records for score in record["scores"]]


def predict_conf(f) -> None:
    records, _ = _predict(f, "--conf", 0.6)
    base, higher = _scores(f.predict_base), _scores(records)
    assert min(base) < 0.6 and higher and min(higher) >= 0.6 and len(higher) < len(base)


def predict_threads(f) -> None:
    _, made = _predict(f, "--threads", 1)
    assert [m["threads"] for m in made] == [1]
    _, made = _predict(f)
    assert made[0]["threads"] == 0  # ONNX Runtime's default, for contrast


def predict_save(f) -> None:
    save = f.work / "pred_base"
    assert sorted(p.name for p in save.glob("*.png")) == ["scene0.png", "scene1.png", "scene2.png"]
    assert [r["name"] for r in f.predict_base] == ["scene0.png", "scene1.png", "scene2.png"]
    assert _scores(f.predict_base) and {label for r in f.predict_base for label in r["labels"]} <= set(NAMES)
    annotated, original = cv2.imread(str(save / "scene0.png")), cv2.imread(str(f.images / "scene0.png"))
    assert annotated.shape == original.shape and np.any(annotated != original)  # boxes drawn


def predict_backend(f) -> None:
    records, made = _predict(f, "--backend", "openvino")
    assert [m["backend"] for m in made] == ["openvino"]
    assert [len(r["scores"]) for r in records] == [len(r["scores"]) for r in f.predict_base]


def predict_rect(f) -> None:
    _, made = _predict(f, "--rect", source=f.work / "wide.png")
    _, square = _predict(f, source=f.work / "wide.png")
    (rect_shape,), (square_shape,) = made[0]["shapes"], square[0]["shapes"]
    assert square_shape == (1, 3, 128, 128) and rect_shape[3] == 128 and rect_shape[2] < 128 and rect_shape[2] % 32 == 0


def _eval(f, *args: object) -> dict:
    out = f.work / f"eval_{len(list(f.work.glob('eval_*')))}.json"
    run("eval", *args, "--json", out)
    return json.loads(out.read_text())


def eval_data(f) -> None:
    """The COCO branch: the folder holds the same scenes as the built-in split, so the figures are equal."""
    from_coco = _eval(f, f.exported["e1"], "--data", f.coco)
    from_shapes = _eval(f, f.exported["e1"], "--count", COCO_IMAGES)
    assert from_coco["images"] == COCO_IMAGES and from_coco["map50_95"] > 0.5
    assert from_coco["map50_95"] == pytest.approx(from_shapes["map50_95"])
    assert from_coco["detections"] == from_shapes["detections"] and set(from_coco["per_class"]) == set(CLASS_NAMES)
    weights = _eval(f, "yolo", "--data", f.coco, "--imgsz", 160)  # the PyTorch side reads the folder too
    assert weights["images"] == COCO_IMAGES and weights["map50_95"] > 0.5


def eval_imgsz(f) -> None:
    small = _eval(f, "yolo", "--imgsz", 96, "--count", 4)
    assert (small["map50_95"], small["detections"]) != (f.torch_eval_base["map50_95"], f.torch_eval_base["detections"])


def eval_count(f) -> None:
    assert _eval(f, f.exported["e1"], "--count", 3)["images"] == 3


def eval_conf(f) -> None:
    strict = _eval(f, "yolo", "--imgsz", 160, "--count", 4, "--conf", 0.5)
    assert 0 < strict["detections"] < f.torch_eval_base["detections"]


def eval_iou(f) -> None:
    strict = _eval(f, "yolo", "--imgsz", 160, "--count", 4, "--iou", 0.05)
    assert 0 < strict["detections"] < f.torch_eval_base["detections"]


def eval_json(f) -> None:
    assert set(f.torch_eval_base) >= {"map50_95", "map50", "per_class", "images", "detections"}
    assert f.torch_eval_base["images"] == 4 and 0.5 < f.torch_eval_base["map50_95"] <= 1


def calibrate_method(f) -> None:
    assert meta(f.calibrated["out"])["calibration"]["method"] == "entropy"


def calibrate_samples(f) -> None:
    assert meta(f.calibrated["out"])["calibration"]["samples"] == 6
    assert json.loads(f.calibrated["cache"].read_text())["samples"] == 6


def calibrate_target(f) -> None:
    model = onnx.load(str(f.calibrated["out"]))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # symmetric int8
    assert meta(f.calibrated["out"])["calibration"]["target"] == "tensorrt"
    assert meta(f.calibrated["second"])["calibration"]["target"] == "openvino"


def calibrate_exclude(f) -> None:
    model = onnx.load(str(f.calibrated["out"]))
    stem = next(n for n in model.graph.node if n.name == STEM_CONV)
    assert stem.input[0] == "images"  # kept float: reads the graph input, not a DequantizeLinear
    assert meta(f.calibrated["out"])["calibration"]["excluded_nodes"] == [STEM_CONV]
    second = onnx.load(str(f.calibrated["second"]))
    assert next(n for n in second.graph.node if n.name == STEM_CONV).input[0] != "images"  # for contrast


def calibrate_out(f) -> None:
    assert f.calibrated["out"].is_file() and str(f.calibrated["out"]) in " ".join(f.calibrated["first"].split())
    assert not list(f.calibrated["model"].parent.glob("model_int8*.onnx"))


def calibrate_cache(f) -> None:
    assert f.calibrated["cache"].is_file() and not f.calibrated["model"].with_suffix(".calib.json").exists()
    assert "cache hit" not in f.calibrated["first"] and "calibration cache hit" in f.calibrated["again"]


def calibrate_data(f) -> None:
    """The COCO branch of calibration data and of the held-out evaluation."""
    out = f.work / "calib" / "coco.onnx"
    log = run("calibrate", f.calibrated["model"], "--data", f.coco, "--samples", 4, "--out", out,
              "--cache", f.work / "calib" / "coco_ranges.json", "--evaluate", "--eval-data", f.coco)
    doc = meta(out)
    assert Path(doc["calibration"]["data"]) == f.coco and doc["calibration"]["samples"] == 4
    assert doc["calibration"]["data_hash"] != meta(f.calibrated["out"])["calibration"]["data_hash"]
    assert doc["accuracy"]["eval_images"] == COCO_IMAGES and Path(doc["accuracy"]["eval_data"]) == f.coco
    assert doc["accuracy"]["fp32"]["map50_95"] > 0.5 and "mAP50-95" in log


def benchmark_iters(f) -> None:
    assert [r["iters"] for r in f.benchmarked["doc"]["results"]] == [3, 3]
    # whole-predictor calls per backend: warm-up + timed
    assert [m["calls"] for m in f.benchmarked["made"]] == [2 + 3, 2 + 3]


def benchmark_warmup(f) -> None:
    assert [r["warmup"] for r in f.benchmarked["doc"]["results"]] == [2, 2]
    assert all(len(m["shapes"]) == 2 * (2 + 3) for m in f.benchmarked["made"])  # whole + bare, warm-up + timed


def benchmark_batch(f) -> None:
    assert [r["batch"] for r in f.benchmarked["doc"]["results"]] == [2, 2]
    assert all(shape[0] == 2 for m in f.benchmarked["made"] for shape in m["shapes"])


def benchmark_imgsz(f) -> None:
    assert [r["frame_size"] for r in f.benchmarked["doc"]["results"]] == [[200, 100], [200, 100]]
    assert "frame 200x100" in f.benchmarked["log"]


def benchmark_json(f) -> None:
    doc = f.benchmarked["doc"]
    assert len(doc["results"]) == len(doc["ratios"]) == 2 and doc["ratios"][0]["whole_p50"] == 1.0
    assert all(r["whole"]["p50"] > 0 for r in doc["results"])


def benchmark_compare(f) -> None:
    assert [r["backend"] for r in f.benchmarked["doc"]["results"]] == ["onnxruntime", "openvino"]
    assert [m["backend"] for m in f.benchmarked["made"]] == ["onnxruntime", "openvino"]


def info_json(f) -> None:
    result = runner.invoke(app, ["info", str(f.exported["e1"]), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    text = json.dumps(doc)
    assert '"max_det": 7' in text and '"conf_threshold": 0.2' in text and "160" in text
    plain = runner.invoke(app, ["info", str(f.exported["e1"])])
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.output)  # without --json: tables for people


#: (command, option, check). Each check receives the shared runs through ``f`` (see ``Shared``).
TABLE: list[tuple[str, str, Callable]] = [
    ("export", "--dynamic", export_dynamic), ("export", "--batch", export_batch), ("export", "--conf", export_conf),
    ("export", "--iou", export_iou), ("export", "--opset", export_opset), ("export", "--max-det", export_max_det),
    ("export", "--imgsz", export_imgsz), ("export", "--out", export_out), ("export", "--names", export_names),
    ("export", "--no-check", export_no_check), ("export", "--calib-data", export_calib_data),
    ("export", "--calib-samples", export_calib_samples), ("export", "--calib-method", export_calib_method),
    ("export", "--max-drop", export_max_drop), ("export", "--fp16", export_fp16), ("export", "--int8", export_int8),
    ("predict", "--conf", predict_conf), ("predict", "--threads", predict_threads), ("predict", "--save", predict_save),
    ("predict", "--backend", predict_backend), ("predict", "--rect", predict_rect),
    ("eval", "--data", eval_data), ("eval", "--imgsz", eval_imgsz), ("eval", "--count", eval_count),
    ("eval", "--conf", eval_conf), ("eval", "--iou", eval_iou), ("eval", "--json", eval_json),
    ("calibrate", "--method", calibrate_method), ("calibrate", "--samples", calibrate_samples),
    ("calibrate", "--target", calibrate_target), ("calibrate", "--exclude", calibrate_exclude),
    ("calibrate", "--out", calibrate_out), ("calibrate", "--cache", calibrate_cache),
    ("calibrate", "--data", calibrate_data),
    ("benchmark", "--iters", benchmark_iters), ("benchmark", "--warmup", benchmark_warmup),
    ("benchmark", "--batch", benchmark_batch), ("benchmark", "--imgsz", benchmark_imgsz),
    ("benchmark", "--json", benchmark_json), ("benchmark", "--compare", benchmark_compare),
    ("info", "--json", info_json),
]


class Shared:
    """Lazy access to the module fixtures a row needs (a row runs only the shared runs it uses)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def __getattr__(self, name: str):
        return self._request.getfixturevalue(name)


@pytest.mark.parametrize(("command", "option", "check"), TABLE, ids=[f"{c} {o}" for c, o, _ in TABLE])
def test_option_has_its_effect(command: str, option: str, check: Callable, request: pytest.FixtureRequest) -> None:
    check(Shared(request))


def test_every_option_of_the_table_exists() -> None:
    """The table names real options (a renamed option must be renamed here too)."""
    for command in {c for c, _, _ in TABLE}:
        help_text = " ".join(runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"}).output.split())
        for option in {o for c, o, _ in TABLE if c == command}:
            assert option in help_text, f"{command} {option}"


def test_fixed_batch_calibration_with_odd_samples(exported: dict, tmp_path: Path) -> None:
    """Found by the option table: 3 samples on a batch-2 graph fed ONNX Runtime a short last batch (raw
    InvalidArgument, exit 1). The last batch is now filled with repeats of its real images, counted once."""
    model = tmp_path / "model.onnx"
    shutil.copy(exported["e1"], model)  # batch 2
    run("calibrate", model, "--samples", 3, "--out", tmp_path / "odd.onnx", "--cache", tmp_path / "c.json")
    assert meta(tmp_path / "odd.onnx")["calibration"]["samples"] == 3
