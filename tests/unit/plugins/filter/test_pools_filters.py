"""The gateway's pool filter: every host of a pool must declare the same models."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.edgeai.appliance.plugins.filter.pools import (
    pool_model_differences,
    pool_peers,
)

RESNET = {"name": "resnet", "version": 2, "sha256": "0" * 64, "src": "/r.onnx"}
MLP = {"name": "mlp", "version": 1, "sha256": "1" * 64, "src": "/m.onnx"}
GEMMA = {"name": "gemma3:270m", "source": "registry"}


def test_hosts_with_the_same_models_agree() -> None:
    hostvars = {
        "a": {"onnx_service_models": [RESNET, MLP], "ollama_models": [GEMMA]},
        "b": {"onnx_service_models": [MLP, RESNET], "ollama_models": [GEMMA]},
    }
    assert pool_model_differences(["a", "b"], hostvars) == []


def test_hosts_that_declare_nothing_agree() -> None:
    assert (
        pool_model_differences(["a", "b", "c"], {"a": {}, "b": {}, "c": {"ollama_models": []}})
        == []
    )


def test_a_model_missing_on_one_host_names_the_model_and_the_hosts() -> None:
    hostvars = {
        "shop-01": {"onnx_service_models": [RESNET, MLP], "ollama_models": [GEMMA]},
        "shop-02": {"onnx_service_models": [RESNET]},
        "shop-03": {"onnx_service_models": [RESNET, MLP], "ollama_models": [GEMMA]},
    }
    assert pool_model_differences(["shop-01", "shop-02", "shop-03"], hostvars) == [
        "ONNX model mlp version 1 is declared on shop-01, shop-03 but not on shop-02",
        "Ollama model gemma3:270m is declared on shop-01, shop-03 but not on shop-02",
    ]


def test_another_version_is_another_model() -> None:
    hostvars = {
        "a": {"onnx_service_models": [RESNET]},
        "b": {"onnx_service_models": [{**RESNET, "version": 3}]},
    }
    assert pool_model_differences(["a", "b"], hostvars) == [
        "ONNX model resnet version 2 is declared on a but not on b",
        "ONNX model resnet version 3 is declared on b but not on a",
    ]


def test_a_malformed_list_fails_naming_the_variable_and_host() -> None:
    with pytest.raises(AnsibleFilterError, match="onnx_service_models of b"):
        pool_model_differences(["a", "b"], {"a": {}, "b": {"onnx_service_models": "resnet"}})
    with pytest.raises(AnsibleFilterError, match="ollama_models of a: every entry needs a name"):
        pool_model_differences(["a"], {"a": {"ollama_models": [{"source": "registry"}]}})


def test_peers_are_reached_at_their_peer_address_else_ansible_host_else_their_name() -> None:
    hostvars = {
        "a": {"ansible_host": "10.0.0.1", "gateway_peer_address": "192.168.7.1"},
        "b": {"ansible_host": "10.0.0.2", "gateway_peer_port": 31443},
        "c": {},
    }
    assert pool_peers(["a", "b", "c"], hostvars, 30443) == [
        {"name": "a", "address": "192.168.7.1", "port": 30443},
        {"name": "b", "address": "10.0.0.2", "port": 31443},
        {"name": "c", "address": "c", "port": 30443},
    ]
    assert pool_peers([], hostvars, 30443) == []


def test_a_peer_port_that_is_no_number_fails_naming_the_host() -> None:
    with pytest.raises(AnsibleFilterError, match="gateway_peer_port of b"):
        pool_peers(["b"], {"b": {"gateway_peer_port": "https"}}, 30443)
