#!/bin/sh
# Regenerate the Python code of the KServe/Triton gRPC API from the two .proto files here.
# Source: github.com/triton-inference-server/common, protobuf/grpc_service.proto and
# protobuf/model_config.proto at commit 83adf7cf88a2f343005974dff3728be746de2d66 (BSD-3-Clause,
# the licence is in each file's header). Generated with grpcio-tools 1.81.1 (protobuf 6.x
# gencode, matching the protobuf runtime pinned in onnx_service/pyproject.toml):
#   python3 -m venv /tmp/gen && /tmp/gen/bin/pip install grpcio-tools==1.81.1
#   PYTHON=/tmp/gen/bin/python sh generate.sh
# protoc writes top-level imports; they are made package-relative afterwards.
set -eu
cd "$(dirname "$0")"
"${PYTHON:-python3}" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. \
  grpc_service.proto model_config.proto
sed -i 's/^import model_config_pb2 as /from . import model_config_pb2 as /' grpc_service_pb2.py grpc_service_pb2_grpc.py
sed -i 's/^import grpc_service_pb2 as /from . import grpc_service_pb2 as /' grpc_service_pb2_grpc.py
rm -f model_config_pb2_grpc.py  # model_config.proto has no service
