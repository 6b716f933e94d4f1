# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the Open Inference Protocol (KServe V2), e.g. a rollout's health gate."""

from __future__ import annotations

import math
from typing import Any

from ansible.errors import AnsibleFilterError

# The value a request fills each element of an input with, by OIP datatype.
_ZERO: dict[str, Any] = {"BOOL": False, "BYTES": ""}
_NUMERIC = {
    "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64",
}  # fmt: skip


def oip_zero_request(metadata: dict[str, Any], batch: int = 1) -> dict[str, Any]:
    """An infer request for a model's metadata (GET /v2/models/<m>): every input filled with zeros.

    Variable dimensions (-1) become ``batch``. The request exercises the whole path (gateway,
    batching, onnxruntime) without knowing anything about the model but what it publishes.
    """
    name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
    inputs = metadata.get("inputs") if isinstance(metadata, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise AnsibleFilterError(f"oip_zero_request: the metadata of model {name} lists no inputs")
    if int(batch) < 1:
        raise AnsibleFilterError(f"oip_zero_request: batch must be at least 1, got {batch}")
    request = []
    for tensor in inputs:
        datatype = str(tensor.get("datatype", ""))
        if datatype not in _NUMERIC and datatype not in _ZERO:
            raise AnsibleFilterError(
                f"oip_zero_request: input {tensor.get('name')!r} of model {name} has datatype "
                f"{datatype!r}, which the Open Inference Protocol does not define"
            )
        shape = [int(batch) if int(dim) < 0 else int(dim) for dim in tensor.get("shape", [])]
        request.append(
            {
                "name": tensor["name"],
                "shape": shape,
                "datatype": datatype,
                "data": [_ZERO.get(datatype, 0)] * math.prod(shape),
            }
        )
    return {"inputs": request}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"oip_zero_request": oip_zero_request}
