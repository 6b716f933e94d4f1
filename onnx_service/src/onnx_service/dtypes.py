"""Datatype names of the Open Inference Protocol, numpy and onnxruntime.

BYTES (Triton's and the OIP's string type; onnxruntime's ``tensor(string)``) is held as a numpy
object array of ``str``: onnxruntime's Python API takes and returns text, so BYTES elements must
be UTF-8.
"""

import numpy as np

DATATYPE_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

ORT_TO_DATATYPE: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

# Triton's model configuration names its string type TYPE_STRING
CONFIG_TYPE = {name: f"TYPE_{name}" for name in DATATYPE_TO_NUMPY} | {"BYTES": "TYPE_STRING"}

# numpy kinds that JSON numbers of a datatype may arrive as: b=bool, i/u=integer, f=float.
ACCEPTED_KINDS: dict[str, frozenset[str]] = {
    "BOOL": frozenset("b"),
    **{name: frozenset("iu") for name in DATATYPE_TO_NUMPY if "INT" in name},
    "BYTES": frozenset("U"),
    "FP16": frozenset("iuf"),
    "FP32": frozenset("iuf"),
    "FP64": frozenset("iuf"),
}
