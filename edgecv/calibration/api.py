"""One call: ``quantize(onnx_path, out_path, data="shapes", method="percentile", target="onnxruntime")``.

Steps: read and check the fp32 artifact, gather activation statistics over the calibration
data (or reuse the cache), derive ranges with ``method``, emit the int8 graph for ``target``,
optionally evaluate fp32 vs int8 on a held-out split and, with ``max_drop``, keep the most
sensitive layers in float until the mAP drop is within it (:mod:`edgecv.calibration.fallback`).
The result carries its metadata (precision int8 and calibration provenance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from rich.console import Console
from rich.progress import Progress

from edgecv.calibration.cache import CalibrationCache, default_cache_path, model_sha256
from edgecv.calibration.collect import collect_stats
from edgecv.calibration.emit import SEVEN_BIT_KEY, TARGETS, EmitOptions, emit, pop_float_biases, pop_record
from edgecv.calibration.graph import check_not_quantized, float_activations, region_nodes
from edgecv.calibration.ranges import METHODS, compute_range, pixel_range
from edgecv.calibration.sources import data_hash, iter_batches, open_source
from edgecv.errors import ArtifactError, CalibrationError, QuantizationError
from edgecv.fileio import write_with
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.runtimes.lineage import parent_record


@dataclass
class QuantizeResult:
    """What :func:`quantize` produced. ``accuracy`` holds fp32/int8 figures when evaluated."""

    path: Path
    metadata: ArtifactMetadata
    excluded: list[str] = field(default_factory=list)
    accuracy: dict = field(default_factory=dict)
    cache_path: Path | None = None
    cache_hit: bool = False
    calibration_seconds: float = 0.0
    plot: Path | None = None  # <graph stem>_per_class.png, beside the graph (when evaluated)
    report: Path | None = None  # <graph stem>_report.json, beside the graph (when evaluated)
    fallback: dict = field(default_factory=dict)  # max_drop search: steps, float layers and nodes


def read_metadata(model: onnx.ModelProto, source: str) -> ArtifactMetadata:
    """The edgecv metadata of an ONNX model (raises :class:`ArtifactError` without it)."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return ArtifactMetadata.from_json(prop.value, source)
    raise ArtifactError(f"{source}: expected edgecv metadata in metadata_props, found none (export with edgecv)")


