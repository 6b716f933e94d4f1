"""The KServe V2 / Triton gRPC API (package ``inference``, service ``GRPCInferenceService``).

Generated code (``*_pb2.py``, ``*_pb2_grpc.py``) from ``grpc_service.proto`` and
``model_config.proto``, which are Triton's own (github.com/triton-inference-server/common,
``protobuf/``, commit 83adf7cf88a2f343005974dff3728be746de2d66, BSD-3-Clause): the same
messages ``tritonclient.grpc`` sends, so Triton's clients work unchanged. ``generate.sh``
regenerates them.
"""
