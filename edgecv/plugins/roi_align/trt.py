"""TensorRT registration of ``edgecv::MultiLevelRoIAlign`` as a Quick Deployable Plugin (``tensorrt.plugin``, TRT >= 10.10).

:func:`register` declares, once per process,

* ``register``: ``pooled [B * R, C, P, P] float32`` from ``features [B, C, S]``, ``rois [B, R, 4]``
  and the ``output_size`` attribute (node form: :mod:`edgecv.plugins.roi_align`);
* ``aot_impl``: the Triton kernel compiled for the GPU the engine is built on
  (:func:`edgecv.plugins.roi_align.compile_node`), returned as PTX with its launch parameters:
  grid ``(B * R, ceil(C / BLOCK_C))``, block ``NUM_WARPS x 32``, the kernel's shared memory, and
  ``B * R, R, C, S, L`` as the scalar arguments between the input and output pointers (the
  argument order of :func:`edgecv.plugins.roi_align.kernel.roi_align_kernel`).

The engine embeds the kernel: running it needs no Python plugin code. ``tensorrt`` is imported by
:func:`register`; triton only when TensorRT calls ``aot_impl``. No ``from __future__ import
annotations`` here: tensorrt.plugin validates the annotations as classes.
"""


from typing import Any, Tuple, Union

from edgecv.plugins.roi_align import PLUGIN_ID
from edgecv.plugins.once import Once, register_trt

_registration = Once()


def _define(trtp: Any, trt: Any) -> None:
    """Run the two decorators (their validation raises ValueError on a signature TensorRT rejects)."""

    @trtp.register(PLUGIN_ID)
    def roi_align_desc(features: trtp.TensorDesc, rois: trtp.TensorDesc, levels: trtp.TensorDesc, output_size: int,
                       sampling_ratio: int, aligned: int) -> Tuple[trtp.TensorDesc]:
        count = rois.shape_expr[0] * rois.shape_expr[1]
        return (trtp.from_shape_expr((count, features.shape_expr[1], output_size, output_size), dtype=trt.float32),)

    @trtp.aot_impl(PLUGIN_ID)
    def roi_align_aot(features: trtp.TensorDesc, rois: trtp.TensorDesc, levels: trtp.TensorDesc, output_size: int,
                      sampling_ratio: int, aligned: int, outputs: Tuple[trtp.TensorDesc],
                      tactic: int) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams,
                                            trtp.SymExprs]:
        from edgecv.plugins.roi_align import compile_node
        from edgecv.plugins.compile import current_capability
        from edgecv.plugins.roi_align.kernel import kernel_constexprs

        attrs = {"output_size": output_size, "sampling_ratio": sampling_ratio, "aligned": aligned}
        (kernel,) = compile_node(attrs, current_capability())
        block_c = kernel_constexprs(output_size, sampling_ratio, bool(aligned))["BLOCK_C"]
        count = rois.shape_expr[0] * rois.shape_expr[1]
        launch = trtp.KernelLaunchParams()
        launch.grid_x = count  # BLOCK_R = 1: one RoI per program
        launch.grid_y = trtp.cdiv(features.shape_expr[1], block_c)
        launch.block_x = kernel.num_warps * 32
        launch.shared_mem = kernel.shared_mem
        extra = trtp.SymIntExprs(5)
        extra[0] = trtp.SymInt32(count)  # num_rois
        extra[1] = trtp.SymInt32(rois.shape_expr[1])  # rois_per_image
        extra[2] = trtp.SymInt32(features.shape_expr[1])  # channels
        extra[3] = trtp.SymInt32(features.shape_expr[2])  # spatial
        extra[4] = trtp.SymInt32(levels.shape_expr[0])  # num_levels
        return kernel.name, kernel.ptx, launch, extra


def register(trtp: Any = None) -> None:
    """Register the plugin with ``tensorrt.plugin`` (once per process; ``trtp`` defaults to ``tensorrt.plugin``)."""
    register_trt(_registration, _define, trtp)
