"""Accuracy-guarded emission: measure fp32 vs int8 mAP on a held-out split and, when the drop
exceeds ``max_drop`` points, keep the most sensitive compute layers in float.

Candidates keep 1, 2, 4, 8, ... of the layers (a compute node with its activation chain, see
:func:`~edgecv.calibration.graph.layer_nodes`) ranked by :func:`~edgecv.calibration.sensitivity.layer_sensitivity`
float; fewer float layers = faster, so the first candidate within the budget is returned. When
none is, the candidate with the best mAP is kept and the message says what was achieved.

Console output: one header line when the search starts, one line per step (how many layers are
float, the mAP reached), one verdict line. The full list of float nodes and every step go to the
JSON report beside the graph (:func:`edgecv.calibration.api.quantize` writes it).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from rich.console import Console

from edgecv.calibration.emit import EmitOptions, emit
from edgecv.calibration.graph import layer_nodes
from edgecv.calibration.report import compare_latency, evaluate_artifact, print_comparison, timing_backend
from edgecv.calibration.sensitivity import layer_sensitivity
from edgecv.evaluation import EvalResult, eval_size, open_eval_data
from edgecv.fileio import write_with
from edgecv.runtimes.preprocess import preprocess_batch


@dataclass
class Candidate:
    """One evaluated int8 graph: its figures, graph, float nodes and where it was saved (temporary)."""

    row: dict[str, Any]
    graph: onnx.ModelProto
    excluded: list[str]
    path: Path
    float_layers: list[str] = field(default_factory=list)


def _measure(model: onnx.ModelProto, meta, path: Path, data, description: str, console: Console,
             class_map: dict[str, str] | None = None) -> dict[str, Any]:
    """Save ``model`` with ``meta`` at ``path`` and return its ``{map50_95, map50, per_class}`` on ``data``
    (``class_map``: dataset category -> model class, for a model whose names are not the dataset's)."""
    from edgecv.calibration.api import write_metadata

    write_metadata(model, meta)
    write_with(path, lambda tmp: onnx.save(model, str(tmp)))
    # A progress bar only on a terminal: redirected, a transient bar leaves a blank line per graph.
    res: EvalResult = evaluate_artifact(path, data, description, show_progress=console.is_terminal,
                                        class_map=class_map)
    return {"map50_95": res.map50_95, "map50": res.map50, "per_class": res.per_class}


def _probe_batches(data, meta, count: int = 4) -> list[np.ndarray]:
    entries = data.gt["images"][:count]
    fixed = meta.input_shape[0] if meta.input_shape[0] > 0 else None  # a fixed-batch graph takes only that batch
    return [preprocess_batch([data.read(e)], meta, fixed)[0] for e in entries]


def _drop(base: dict[str, Any], row: dict[str, Any]) -> float:
    """mAP50-95 drop in points (positive = int8 is worse)."""
    return 100 * (base["map50_95"] - row["map50_95"])


def guarded_emit(fp32: onnx.ModelProto, int8: onnx.ModelProto, ranges: dict, opts: EmitOptions, result,
                 onnx_path: Path, cache, method: str, max_drop: float | None, eval_data, eval_count: int,
                 console: Console, class_map: dict[str, str] | None = None):
    """Evaluate ``int8`` against ``fp32`` and apply the fallback; returns ``(graph, result)`` with
    ``result.accuracy`` (mAP fractions, drop in points, latency on the target's runtime),
    ``result.excluded``, ``result.metadata`` and ``result.fallback`` (the search steps) filled in."""
    from edgecv.calibration.api import int8_metadata, read_metadata

    fp32_meta = read_metadata(fp32, str(onnx_path))
    data = open_eval_data(eval_data, count=eval_count, imgsz=eval_size(fp32_meta))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = _measure(onnx.load(str(onnx_path)), fp32_meta, folder / "fp32.onnx", data, "evaluating fp32", console,
                        class_map)
        first = Candidate(_measure(int8, result.metadata, folder / "int8.onnx", data, "evaluating int8",
                                   console, class_map), int8,
                          list(result.excluded), folder / "int8.onnx")
        best, steps = first, []
        if max_drop is not None and _drop(base, first.row) > max_drop:
            console.print(f"fallback: int8 mAP50-95 drops {_drop(base, first.row):.2f} pts > --max-drop {max_drop}; "
                          "keeping the most quantisation-sensitive layers float, 1, 2, 4, ... per step")
            ranking = layer_sensitivity(fp32, int8, _probe_batches(data, fp32_meta))
            best, steps = _search(fp32, ranges, opts, result, cache, method, ranking, base, first, max_drop,
                                  folder, data, console, class_map)
        latency = _latency(folder / "fp32.onnx", best.path, opts.target)
    drop = _drop(base, best.row)
    result.excluded = best.excluded
    result.metadata = int8_metadata(fp32_meta, cache, method, opts, best.excluded)
    result.accuracy = {"fp32": base, "int8": best.row, "drop_points": drop, "eval_data": str(eval_data),
                       **({"class_map": dict(class_map)} if class_map else {}),
                       "eval_images": len(data.gt["images"]), "max_drop": max_drop, "target": opts.target,
                       "latency": latency, "latency_ratio": latency.get("rows", {}).get("int8", {}).get("ratio")}
    result.metadata.accuracy = result.accuracy
    result.fallback = {"max_drop": max_drop, "steps": steps, "float_layers": best.float_layers,
                       "float_nodes": best.excluded, "within_budget": max_drop is None or drop <= max_drop}
    print_comparison(result.accuracy, console, title=f"fp32 vs int8 ({opts.target} target)")
    if max_drop is not None and drop > max_drop:
        console.print(f"[yellow]--max-drop {max_drop} pts not reached:[/] best achieved {drop:.2f} pts with "
                      f"{len(best.float_layers)} layers ({len(best.excluded)} nodes) float; keeping that graph")
    elif steps:
        console.print(f"[green]within --max-drop {max_drop} pts[/] ({drop:.2f}) with {len(best.float_layers)} "
                      f"layers ({len(best.excluded)} nodes) float")
    return best.graph, result


def _latency(fp32_path: Path, int8_path: Path, target: str) -> dict[str, Any]:
    """fp32 vs int8 latency on the target's runtime, or ``{"skipped": reason}``."""
    backend, reason = timing_backend(target)
    if backend is None:
        return {"skipped": reason}
    return compare_latency({"fp32": fp32_path, "int8": int8_path}, backend)


def _search(fp32, ranges, opts, result, cache, method, ranking, base, first: Candidate, max_drop, folder, data,
            console, class_map=None) -> tuple[Candidate, list[dict[str, Any]]]:
    """Try keeping the top 1, 2, 4, ... sensitive layers float; first within ``max_drop`` wins, else best mAP.

    Returns the chosen candidate and one record per step (float layers, node count, mAP, drop).
    """
    from edgecv.calibration.api import int8_metadata

    best, steps, count = first, [], 1
    while count <= len(ranking):
        layers = [name for name, _ in ranking[:count]]
        keep = [member for name in layers for member in layer_nodes(fp32, name)]
        excluded = sorted(set(result.excluded) | set(keep))
        graph = emit(fp32, ranges, opts, excluded)
        meta = int8_metadata(result.metadata, cache, method, opts, excluded)
        path = folder / f"int8_float{count}.onnx"
        row = _measure(graph, meta, path, data, f"evaluating int8 with {count} layers float", console, class_map)
        drop = _drop(base, row)
        steps.append({"step": len(steps) + 1, "float_layers": layers, "float_nodes": len(excluded),
                      "map50_95": row["map50_95"], "drop_points": drop,
                      "local_errors": {name: score for name, score in ranking[:count]}})
        console.print(f"  step {len(steps)}: {count} most sensitive layer{'s' if count > 1 else ''} float "
                      f"({len(excluded)} nodes): mAP50-95 {100 * row['map50_95']:.2f} pts, drop {drop:.2f} pts")
        candidate = Candidate(row, graph, excluded, path, layers)
        if row["map50_95"] > best.row["map50_95"]:
            best = candidate
        if drop <= max_drop:
            return candidate, steps
        count *= 2
    return best, steps
