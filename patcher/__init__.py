"""centernet-patch: make CenterNet's DCN models build, export to ONNX and run in TensorRT
on today's PyTorch."""

__version__ = "0.1.0"
