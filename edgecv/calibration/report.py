"""fp32 vs int8 comparison: evaluation, latency, the rich table and the per-class plot PNG.

The plot is drawn with OpenCV (already a core dependency), so no plotting extra is needed.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from edgecv.evaluation import EvalResult, evaluate


def evaluate_artifact(path: str | Path, data, description: str, show_progress: bool = True) -> EvalResult:
    """COCO mAP of the artifact at ``path`` on ``data`` (SyntheticCoco / CocoFolder) through the Predictor."""
    from edgecv.runtimes import Predictor

    with Predictor(path) as predictor:
        return evaluate(predictor, data, class_names=list(predictor.class_names), show_progress=show_progress,
                        description=description)


def median_latency_ms(path: str | Path, runs: int = 20, warmup: int = 3, threads: int | None = None,
                      hw: tuple[int, int] = (640, 640)) -> float:
    """Median wall time (ms) of one bare ONNX Runtime session run on a random input: batch as exported
    (1 if dynamic), ``hw`` for dynamic height / width."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    fallback = (1, 3, *hw)
    shape = [d if isinstance(d, int) and d > 0 else fallback[i] for i, d in enumerate(inp.shape)]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    times = []
    for i in range(warmup + runs):
        tic = time.perf_counter()
        sess.run(None, {inp.name: x})
        if i >= warmup:
            times.append((time.perf_counter() - tic) * 1e3)
    return float(np.median(times))


def comparison_table(rows: dict[str, dict], title: str = "fp32 vs int8") -> Table:
    """A rich table of ``{label: {"map50_95", "map50", "latency_ms"}}``; drops and ratios vs the first row."""
    table = Table(title=title)
    for column in ("model", "mAP50-95", "drop (pts)", "mAP50", "latency ms", "x fp32"):
        table.add_column(column, justify="left" if column == "model" else "right")
    base = next(iter(rows.values()))
    for label, row in rows.items():
        drop = 100 * (base["map50_95"] - row["map50_95"])
        ratio = row.get("latency_ms", 0) / base["latency_ms"] if base.get("latency_ms") else float("nan")
        table.add_row(label, f"{row['map50_95']:.4f}", f"{drop:+.2f}", f"{row['map50']:.4f}",
                      f"{row.get('latency_ms', float('nan')):.1f}", f"{ratio:.2f}")
    return table


def print_comparison(rows: dict[str, dict], console: Console, title: str = "fp32 vs int8") -> None:
    console.print(comparison_table(rows, title))


def per_class_plot(fp32: dict[str, float], int8: dict[str, float], out: str | Path) -> Path:
    """Grouped bar chart (fp32 grey, int8 blue) of per-class AP50-95, written as a PNG with OpenCV."""
    names = list(fp32)
    width, height, margin = max(360, 90 * len(names) + 80), 300, 40
    canvas = np.full((height, width, 3), 255, np.uint8)
    base_y, scale = height - margin, height - 2 * margin
    cv2.line(canvas, (margin, base_y), (width - 10, base_y), (0, 0, 0), 1)
    for i, name in enumerate(names):
        x = margin + 10 + i * 90
        for j, (value, colour) in enumerate(((fp32[name], (150, 150, 150)), (int8.get(name, 0.0), (200, 120, 30)))):
            top = base_y - int(round(value * scale))
            cv2.rectangle(canvas, (x + j * 32, top), (x + j * 32 + 28, base_y), colour, -1)
        cv2.putText(canvas, name[:10], (x, base_y + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "AP50-95 per class: fp32 (grey) vs int8 (blue)", (margin, 20), cv2.FONT_HERSHEY_SIMPLEX,
                0.45, (0, 0, 0), 1, cv2.LINE_AA)
    out = Path(out)
    cv2.imwrite(str(out), canvas)
    return out


def stored_comparison(path: str | Path) -> dict[str, dict] | None:
    """The fp32 vs int8 rows recorded in an int8 artifact's metadata by :func:`~edgecv.calibration.quantize`
    (``None`` for other artifacts)."""
    import onnx

    from edgecv.metadata import METADATA_KEY, ArtifactMetadata

    if not str(path).endswith(".onnx") or not Path(path).is_file():
        return None
    model = onnx.load(str(path), load_external_data=False)
    props = [p.value for p in model.metadata_props if p.key == METADATA_KEY]
    acc = ArtifactMetadata.from_json(props[0]).accuracy if props else {}
    if not acc.get("fp32") or not acc.get("int8"):
        return None
    return {"fp32 (at calibration)": acc["fp32"], "int8 (at calibration)": acc["int8"]}
