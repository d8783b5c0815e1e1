"""Inputs for the BatchedNMS kernel / twin / torchvision comparisons (numpy only, deterministic).

Each case: ``boxes [B,N,4]`` (x1, y1, x2, y2), ``scores [B,N,C]`` and the node attributes.
Shared by the interpreter worker (runs the Triton kernel with TRITON_INTERPRET=1 in a
subprocess) and the tests (which compute the references).
"""

from __future__ import annotations

import numpy as np


def _boxes(rng: np.random.Generator, batch: int, n: int, extent: float = 100.0, max_side: float = 40.0) -> np.ndarray:
    xy = rng.uniform(0, extent, (batch, n, 2))
    wh = rng.uniform(1, max_side, (batch, n, 2))
    return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def _attrs(max_det: int, iou: float, conf: float, max_candidates: int = 0, agnostic: bool = False) -> dict:
    return {"max_det": max_det, "iou_threshold": iou, "conf_threshold": conf, "max_candidates": max_candidates,
            "class_agnostic": agnostic}


def cases() -> dict[str, dict]:
    """name -> {"boxes", "scores", "attrs"} (+ "block": the kernel's tile size, for the 6,000-box case)."""
    rng = np.random.default_rng(12)
    out: dict[str, dict] = {}
    out["random"] = {"boxes": _boxes(rng, 2, 80), "scores": rng.uniform(0, 1, (2, 80, 3)).astype(np.float32),
                     "attrs": _attrs(20, 0.5, 0.3)}
    # Pre-selection with scores quantised to 0.05: many boxes tie exactly at the cut.
    out["preselect_ties"] = {"boxes": _boxes(rng, 2, 64),
                             "scores": (np.round(rng.uniform(0, 1, (2, 64, 3)) * 20) / 20).astype(np.float32),
                             "attrs": _attrs(15, 0.45, 0.1, max_candidates=21)}
    # Ties everywhere: duplicated boxes and scores in steps of 0.25 across classes.
    base = _boxes(rng, 1, 20, extent=30.0, max_side=20.0)
    boxes = np.concatenate([base, base, base[:, :10]], axis=1)
    out["ties"] = {"boxes": boxes, "scores": (rng.integers(1, 4, (1, 50, 3)) / 4).astype(np.float32),
                   "attrs": _attrs(25, 0.3, 0.2)}
    # Degenerate and out-of-image boxes: zero width / height / area, negative and huge coordinates.
    deg = _boxes(rng, 1, 40, extent=60.0)
    deg[0, :8, 2] = deg[0, :8, 0]  # zero width
    deg[0, 8:12, 3] = deg[0, 8:12, 1]  # zero height
    deg[0, 12:16] = deg[0, 12:13]  # identical boxes
    deg[0, 16:20, 2:] = deg[0, 16:20, :2]  # points (zero area), some identical below
    deg[0, 20:22] = deg[0, 16:17]
    deg[0, 22:28] -= 500.0  # far outside the image, negative
    deg[0, 28:32] += 1e5  # far outside, large
    out["degenerate"] = {"boxes": deg, "scores": rng.uniform(0, 1, (1, 40, 2)).astype(np.float32),
                         "attrs": _attrs(25, 0.4, 0.05)}
    out["agnostic"] = {"boxes": _boxes(rng, 2, 60), "scores": rng.uniform(0, 1, (2, 60, 3)).astype(np.float32),
                       "attrs": _attrs(15, 0.5, 0.3, agnostic=True)}
    out["agnostic_preselect"] = {"boxes": _boxes(rng, 1, 70), "scores": rng.uniform(0, 1, (1, 70, 2)).astype(np.float32),
                                 "attrs": _attrs(15, 0.5, 0.3, max_candidates=25, agnostic=True)}
    out["none_above_conf"] = {"boxes": _boxes(rng, 2, 30), "scores": rng.uniform(0, 0.2, (2, 30, 2)).astype(np.float32),
                              "attrs": _attrs(10, 0.5, 0.25)}
    out["empty_n"] = {"boxes": np.zeros((2, 0, 4), np.float32), "scores": np.zeros((2, 0, 3), np.float32),
                      "attrs": _attrs(5, 0.5, 0.25)}
    out["empty_batch"] = {"boxes": np.zeros((0, 10, 4), np.float32), "scores": np.zeros((0, 10, 3), np.float32),
                          "attrs": _attrs(5, 0.5, 0.25)}
    # More than TensorRT's 5,000-box NMS cap, no pre-selection: the best boxes sit past index 5,000.
    big_scores = rng.uniform(0, 0.5, (1, 6000, 1)).astype(np.float32)
    big_scores[0, 5500:5520, 0] = np.linspace(0.99, 0.9, 20, dtype=np.float32)
    out["over_5000"] = {"boxes": _boxes(rng, 1, 6000, extent=2000.0), "scores": big_scores,
                        "attrs": _attrs(12, 0.5, 0.3), "block": 1024}
    return out
