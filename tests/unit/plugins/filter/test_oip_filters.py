"""edgeai.appliance.oip_zero_request: an infer request built from a model's OIP metadata."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.edgeai.appliance.plugins.filter.oip import oip_zero_request


def test_variable_dimensions_take_the_batch_and_every_input_is_filled() -> None:
    metadata = {
        "name": "magika",
        "inputs": [
            {"name": "bytes", "datatype": "INT32", "shape": [-1, 4]},
            {"name": "mask", "datatype": "BOOL", "shape": [-1, 2]},
            {"name": "text", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
    }
    assert oip_zero_request(metadata, batch=2) == {
        "inputs": [
            {"name": "bytes", "shape": [2, 4], "datatype": "INT32", "data": [0] * 8},
            {"name": "mask", "shape": [2, 2], "datatype": "BOOL", "data": [False] * 4},
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["", ""]},
        ]
    }


def test_fixed_shapes_are_kept() -> None:
    metadata = {"name": "m", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3]}]}
    assert oip_zero_request(metadata, batch=5)["inputs"][0]["shape"] == [1, 3]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"name": "m", "inputs": []}, "model m lists no inputs"),
        ({"name": "m"}, "model m lists no inputs"),
        ("not a dict", "model ? lists no inputs"),
        ({"name": "m", "inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1]}]}, "'FLOAT'"),
    ],
)
def test_metadata_it_cannot_use_fails_naming_the_problem(metadata: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        oip_zero_request(metadata)  # type: ignore[arg-type]
