"""Fidelity check of a semantic segmentation export: PyTorch vs ONNX Runtime label maps.

At the export size and, for dynamic exports, a second non-square size (as the detection check,
:mod:`edgecv.export.fidelity`), on the same preprocessed tensors:

* ``logits`` of PyTorch vs the raw graph, element-wise ``|onnx - torch| <= atol * scale + rtol *
  |torch|`` with ``scale`` = the largest ``|torch logit|`` at that size (a fraction of the output's
  range). This is numeric, so a model with random weights cannot pass "on nothing";
* ``labels`` of the final graph vs ``torch.argmax``: the share of equal pixels must reach
  :data:`PIXEL_AGREEMENT`. Also reported: the agreement over *decisive* pixels (top-2 logit margin
  larger than twice the largest logit difference, where numeric noise cannot flip the arg-max),
  the classes seen and the share of pixels outside the most frequent class. A map of one class on
  every image compares nothing beyond that class: the label criterion is then ``not compared``
  with a warning, never "passed";
* ``probs`` (when exported) vs ``torch.softmax``, with ``atol`` and ``rtol`` as for scores.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from edgecv.export.fidelity import COMPARED, NOT_COMPARED, Tolerance, _session, tolerance_used
from edgecv.metadata import ArtifactMetadata
from edgecv.export.uint8_input import network_input_fn
from edgecv.runtimes.preprocess import network_tensor, preprocess_batch

#: Share of label-map pixels PyTorch and ONNX Runtime must agree on.
PIXEL_AGREEMENT = 0.995


def _run(module: nn.Module, raw, final, metadata: ArtifactMetadata, images: list[np.ndarray], to_network=None):  # noqa: ANN001
    """Torch logits, ONNX logits, ONNX labels and ONNX probs (or None), stacked over ``images``."""
    batch = metadata.input_shape[0] if metadata.input_shape[0] > 0 else len(images)
    parts: list[list[np.ndarray]] = [[], [], [], []]
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        tensor, _ = preprocess_batch(chunk, metadata, batch_size=batch)
        with torch.no_grad():  # PyTorch gets the float tensor a uint8 artifact's graph computes itself
            network = network_tensor(tensor, metadata) if to_network is None else to_network(tensor)
            parts[0].append(module(torch.from_numpy(network)).numpy()[: len(chunk)])
        parts[1].append(raw.run(None, {metadata.input_name: tensor})[0][: len(chunk)])
        got = final.run(None, {metadata.input_name: tensor})
        parts[2].append(got[0][: len(chunk)])
        parts[3].append(got[1][: len(chunk)] if len(got) > 1 else None)
    probs = None if parts[3][0] is None else np.concatenate(parts[3])
    return np.concatenate(parts[0]), np.concatenate(parts[1]), np.concatenate(parts[2]), probs


def _compare_at(module: nn.Module, raw, final, metadata: ArtifactMetadata, images: list[np.ndarray],
                tol: Tolerance, to_network=None) -> dict:  # noqa: ANN001 (uint8_input.network_input_fn)
    """Figures at one size (see module docstring)."""
    t_logits, o_logits, o_labels, o_probs = _run(module, raw, final, metadata, images, to_network)
    scale = max(1e-6, float(np.abs(t_logits).max()))
    diff = float(np.abs(t_logits - o_logits).max())
    t_labels = t_logits.argmax(1)
    top2 = np.sort(t_logits, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > 2 * diff
    equal = o_labels == t_labels
    counts = np.bincount(t_labels.ravel(), minlength=t_logits.shape[1])
    figures = {"max_abs_logits": diff, "logits_scale": scale,
               "logits_tolerance_used": tolerance_used(o_logits, t_logits, tol.atol * scale, tol.rtol),
               "labels_dtype": str(o_labels.dtype), "pixels": int(equal.size),
               "agreement": float(equal.mean()),
               "agreement_decisive": float(equal[decisive].mean()) if decisive.any() else None,
               "decisive_share": float(decisive.mean()), "classes_seen": int((counts > 0).sum()),
               "minority_share": float(1 - counts.max() / counts.sum())}
    if o_probs is not None:
        t_probs = torch.from_numpy(t_logits).softmax(1).numpy()
        figures["max_abs_probs"] = float(np.abs(t_probs - o_probs).max())
        figures["probs_tolerance_used"] = tolerance_used(o_probs, t_probs, tol.atol, tol.rtol)
    return figures


def _judge(key: str, f: dict, tol: Tolerance) -> tuple[dict, list[str], list[str]]:
    """Status per criterion at one size, plus failure and warning lines."""
    status, failures, warns = {}, [], []
    for output in ("logits", "probs"):
        used = f.get(f"{output}_tolerance_used")
        if used is None:
            continue
        status[output] = "passed" if used <= 1.0 else "failed"
        if used > 1.0:
            failures.append(f"{key}: max_abs_{output} = {f[f'max_abs_{output}']:.3g}, {used:.3g}x the tolerance "
                            f"(atol {tol.atol:g} x range, rtol {tol.rtol:g}; relax with --fidelity-atol / --fidelity-rtol)")
    if f["labels_dtype"] != "int32":
        status["labels"] = "failed"
        failures.append(f"{key}: labels: expected int32, found {f['labels_dtype']}")
    elif f["agreement"] < PIXEL_AGREEMENT:
        status["labels"] = "failed"
        failures.append(f"{key}: labels: {100 * f['agreement']:.2f} % of {f['pixels']} pixels equal, needed "
                        f"{100 * PIXEL_AGREEMENT:.1f} %")
    elif f["classes_seen"] < 2:
        status["labels"] = NOT_COMPARED
        warns.append(f"{key}: PyTorch labels every pixel with one class: the label maps compared nothing "
                     "beyond it; the logits were compared numerically (use images with the model's classes: "
                     "--check-images folder/)")
    else:
        status["labels"] = "passed"
    return status, failures, warns


def check_semantic_fidelity(module: nn.Module, raw_model: onnx.ModelProto, final_model: onnx.ModelProto,
                            metadata: ArtifactMetadata, images: list[np.ndarray], tolerance: Tolerance | None = None,
                            images_source: str = "synthetic shapes") -> dict:
    """Compare PyTorch with both ONNX graphs on ``images`` (BGR uint8); returns a JSON-able report
    with the same top-level keys as :func:`edgecv.export.fidelity.check_fidelity` plus
    ``pixel_agreement`` (the criterion)."""
    tol = tolerance or Tolerance()
    raw, final = _session(raw_model), _session(final_model)
    h, w = metadata.letterbox_size
    sizes = [(h, w)]
    if metadata.dynamic:  # a second, non-square size exposes shapes baked into the graph
        second = max(metadata.stride, round(h * 0.75 / metadata.stride) * metadata.stride)
        sizes.append((second if second != h else h + metadata.stride, w))
    report: dict = {"compared": COMPARED, "task": "semantic", "precision": metadata.precision,
                    "images": len(images), "images_source": images_source, "pixel_agreement": PIXEL_AGREEMENT,
                    "tolerance": {"atol": tol.atol, "rtol": tol.rtol}, "sizes": {}}
    failures: list[str] = []
    warns: list[str] = []
    for size in sizes:
        # static: the one export size (a --frame graph's input is the frame); dynamic: every axis -1
        at = dataclasses.replace(metadata, letterbox_size=list(size), input_shape=list(metadata.input_shape))
        figures = _compare_at(module.eval(), raw, final, at, images, tol, network_input_fn(raw_model, metadata))
        key = f"{size[0]}x{size[1]}"
        status, bad, note = _judge(key, figures, tol)
        report["sizes"][key] = {**figures, "checks": status}
        failures += bad
        warns += note
    report.update(failures=failures, warnings=warns, passed=not failures,
                  status="failed" if failures else "passed (logits only)" if warns else "passed")
    return report


def print_semantic_report(report: dict, console: Console) -> None:
    """Short table of the figures, then the verdict and any warning."""
    table = Table(title=f"Fidelity: {report['compared']} label maps ({report['images']} images, "
                        f"{report['images_source']})")
    for column in ("size", "max |Δ| logits", "tolerance used", "pixels equal", "decisive equal", "classes seen"):
        table.add_column(column)
    for size, f in report["sizes"].items():
        decisive = "-" if f["agreement_decisive"] is None else f"{100 * f['agreement_decisive']:.2f} %"
        table.add_row(size, f"{f['max_abs_logits']:.2e}", f"{100 * f['logits_tolerance_used']:.1f} %",
                      f"{100 * f['agreement']:.3f} %", decisive, str(f["classes_seen"]))
    console.print(table)
    for line in report["warnings"]:
        console.print(f"[yellow]warning:[/] {line}", highlight=False)
    if not report["passed"]:
        console.print("[red]fidelity check failed:[/] " + "; ".join(report["failures"]), highlight=False)
    else:
        console.print(f"[green]fidelity check {report['status']}[/]")
