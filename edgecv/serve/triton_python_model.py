"""Triton Python-backend model that runs the edgecv ONNX artifact beside it with ONNX Runtime.

:func:`edgecv.serve.triton_repo.write_triton_repository` copies this file to
``<repo>/<name>/1/model.py`` (``--platform python``) next to ``model.onnx``. It is for Triton
servers that have the Python backend but not the ONNX Runtime backend, such as the server bundled
with ``nvidia-pytriton``. Tensors in and out are the raw network tensors of the artifact's
contract (input ``[B, 3, H, W]``; for detection ``num_dets [B, 1] int32``, ``boxes [B, K, 4]
float32``, ``scores [B, K] float32``, ``classes [B, K] int32``): the client's ``triton`` backend
does the pre- and post-processing, exactly as a local predictor does.

It runs inside the server's Python, so it imports only numpy, onnxruntime and Triton's
``triton_python_backend_utils``, never edgecv. Tensors cross the backend boundary by DLPack, not
by ``pb_utils.Tensor(name, ndarray)`` / ``as_numpy()``: the stub bundled with nvidia-pytriton
0.7 was built against NumPy 1.x and its NumPy conversions return empty outputs under NumPy 2
(measured here); DLPack does not depend on NumPy's C structures. (That stub prints a harmless
``PyCapsule_GetPointer`` traceback per output it takes over by DLPack.)
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

#: The artifact file in the version folder (the repository writer's name for it).
ARTIFACT = "model.onnx"


class TritonPythonModel:
    """One ONNX Runtime session per model instance; a dynamic batch of requests runs as one tensor."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], ARTIFACT)
        options = ort.SessionOptions()
        threads = config.get("parameters", {}).get("intra_op_thread_count", {}).get("string_value", "")
        if threads:  # the server shares the machine with its other instances: the repository can cap threads
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [node.name for node in self.session.get_outputs()]
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests: list[Any]) -> list[Any]:
        tensors = [np.from_dlpack(pb_utils.get_input_tensor_by_name(request, self.input)) for request in requests]
        if self.batched and len(tensors) > 1 and len({t.shape[1:] for t in tensors}) == 1:
            # Triton's dynamic batcher handed over several requests: one session run for all of them
            sizes = np.cumsum([len(t) for t in tensors])[:-1]
            try:
                outputs = self.session.run(None, {self.input: np.concatenate(tensors)})
            except Exception as exc:  # noqa: BLE001 -- every request gets the error as its response
                return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))) for _ in requests]
            parts = [np.split(output, sizes) for output in outputs]
            return [self._response([part[i] for part in parts]) for i in range(len(requests))]
        return [self._run_one(tensor) for tensor in tensors]

    def _run_one(self, tensor: np.ndarray) -> Any:
        try:
            outputs = self.session.run(None, {self.input: np.ascontiguousarray(tensor)})
        except Exception as exc:  # noqa: BLE001 -- a bad request gets its error, the instance keeps serving
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        return self._response(outputs)

    def _response(self, outputs: list[np.ndarray]) -> Any:
        tensors = [pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(value).__dlpack__())
                   for name, value in zip(self.outputs, outputs)]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        self.session = None