def write_metadata(model: onnx.ModelProto, metadata: ArtifactMetadata) -> None:
    """Replace the edgecv entry of ``metadata_props`` with ``metadata``."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()


def calibrate_stats(onnx_path: Path, model: onnx.ModelProto, metadata: ArtifactMetadata, data: str | Path,
                    samples: int, seed: int, cache_path: Path | None, console: Console, every: int = 10
                    ) -> tuple[CalibrationCache, bool, float]:
    """Statistics for ``model`` over ``data``: from the cache when it matches, else collected (and cached).

    Returns ``(cache, hit, seconds)``.
    """
    source = open_source(data, metadata, samples=samples, seed=seed, every=every)
    digest, sha = data_hash(source, metadata), model_sha256(onnx_path)
    if cache_path is not None and cache_path.is_file():
        cache = CalibrationCache.load(cache_path)
        if cache.matches(sha, digest):
            console.print(f"[green]calibration cache hit[/] {cache_path} ({cache.samples} images, data {digest})")
            return cache, True, 0.0
    start = time.time()
    tensors = float_activations(model, region_nodes(model))
    batch = metadata.input_shape[0] if metadata.input_shape[0] > 0 else 8
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"calibrating on {data}", total=samples)
        stats, seen = collect_stats(model, tensors, iter_batches(source, metadata, batch),
                                    on_batch=lambda n: progress.advance(task, n))
    if source.skipped:
        console.print(f"[yellow]skipped {len(source.skipped)} non-image files[/], e.g. {source.skipped[:3]}")
    cache = CalibrationCache(sha, digest, seen, str(data), stats)
    if cache_path is not None:
        cache.save(cache_path)
    return cache, False, time.time() - start


def ranges_for(cache: CalibrationCache, method: str) -> dict[str, tuple[float, float]]:
    """Float ``(lo, hi)`` per tensor for ``method``."""
    return {name: compute_range(stats, method) for name, stats in cache.tensors.items()}


def int8_metadata(metadata: ArtifactMetadata, cache: CalibrationCache, method: str, opts: EmitOptions,
                  excluded: list[str]) -> ArtifactMetadata:
    """A copy of ``metadata`` for the int8 graph (precision, calibration provenance)."""
    meta = ArtifactMetadata.from_json(metadata.to_json())
    meta.precision = "int8"
    meta.calibration = {"target": opts.target, "form": opts.form, "method": method, "samples": cache.samples,
                        "data": cache.data, "data_hash": cache.data_hash, "per_channel": opts.per_channel,
                        "reduce_range": opts.reduce_range, "excluded_nodes": list(excluded),
                        "postprocess": "float"}
    return meta


def check_quantize_options(method: str = "percentile", target: str = "onnxruntime") -> None:
    """Raise for a ``method`` / ``target`` :func:`quantize` would refuse, before any slow work
    (``export --int8`` checks them ahead of the fp32 export)."""
    if method not in METHODS:
        raise CalibrationError(f"calibration method: expected one of {', '.join(METHODS)}, found {method!r}")
    if target not in TARGETS:
        raise QuantizationError(f"int8 target: expected one of {', '.join(TARGETS)}, found {target!r}")


def quantize(onnx_path: str | Path, out_path: str | Path | None = None, *, data: str | Path = "shapes",
             method: str = "percentile", target: str = "onnxruntime", samples: int = 256, seed: int = 0,
             max_drop: float | None = None, exclude: list[str] | None = None, evaluate: bool = False,
             eval_data: str | Path = "shapes", eval_count: int = 300, cache: str | Path | None | bool = True,
             form: str = "qdq", every: int = 10, class_map: str | Path | dict[str, str] | None = None,
             console: Console | None = None) -> QuantizeResult:
    """Quantize the fp32 edgecv artifact ``onnx_path`` to int8 for ``target``; write ``out_path``
    (default ``<stem>_int8_<target>.onnx`` beside it: each target its own file). The int8 graph
    records the fp32 graph's name and SHA-256 as its ``parent`` (see :mod:`edgecv.runtimes.lineage`).

    ``data``: ``"shapes"``, an image folder, a COCO folder/json or a video. ``method``: minmax |
    entropy | percentile. ``max_drop``: allowed mAP50-95 drop in points (0.5 = 0.005) measured on
    ``eval_data`` (``eval_count`` images); layers are kept float until it holds. ``every``: video
    frame step. ``exclude``: node names kept float. ``form``: ``"qdq"`` or ``"qoperator"`` (onnxruntime
    target). ``evaluate``: compare fp32 vs int8 without a budget. ``class_map``: dataset category ->
    model class for that comparison where names differ (``"circle=person,..."``, a JSON file or a dict;
    e.g. a COCO-named head on the synthetic shapes). ``cache``: True
    (``<stem>.calib.json`` beside the model), a path, or False/None to disable.

    When evaluated, ``<out stem>_per_class.png`` and ``<out stem>_report.json`` (accuracy,
    latency, fallback steps, float nodes) are written beside the graph.
    """
    from edgecv.calibration.fallback import guarded_emit

    from edgecv.evaluation import parse_class_map

    check_quantize_options(method, target)
    class_map = parse_class_map(class_map)  # a malformed map fails here, before calibration
    console = console or Console()
    onnx_path = Path(onnx_path)
    out_path = Path(out_path) if out_path else default_int8_path(onnx_path, target)
    if not onnx_path.is_file():
        raise ArtifactError(f"expected an ONNX model at {onnx_path}, found no file")
    model = onnx.load(str(onnx_path))
    metadata = read_metadata(model, str(onnx_path))
    check_not_quantized(model, str(onnx_path))
    if metadata.precision != "fp32":
        raise QuantizationError(f"{onnx_path}: expected an fp32 artifact, found precision {metadata.precision!r}")
    if metadata.task != "semantic" and (max_drop is not None or evaluate) and str(eval_data) == "shapes":
        from edgecv.data.synthetic import CLASS_NAMES
        from edgecv.evaluation import match_classes

        # a COCO-named head on the shapes needs class_map: say so before minutes of calibration
        match_classes(metadata.class_names, list(enumerate(CLASS_NAMES, 1)), class_map)
    cache_path = default_cache_path(onnx_path) if cache is True else (Path(cache) if cache else None)
    stats, hit, seconds = calibrate_stats(onnx_path, model, metadata, data, samples, seed, cache_path, console,
                                          every)
    ranges = ranges_for(stats, method)
    ranges.update((k, v) for k, v in pixel_range(model, metadata).items() if k in ranges)  # known, not estimated
    opts = EmitOptions(target=target, form=form)
    excluded = list(exclude or [])
    int8 = emit(model, ranges, opts, excluded)
    result = QuantizeResult(out_path, int8_metadata(metadata, stats, method, opts, excluded), excluded,
                            cache_path=cache_path, cache_hit=hit, calibration_seconds=seconds)
    if metadata.task == "semantic" and (max_drop is not None or evaluate):  # mIoU of label maps, no fallback
        from edgecv.calibration.semantic_check import semantic_accuracy

        result.accuracy = semantic_accuracy(model, int8, metadata, eval_data, eval_count, max_drop, target, console)
        result.metadata.accuracy = result.accuracy
    elif max_drop is not None or evaluate:
        int8, result = guarded_emit(model, int8, ranges, opts, result, onnx_path, stats, method,
                                    max_drop, eval_data, eval_count, console, class_map)
    seven_bit = pop_record(int8, SEVEN_BIT_KEY)  # openvino target: no int16 overflow without VNNI
    if seven_bit:
        result.metadata.calibration["seven_bit_weights"] = seven_bit
    float_biases = pop_float_biases(int8)  # int32 would overflow: kept float (edgecv.calibration.emit)
    if float_biases:
        result.metadata.calibration["float_biases"] = float_biases
        console.print(f"[yellow]kept {len(float_biases)} bias(es) float[/] (int32 bias scale too small): "
                      + ", ".join(float_biases[:5]) + (" ..." if len(float_biases) > 5 else ""))
    result.metadata.parent = parent_record(onnx_path, out_path, stats.model_sha256)
    write_metadata(int8, result.metadata)
    write_with(out_path, lambda tmp: onnx.save(int8, str(tmp)))
    console.print(f"[green]wrote[/] {out_path} (int8, target {target}, method {method}, "
                  f"{stats.samples} calibration images, {len(result.excluded)} nodes kept float)")
    if result.accuracy and metadata.task != "semantic":  # the reports plot per-class detection AP
        _write_reports(result, console)
    else:
        _remove_old_reports(out_path, console)
    return result


def _remove_old_reports(graph: Path, console: Console) -> None:
    """Reports named after ``graph`` from an earlier, evaluated run describe a graph that was just
    replaced: remove them rather than leave them beside the new one."""
    for old in (graph.with_name(graph.stem + "_per_class.png"), graph.with_name(graph.stem + "_report.json")):
        if old.is_file():
            old.unlink()
            console.print(f"removed {old} (it described the previous {graph.name}; pass --evaluate for a new one)")


def default_int8_path(onnx_path: str | Path, target: str) -> Path:
    """``model.onnx`` -> ``model_int8_<target>.onnx`` beside it."""
    path = Path(onnx_path)
    return path.with_name(f"{path.stem}_int8_{target}.onnx")


def _write_reports(result: QuantizeResult, console: Console) -> None:
    """The per-class plot and the JSON report beside the int8 graph, named after it."""
    from edgecv.calibration.report import per_class_plot, write_report

    stem, acc = result.path.stem, result.accuracy
    result.plot = per_class_plot(acc["fp32"]["per_class"], acc["int8"]["per_class"],
                                 result.path.with_name(stem + "_per_class.png"),
                                 title=f"{result.path.name} ({acc.get('eval_images')} images)")
    console.print(f"[green]wrote[/] {result.plot} (per-class AP50-95, fp32 vs int8)")
    doc = {"graph": result.path.name, "units": {"map50_95, map50, per_class": "AP as a fraction (0-1)",
                                                "drop_points, max_drop": "points (AP x 100)",
                                                "p50_ms, p90_ms": "milliseconds per bare backend call"},
           "parent": result.metadata.parent, "calibration": result.metadata.calibration,
           "accuracy": acc, "fallback": result.fallback, "float_nodes": result.excluded}
    result.report = write_report(result.path.with_name(stem + "_report.json"), doc)
    console.print(f"[green]wrote[/] {result.report} (accuracy, latency, {len(result.excluded)} float nodes"
                  f"{', fallback steps' if result.fallback.get('steps') else ''})")
