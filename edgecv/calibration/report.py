"""fp32 vs int8 comparison: evaluation, latency on the target's own runtime, the table, the
per-class plot PNG and the JSON report.

Units: mAP is shown in **points** (AP x 100) everywhere in the table and the plot, and the drop
is in points too (the metadata keeps pycocotools' fractions under ``map50_95`` / ``map50`` and
the drop under ``drop_points``). Latency is the bare backend call on a ready tensor, timed with
:func:`edgecv.runtimes.benchmark.benchmark` on the runtime the int8 graph was emitted for: fp32
and int8 alternate round by round, and the table shows the p50 and p90 over all calls and the
range of the per-round p50 ratio (run-to-run spread on a shared CPU is large: one figure alone
misleads). A tensorrt-target graph is not timed here: its ONNX Runtime latency says nothing about
TensorRT. The plot is drawn with OpenCV (a core dependency), so no plotting extra is needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from edgecv.evaluation import EvalResult, evaluate
from edgecv.fileio import write_json, write_with

#: Runtime each target's int8 graph is timed on; ``None``: not on this CPU machine.
TIMING_BACKENDS: dict[str, str | None] = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": None}


def evaluate_artifact(path: str | Path, data, description: str, show_progress: bool = True,
                      class_map: dict[str, str] | None = None) -> EvalResult:
    """COCO mAP of the artifact at ``path`` on ``data`` (SyntheticCoco / CocoFolder) through the Predictor;
    ``class_map``: dataset category -> model class where names differ (see :func:`edgecv.evaluation.match_classes`)."""
    from edgecv.runtimes import Predictor

    with Predictor(path) as predictor:
        return evaluate(predictor, data, class_names=list(predictor.class_names), show_progress=show_progress,
                        description=description, class_map=class_map)


def timing_backend(target: str) -> tuple[str | None, str]:
    """``(backend, reason)``: the runtime to time a ``target`` graph on, or ``None`` and why not."""
    backend = TIMING_BACKENDS.get(target)
    if target == "tensorrt":
        return None, ("tensorrt-target graph: its ONNX Runtime latency is not indicative of TensorRT; build an "
                      "engine on the GPU machine and time it with `edgecv benchmark model.engine`")
    if backend == "openvino" and importlib.util.find_spec("openvino") is None:
        return None, ("openvino-target graph: OpenVINO is not installed (pip install 'edgecv[openvino]'), and its "
                      "ONNX Runtime latency would not be indicative")
    if backend is None:
        return None, f"no CPU runtime to time a {target!r}-target graph on"
    return backend, ""


def compare_latency(paths: dict[str, Path], backend: str, *, rounds: int = 3, iters: int = 10,
                    warmup: int = 2, threads: int | None = None) -> dict[str, Any]:
    """Bare-call latency of every artifact in ``paths`` (first = baseline) on ``backend``.

    ``rounds`` rounds of :func:`~edgecv.runtimes.benchmark.benchmark` (``iters`` timed calls after
    ``warmup``), the artifacts alternating within each round and their order reversed every other
    round, so machine noise hits them alike. Returns ``{"backend", "precision": {label},
    "input_size", "batch", "rounds", "calls_per_round", "rows": {label: {"p50_ms", "p90_ms",
    "ratio", "ratio_range"}}}``: p50/p90 are medians over the rounds, ``ratio`` = p50 / the
    baseline's p50, ``ratio_range`` = [min, max] of the per-round ratios.
    """
    from edgecv.runtimes.benchmark import benchmark

    labels = list(paths)
    per_round: list[dict[str, Any]] = []
    for r in range(rounds):
        order = labels if r % 2 == 0 else labels[::-1]
        per_round.append({label: benchmark(paths[label], backend=backend, iters=iters, warmup=warmup,
                                           threads=threads) for label in order})
    base = labels[0]
    rows = {}
    for label in labels:
        p50 = [rnd[label].bare.p50 for rnd in per_round]
        ratios = [rnd[label].bare.p50 / rnd[base].bare.p50 for rnd in per_round]
        p90 = [rnd[label].bare.p90 for rnd in per_round]
        base_p50 = float(np.median([rnd[base].bare.p50 for rnd in per_round]))
        # Rounded: the figures are read by people (edgecv info), and their spread dwarfs the decimals.
        rows[label] = {"p50_ms": round(float(np.median(p50)), 2), "p90_ms": round(float(np.median(p90)), 2),
                       "ratio": round(float(np.median(p50)) / base_p50, 3),
                       "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)]}
    first = per_round[0][base]
    return {"backend": first.backend, "precision": {label: per_round[0][label].precision for label in labels},
            "input_size": first.input_size, "batch": first.batch, "rounds": rounds, "calls_per_round": iters,
            "rows": rows}


def _pts(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def comparison_table(accuracy: dict[str, Any], title: str = "fp32 vs int8") -> Table:
    """A rich table of an accuracy record (see :func:`~edgecv.calibration.fallback.guarded_emit`):
    mAP and drop in points, latency p50/p90 on the backend named in the title, ratio with its
    per-round range."""
    latency = accuracy.get("latency") or {}
    lat_rows = latency.get("rows") or {}
    images = accuracy.get("eval_images")
    on = f" on {latency['backend']}" if lat_rows else ""
    table = Table(title=f"{title}{on}: mAP in points (AP x 100)" + (f", {images} images of {accuracy.get('eval_data')}"
                                                                     if images else ""))
    # Short headers, the backend in the title: the table fits an 80-column terminal.
    for column in ("model", "mAP50-95", "drop", "mAP50", "p50 ms", "p90 ms", "x fp32", "range"):
        table.add_column(column, justify="left" if column == "model" else "right")
    base = accuracy["fp32"]["map50_95"]
    for label in ("fp32", "int8"):
        row, lat = accuracy[label], lat_rows.get(label)
        drop = f"{100 * (base - row['map50_95']):+.2f}" if label != "fp32" else ""
        # the device's inference precision where it differs from the graph's (OpenVINO runs an
        # int8 graph's int8 parts as int8 and the rest at its f32/bf16 hint)
        device = latency["precision"][label] if lat else label
        name = accuracy.get("labels", {}).get(label, label) + (f" ({device} inference)" if device != label else "")
        ratio = f"{lat['ratio']:.2f}x" if lat and label != "fp32" else ("1.00x" if lat else "-")
        spread = f"{lat['ratio_range'][0]:.2f}-{lat['ratio_range'][1]:.2f}" if lat and label != "fp32" else ""
        table.add_row(name, _pts(row["map50_95"]), drop, _pts(row.get("map50")),
                      f"{lat['p50_ms']:.1f}" if lat else "-", f"{lat['p90_ms']:.1f}" if lat else "-", ratio, spread)
    if lat_rows:
        h, w = latency["input_size"]
        table.caption = (f"latency: bare {latency['backend']} call on a ready tensor, input {h}x{w}, batch "
                         f"{latency['batch']}; {latency['rounds']} rounds x {latency['calls_per_round']} calls per "
                         "model, fp32 and int8 alternated (edgecv.runtimes.benchmark); x fp32 = p50 ratio "
                         "(range: min-max over rounds)")
    else:
        table.caption = f"latency not measured: {latency.get('skipped', 'not recorded')}"
    return table


def print_comparison(accuracy: dict[str, Any], console: Console, title: str = "fp32 vs int8") -> None:
    console.print(comparison_table(accuracy, title))


def per_class_plot(fp32: dict[str, float], int8: dict[str, float], out: str | Path,
                   title: str = "fp32 vs int8") -> Path:
    """Grouped bar chart of per-class AP50-95 in points (fp32 grey, int8 blue), y axis 0-100 with
    ticks every 20, each bar's value on top; written atomically as a PNG with OpenCV."""
    names = list(fp32)
    font, black, grey = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0), (220, 220, 220)
    left, top, bottom = 60, 50, 40
    heading = f"AP50-95 per class (points): {title}"
    heading_w = cv2.getTextSize(heading, font, 0.45, 1)[0][0]
    width, height = max(420, 90 * len(names) + left + 20, heading_w + left + 10), 340
    canvas = np.full((height, width, 3), 255, np.uint8)
    base_y, scale = height - bottom, height - bottom - top

    def text(value: str, x: int, y: int, size: float = 0.4, colour: tuple[int, int, int] = black) -> None:
        cv2.putText(canvas, value, (x, y), font, size, colour, 1, cv2.LINE_AA)

    for tick in range(0, 101, 20):  # y axis: gridline, tick and value every 20 points
        y = base_y - int(round(tick / 100 * scale))
        cv2.line(canvas, (left, y), (width - 10, y), grey if tick else black, 1)
        cv2.line(canvas, (left - 4, y), (left, y), black, 1)
        text(str(tick), left - 30, y + 4)
    cv2.line(canvas, (left, top), (left, base_y), black, 1)
    text("AP50-95 (pts)", 4, top - 10)
    for i, name in enumerate(names):
        x = left + 12 + i * 90
        for j, (value, colour) in enumerate(((fp32[name], (150, 150, 150)), (int8.get(name, 0.0), (200, 120, 30)))):
            y = base_y - int(round(value * scale))
            cv2.rectangle(canvas, (x + j * 34, y), (x + j * 34 + 30, base_y), colour, -1)
            text(f"{100 * value:.1f}", x + j * 34, y - 4, 0.33)
        text(name[:12], x, base_y + 16)
    text(heading, left, 18, 0.45)
    legend = width - 130  # top right, clear of the y-axis label
    cv2.rectangle(canvas, (legend, 28), (legend + 12, 38), (150, 150, 150), -1)
    text("fp32", legend + 16, 38)
    cv2.rectangle(canvas, (legend + 60, 28), (legend + 72, 38), (200, 120, 30), -1)
    text("int8", legend + 76, 38)
    return write_with(out, lambda tmp: cv2.imwrite(str(tmp), canvas))


def write_report(path: str | Path, doc: dict[str, Any]) -> Path:
    """Atomically write the JSON report beside an int8 graph (accuracy, latency, fallback steps, float nodes)."""
    return write_json(path, doc, indent=2, default=str)


def stored_comparison(path: str | Path) -> dict[str, Any] | None:
    """The fp32 vs int8 record stored in an int8 artifact's metadata by :func:`~edgecv.calibration.quantize`
    (``None`` for other artifacts), labelled as measured at calibration time."""
    import onnx

    from edgecv.metadata import METADATA_KEY, ArtifactMetadata

    if not str(path).endswith(".onnx") or not Path(path).is_file():
        return None
    model = onnx.load(str(path), load_external_data=False)
    props = [p.value for p in model.metadata_props if p.key == METADATA_KEY]
    acc = ArtifactMetadata.from_json(props[0]).accuracy if props else {}
    if not acc.get("fp32") or not acc.get("int8"):
        return None
    return {**acc, "labels": {"fp32": "fp32 (at calibration)", "int8": "int8 (at calibration)"}}
