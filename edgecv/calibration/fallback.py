"""Accuracy-guarded emission: measure fp32 vs int8 mAP on a held-out split and, when the drop
exceeds ``max_drop`` points, keep the most sensitive compute layers in float.

Candidates keep 1, 2, 4, 8, ... of the layers (a compute node with its activation chain, see
:func:`~edgecv.calibration.graph.layer_nodes`) ranked by :func:`~edgecv.calibration.sensitivity.layer_sensitivity`
float; fewer float layers = faster, so the first candidate within the budget is returned. When
none is, the candidate with the best mAP is kept and the message says what was achieved.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from rich.console import Console

from edgecv.calibration.emit import EmitOptions, emit
from edgecv.calibration.graph import layer_nodes
from edgecv.calibration.report import evaluate_artifact, median_latency_ms, per_class_plot, print_comparison
from edgecv.calibration.sensitivity import layer_sensitivity
from edgecv.evaluation import EvalResult, open_eval_data
from edgecv.runtimes.preprocess import preprocess_batch


def _measure(model: onnx.ModelProto, meta, folder: Path, name: str, data, console: Console) -> tuple[dict, Path]:
    """Save ``model`` with ``meta`` under ``folder`` and return ``({map50_95, map50, latency_ms, per_class}, path)``."""
    from edgecv.calibration.api import write_metadata

    path = folder / f"{name}.onnx"
    write_metadata(model, meta)
    onnx.save(model, str(path))
    res: EvalResult = evaluate_artifact(path, data, f"evaluating {name}")
    row = {"map50_95": res.map50_95, "map50": res.map50, "per_class": res.per_class,
           "latency_ms": median_latency_ms(path, runs=10, hw=tuple(meta.letterbox_size))}
    console.print(f"  {name}: mAP50-95 {res.map50_95:.4f}  mAP50 {res.map50:.4f}  {row['latency_ms']:.1f} ms")
    return row, path


def _probe_batches(data, meta, count: int = 4) -> list[np.ndarray]:
    entries = data.gt["images"][:count]
    fixed = meta.input_shape[0] if meta.input_shape[0] > 0 else None  # a fixed-batch graph takes only that batch
    return [preprocess_batch([data.read(e)], meta, fixed)[0] for e in entries]


def _summary(row: dict) -> dict:
    return {k: row[k] for k in ("map50_95", "map50", "latency_ms")} | {"per_class": row["per_class"]}


def guarded_emit(fp32: onnx.ModelProto, int8: onnx.ModelProto, ranges: dict, opts: EmitOptions, result,
                 onnx_path: Path, cache, method: str, max_drop: float | None, eval_data, eval_count: int,
                 console: Console):
    """Evaluate ``int8`` against ``fp32`` and apply the fallback; returns ``(graph, result)`` with
    ``result.accuracy``, ``result.excluded``, ``result.metadata`` and ``result.plot`` filled in."""
    from edgecv.calibration.api import int8_metadata, read_metadata

    fp32_meta = read_metadata(fp32, str(onnx_path))
    data = open_eval_data(eval_data, count=eval_count, imgsz=int(fp32_meta.letterbox_size[0]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base, _ = _measure(onnx.load(str(onnx_path)), fp32_meta, folder, "fp32", data, console)
        row, _ = _measure(int8, result.metadata, folder, "int8", data, console)
        best = (row, int8, list(result.excluded))
        drop = 100 * (base["map50_95"] - row["map50_95"])
        if max_drop is not None and drop > max_drop:
            ranking = layer_sensitivity(fp32, int8, _probe_batches(data, fp32_meta))
            best = _search(fp32, ranges, opts, result, cache, method, ranking, base, best, max_drop, folder, data,
                           console)
    row, graph, excluded = best
    drop = 100 * (base["map50_95"] - row["map50_95"])
    result.excluded = excluded
    result.metadata = int8_metadata(fp32_meta, cache, method, opts, excluded)
    result.accuracy = {"fp32": _summary(base), "int8": _summary(row), "drop_points": drop,
                       "latency_ratio": row["latency_ms"] / base["latency_ms"], "eval_data": str(eval_data),
                       "eval_images": len(data.gt["images"]), "max_drop": max_drop}
    result.metadata.accuracy = result.accuracy
    print_comparison({"fp32": base, f"int8 ({opts.target})": row}, console)
    if max_drop is not None and drop > max_drop:
        console.print(f"[yellow]max drop {max_drop} points not reached:[/] best achieved {drop:.2f} points "
                      f"with {len(excluded)} nodes float (the most sensitive layers by local quantisation error); "
                      f"keeping that graph. Float layers: {', '.join(excluded) or 'none'}")
    result.plot = per_class_plot(base["per_class"], row["per_class"],
                                 result.path.with_name(result.path.stem + "_per_class.png"))
    return graph, result


def _search(fp32, ranges, opts, result, cache, method, ranking, base, best, max_drop, folder, data, console):
    """Try keeping the top 1, 2, 4, ... sensitive layers float; first within ``max_drop`` wins, else best mAP."""
    from edgecv.calibration.api import int8_metadata

    count = 1
    while count <= len(ranking):
        keep = [member for name, _ in ranking[:count] for member in layer_nodes(fp32, name)]
        excluded = sorted(set(result.excluded) | set(keep))
        graph = emit(fp32, ranges, opts, excluded)
        meta = int8_metadata(result.metadata, cache, method, opts, excluded)
        row, _ = _measure(graph, meta, folder, f"int8_float{count}", data, console)
        drop = 100 * (base["map50_95"] - row["map50_95"])
        if row["map50_95"] > best[0]["map50_95"]:
            best = (row, graph, excluded)
        if drop <= max_drop:
            console.print(f"[green]within {max_drop} points[/] ({drop:.2f}) with these layers float "
                          f"(most sensitive first): " + ", ".join(f"{n} (local error {s:.2e})"
                                                                 for n, s in ranking[:count]))
            return row, graph, excluded
        count *= 2
    return best
