"""Layer sensitivity: which compute layers hurt most when quantized.

Cheap proxy, a few images: run the fp32 and the int8 graph with every compute layer's output
exposed, take the normalised error ``e_l = ||y_int8 - y_fp32||² / ||y_fp32||²`` per layer, and
score a layer by its *local* contribution ``e_l - max(e of the compute layers feeding it)`` (error
accumulates downstream; the increase is what the layer itself adds).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from edgecv.calibration.collect import session, with_outputs
from edgecv.calibration.graph import COMPUTE_OPS, region_nodes


def _compute_outputs(model: onnx.ModelProto) -> dict[str, str]:
    """Compute node name -> its output tensor name."""
    return {n.name: n.output[0] for n in region_nodes(model) if n.op_type in COMPUTE_OPS}


def _upstream_compute(model: onnx.ModelProto) -> dict[str, set[str]]:
    """For every compute node, the nearest compute nodes feeding it (through non-compute nodes)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    nearest: dict[str, set[str]] = defaultdict(set)
    memo: dict[str, set[str]] = {}

    def feeders(tensor: str) -> set[str]:
        if tensor in memo:
            return memo[tensor]
        node = producer.get(tensor)
        found: set[str] = set()
        if node is not None:
            found = {node.name} if node.op_type in COMPUTE_OPS else set().union(*(feeders(t) for t in node.input))
        memo[tensor] = found
        return found

    for node in model.graph.node:
        if node.op_type in COMPUTE_OPS:
            nearest[node.name] = feeders(node.input[0])
    return nearest


def layer_sensitivity(fp32: onnx.ModelProto, int8: onnx.ModelProto,
                      batches: list[np.ndarray]) -> list[tuple[str, float]]:
    """Compute layers of ``fp32`` ranked by local quantisation error, worst first: ``[(node, score)]``.

    ``batches`` are preprocessed input tensors ``[b,3,H,W]`` float32 (a few images suffice).
    """
    outputs = _compute_outputs(fp32)
    names = list(outputs)
    tensors = [outputs[n] for n in names]
    produced = {o for n in int8.graph.node for o in n.output}
    keep = [i for i, t in enumerate(tensors) if t in produced]
    names, tensors = [names[i] for i in keep], [tensors[i] for i in keep]
    ref, qnt = session(with_outputs(fp32, tensors)), session(with_outputs(int8, tensors))
    input_name = fp32.graph.input[0].name
    num, den = np.zeros(len(tensors)), np.zeros(len(tensors))
    for batch in batches:
        for i, (a, b) in enumerate(zip(ref.run(tensors, {input_name: batch}), qnt.run(tensors, {input_name: batch}))):
            num[i] += float(np.sum((a - b) ** 2))
            den[i] += float(np.sum(a ** 2))
    error = dict(zip(names, num / np.maximum(den, 1e-12)))
    upstream = _upstream_compute(fp32)
    local = {n: error[n] - max((error.get(u, 0.0) for u in upstream[n]), default=0.0) for n in names}
    return sorted(local.items(), key=lambda kv: -kv[1])
