"""ONNX inference server: KServe V1 on /v1 and the Open Inference Protocol on /v2."""

__version__ = "0.1.0"

# The listen port's default, here so that the health check needs no heavy import.
DEFAULT_PORT = 8001
DEFAULT_GRPC_PORT = 8002
