"""TensorRT registration of ``edgecv::BatchedNMS`` as a Quick Deployable Plugin (``tensorrt.plugin``, TRT >= 10.10).

:func:`register` declares, once per process,

* ``register``: shapes and dtypes from the inputs' symbolic shapes -- ``num_dets [B,1] int32``,
  ``boxes [B,K,4] float32``, ``scores [B,K] float32``, ``classes [B,K] int32`` (``K = max_det``:
  padded, never data-dependent);
* ``aot_impl``: the Triton kernel compiled (by :mod:`edgecv.plugins.compile`) for the GPU the
  engine is built on, returned as PTX with its launch parameters: grid ``(B,)``, block
  ``NUM_WARPS x 32``, the kernel's shared memory, and ``N``, ``C`` as the scalar arguments that
  sit between the input and output pointers (the argument order of
  :func:`edgecv.plugins.batched_nms.kernel.batched_nms_kernel`).

The engine then embeds the kernel: running it needs no Python plugin code. The signatures below
are checked against the ``tensorrt.plugin`` validation sources of TensorRT 10.13 and 11.x by the
tests (those versions differ only in how strictly they test annotations).

``tensorrt`` is imported by :func:`register`; triton only when TensorRT calls ``aot_impl``. No
``from __future__ import annotations`` here: tensorrt.plugin validates the annotations as classes.
"""


from typing import Any, Tuple, Union

from edgecv.plugins.batched_nms import PLUGIN_ID
from edgecv.plugins.once import Once, register_trt

_registration = Once()


def _define(trtp: Any, trt: Any) -> None:
    """Run the two decorators (their validation raises ValueError on a signature TensorRT rejects)."""

    @trtp.register(PLUGIN_ID)
    def batched_nms_desc(boxes: trtp.TensorDesc, scores: trtp.TensorDesc, max_det: int, iou_threshold: str,
                         conf_threshold: str, max_candidates: int, class_agnostic: int
                         ) -> Tuple[trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc]:
        batch = boxes.shape_expr[0]
        return (trtp.from_shape_expr((batch, 1), dtype=trt.int32),
                trtp.from_shape_expr((batch, max_det, 4), dtype=trt.float32),
                trtp.from_shape_expr((batch, max_det), dtype=trt.float32),
                trtp.from_shape_expr((batch, max_det), dtype=trt.int32))

    @trtp.aot_impl(PLUGIN_ID)
    def batched_nms_aot(boxes: trtp.TensorDesc, scores: trtp.TensorDesc, max_det: int, iou_threshold: str,
                        conf_threshold: str, max_candidates: int, class_agnostic: int,
                        outputs: Tuple[trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc],
                        tactic: int) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams,
                                              trtp.SymExprs]:
        from edgecv.plugins.batched_nms import compile_node
        from edgecv.plugins.compile import current_capability

        attrs = {"max_det": max_det, "iou_threshold": iou_threshold, "conf_threshold": conf_threshold,
                 "max_candidates": max_candidates, "class_agnostic": class_agnostic}
        (kernel,) = compile_node(attrs, current_capability())
        launch = trtp.KernelLaunchParams()
        launch.grid_x = boxes.shape_expr[0]
        launch.block_x = kernel.num_warps * 32
        launch.shared_mem = kernel.shared_mem
        extra = trtp.SymIntExprs(2)
        extra[0] = trtp.SymInt32(boxes.shape_expr[1])  # N
        extra[1] = trtp.SymInt32(scores.shape_expr[2])  # C
        return kernel.name, kernel.ptx, launch, extra


def register(trtp: Any = None) -> None:
    """Register the plugin with ``tensorrt.plugin`` (once per process; ``trtp`` defaults to ``tensorrt.plugin``)."""
    register_trt(_registration, _define, trtp)
