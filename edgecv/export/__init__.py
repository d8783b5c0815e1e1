"""PyTorch -> ONNX export: model wrappers, graph passes (NMS, fp16, TensorRT plugins), fidelity check, engine build."""
