"""Run the fp32 graph in ONNX Runtime over calibration batches and gather activation statistics.

The activations become extra graph outputs of an in-memory copy of the model; each batch's
values are folded into :class:`~edgecv.calibration.ranges.TensorStats` and dropped, so memory
stays bounded by one batch of activations plus ``BINS`` counters per tensor.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import onnx
import onnxruntime as ort

from edgecv.calibration.ranges import TensorStats


def with_outputs(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose outputs are ``tensors`` (float32, shape left open)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.output[:]
    out.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors)
    return out


def session(model: onnx.ModelProto, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session over an in-memory model (graph optimisations on, as at inference)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def collect_stats(model: onnx.ModelProto, tensors: list[str], batches: Iterable[np.ndarray],
                  on_batch: Callable[[int], None] | None = None) -> tuple[dict[str, TensorStats], int]:
    """Statistics of every tensor in ``tensors`` over ``batches`` (input tensors ``[b,3,H,W]``).

    Returns ``(stats by tensor name, number of images seen)``; ``on_batch(b)`` is called after each batch.
    """
    input_name = model.graph.input[0].name
    fixed = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value  # 0: dynamic batch
    inner = [t for t in tensors if t != input_name]
    sess = session(with_outputs(model, inner))
    stats = {t: TensorStats() for t in tensors}
    images = 0
    for batch in batches:
        count = batch.shape[0]
        if fixed and count < fixed:
            # a fixed-batch graph runs only full batches: repeat the real images (a blank filler would skew
            # the histograms); the repeats weigh those few images a little more and are counted once
            batch = np.resize(batch, (fixed, *batch.shape[1:]))
        values = sess.run(inner, {input_name: batch})
        if input_name in stats:
            stats[input_name].update(np.asarray(batch, np.float32))
        for name, value in zip(inner, values):
            stats[name].update(np.asarray(value, np.float32))
        images += count
        if on_batch is not None:
            on_batch(count)
    return stats, images
