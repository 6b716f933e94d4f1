"""ONNX inference server: KServe V1 on /v1 and the Open Inference Protocol on /v2."""

__version__ = "0.1.0"
