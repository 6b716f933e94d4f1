"""edgeai.appliance.relay_targets / relay_allowed: a host's targets as its peers scrape them."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.edgeai.appliance.plugins.filter.relay import relay_allowed, relay_targets

NODE = [{"targets": ["172.18.0.1:9100"], "labels": {"job": "node", "instance": "shop-03"}}]
ONNX = [
    {
        "targets": ["onnx-service-0:8000", "onnx-service-1:8000"],
        "labels": {"job": "onnx_service"},
    }
]
PROBE = [
    {
        "targets": ["blackbox-exporter:9115"],
        "labels": {
            "job": "blackbox",
            "route": "health",
            "instance": "https://gateway:30080/healthz",
            "__metrics_path__": "/probe",
            "__param_target": "https://gateway:30080/healthz",
            "__param_module": "gateway_anonymous",
        },
    }
]


def test_every_target_goes_through_the_relay_with_its_own_labels() -> None:
    out = relay_targets([NODE, ONNX, PROBE], "10.20.0.13:9464", "shop-03")
    assert out == [
        {
            "targets": ["10.20.0.13:9464"],
            "labels": {
                "job": "node",
                "instance": "shop-03",
                "__metrics_path__": "/relay/172.18.0.1:9100/metrics",
                "host": "shop-03",
            },
        },
        {
            "targets": ["10.20.0.13:9464"],
            "labels": {
                "job": "onnx_service",
                "instance": "onnx-service-0:8000",
                "__metrics_path__": "/relay/onnx-service-0:8000/metrics",
                "host": "shop-03",
            },
        },
        {
            "targets": ["10.20.0.13:9464"],
            "labels": {
                "job": "onnx_service",
                "instance": "onnx-service-1:8000",
                "__metrics_path__": "/relay/onnx-service-1:8000/metrics",
                "host": "shop-03",
            },
        },
        {
            "targets": ["10.20.0.13:9464"],
            "labels": {
                "job": "blackbox",
                "route": "health",
                "instance": "https://gateway:30080/healthz",
                "__metrics_path__": "/relay/blackbox-exporter:9115/probe",
                "__param_target": "https://gateway:30080/healthz",
                "__param_module": "gateway_anonymous",
                "host": "shop-03",
            },
        },
    ]


def test_the_allow_list_is_every_target_once() -> None:
    assert relay_allowed([ONNX, PROBE, ONNX, [], None]) == [
        "blackbox-exporter:9115",
        "onnx-service-0:8000",
        "onnx-service-1:8000",
    ]


@pytest.mark.parametrize(
    ("fragments", "message"),
    [
        ("not a list", "must be a list"),
        ([[{"labels": {}}]], "not a file_sd target group"),
        ([[{"targets": ["http://x:1/"]}]], "not a host:port target"),
        ([[{"targets": ["x:1"], "labels": {"__scheme__": "https"}}]], "only plain HTTP"),
    ],
)
def test_malformed_fragments_are_named(fragments: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        relay_targets(fragments, "10.0.0.1:9464", "h")


def test_the_relay_address_must_be_host_and_port() -> None:
    with pytest.raises(AnsibleFilterError, match="relay's address"):
        relay_targets([ONNX], "10.0.0.1", "h")
