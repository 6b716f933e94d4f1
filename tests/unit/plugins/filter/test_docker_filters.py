"""The docker role's filters: daemon.json merge, registry-mirror references, bundle manifests."""

from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.edgeai.appliance.plugins.filter.docker import (
    bundle_file,
    bundle_manifest,
    container_baseline,
    daemon_json_merge,
    memory_limit,
    mirror_ref,
    networks_to_change,
    replica_names,
)

DESIRED = {"log-driver": "json-file", "log-opts": {"max-size": "10m"}, "icc": False}


def test_merge_onto_nothing_is_the_roles_keys() -> None:
    assert daemon_json_merge("", [], DESIRED) == DESIRED
    assert daemon_json_merge(None, None, DESIRED) == DESIRED


def test_keys_other_tools_wrote_stay() -> None:
    nvidia = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}
    merged = daemon_json_merge(json.dumps(nvidia), ["log-driver", "log-opts", "icc"], DESIRED)
    assert merged["runtimes"] == nvidia["runtimes"]
    assert merged["icc"] is False


def test_nested_mappings_merge_and_the_role_wins() -> None:
    existing = {"log-opts": {"max-size": "100m", "compress": "true"}, "icc": True}
    merged = daemon_json_merge(json.dumps(existing), [], DESIRED)
    assert merged["log-opts"] == {"max-size": "10m", "compress": "true"}
    assert merged["icc"] is False


def test_keys_the_role_stopped_setting_are_removed() -> None:
    existing = {**DESIRED, "userns-remap": "default", "default-shm-size": "128M"}
    merged = daemon_json_merge(json.dumps(existing), [*DESIRED, "userns-remap"], DESIRED)
    assert "userns-remap" not in merged
    # never managed by the role: stays
    assert merged["default-shm-size"] == "128M"


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object")],
)
def test_a_broken_daemon_json_is_named(text: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        daemon_json_merge(text, [], DESIRED)


def test_options_that_are_not_a_mapping_name_the_variable() -> None:
    with pytest.raises(AnsibleFilterError, match="docker_daemon_options must be a mapping"):
        daemon_json_merge("", [], ["icc", False])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ref", "mirror", "expected"),
    [
        ("nginx:1.27.3", "", "nginx:1.27.3"),
        ("nginx:1.27.3", "reg.local:5000", "reg.local:5000/library/nginx:1.27.3"),
        ("prom/prometheus:v3.1.0", "reg.local:5000/", "reg.local:5000/prom/prometheus:v3.1.0"),
        ("docker.io/library/nginx:1", "reg.local", "reg.local/library/nginx:1"),
        ("docker.io/grafana/grafana:11", "reg.local", "reg.local/grafana/grafana:11"),
        ("ghcr.io/o/i:1", "reg.local:5000", "reg.local:5000/ghcr.io/o/i:1"),
        ("localhost/x:1", "m", "m/localhost/x:1"),
        (
            "edgeai-lab/python:abc",
            "edgeai-registry:5000",
            "edgeai-registry:5000/edgeai-lab/python:abc",
        ),
    ],
)
def test_mirror_ref(ref: str, mirror: str, expected: str) -> None:
    assert mirror_ref(ref, mirror) == expected


def test_mirror_ref_needs_a_reference() -> None:
    with pytest.raises(AnsibleFilterError):
        mirror_ref("", "reg.local")


def test_bundle_manifest_pairs_refs_ids_files_and_checksums() -> None:
    images = [
        {"Id": "sha256:aaa", "RepoTags": ["nginx:1.27.3"]},
        {"Id": "sha256:bbb", "RepoTags": ["prom/prometheus:v3.1.0", "prom/prometheus:latest"]},
    ]
    manifest = bundle_manifest(images, ["prom/prometheus:v3.1.0", "nginx:1.27.3"], ["s1", "s2"])
    assert manifest == {
        "images": [
            {
                "ref": "prom/prometheus:v3.1.0",
                "id": "sha256:bbb",
                "file": "prom_prometheus_v3.1.0.tar",
                "sha256": "s1",
            },
            {"ref": "nginx:1.27.3", "id": "sha256:aaa", "file": "nginx_1.27.3.tar", "sha256": "s2"},
        ]
    }


def test_bundle_manifest_names_a_missing_image() -> None:
    with pytest.raises(AnsibleFilterError, match=r"nginx:1\.27\.3 is not on the controller"):
        bundle_manifest([], ["nginx:1.27.3"], ["s"])


def test_bundle_file_names_are_safe() -> None:
    assert bundle_file("reg.local:5000/a/b:1") == "reg.local_5000_a_b_1.tar"


@pytest.mark.parametrize(
    ("value", "total_mb", "expected"),
    [
        ("512m", 0, str(512 * 1024**2)),
        ("1G", 0, str(1024**3)),
        ("1.5g", 0, str(int(1.5 * 1024**3))),
        ("65536k", 0, str(64 * 1024**2)),
        (268435456, 0, "268435456"),
        ("25%", 8000, str(int(8000 * 1024**2 / 4))),
        ("100%", 1024, str(1024**3)),
        ("", 0, ""),
    ],
)
def test_memory_limit_in_bytes(value: object, total_mb: int, expected: str) -> None:
    assert memory_limit(value, total_mb, "x_memory_limit") == expected


@pytest.mark.parametrize(
    ("value", "total_mb", "message"),
    [
        ("lots", 0, "x_memory_limit: 'lots' is neither a size"),
        ("2 g", 0, "is neither a size"),
        ("25%", 0, "share of the host's memory, which is unknown here"),
        ("0%", 4096, "between 0% and 100%"),
        ("150%", 4096, "between 0% and 100%"),
        ("4m", 0, "under Docker's minimum of 6 MiB"),
    ],
)
def test_memory_limit_mistakes_name_the_variable(value: str, total_mb: int, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        memory_limit(value, total_mb, "x_memory_limit")


def test_replica_names_number_the_replicas_after_the_first() -> None:
    assert replica_names(1, "ollama") == ["ollama"]
    names = ["onnx-service", "onnx-service-2", "onnx-service-3"]
    assert replica_names("3", "onnx-service") == names


@pytest.mark.parametrize("count", [0, -1, "two", None])
def test_replica_names_refuse_a_count_below_one(count: object) -> None:
    with pytest.raises(AnsibleFilterError, match="replica_names"):
        replica_names(count, "ollama")


def test_container_baseline_is_the_security_baseline_with_the_roles_labels() -> None:
    assert container_baseline("gateway") == {
        "cap_drop": ["ALL"],
        "security_opts": ["no-new-privileges:true"],
        "read_only": True,
        "labels": {"org.edgeai.appliance": "true", "org.edgeai.role": "gateway"},
        "comparisons": {"labels": "strict", "env": "strict", "networks": "strict"},
    }


def test_container_baseline_adds_labels_and_overrides_single_comparisons() -> None:
    options = container_baseline(
        "gateway", labels={"org.opencontainers.image.title": "edgeai gateway"},
        comparisons={"networks": "ignore"},
    )  # fmt: skip
    assert options["labels"] == {
        "org.edgeai.appliance": "true",
        "org.edgeai.role": "gateway",
        "org.opencontainers.image.title": "edgeai gateway",
    }
    assert options["comparisons"] == {"labels": "strict", "env": "strict", "networks": "ignore"}


def test_container_baseline_role_labels_cannot_be_overridden_by_accident() -> None:
    # the extra labels come after the role's: a caller can add, and the role label stays its own
    # unless it names it on purpose
    options = container_baseline("ollama", labels={"x": 1})
    assert options["labels"]["org.edgeai.role"] == "ollama"
    assert options["labels"]["x"] == "1"


@pytest.mark.parametrize(
    ("memory", "total_mb", "expected"),
    [("", 0, None), ("512m", 0, str(512 * 1024**2)), ("50%", 1000, str(500 * 1024**2))],
)
def test_container_baseline_memory_limit_only_when_set(
    memory: str, total_mb: int, expected: str | None
) -> None:
    options = container_baseline("grafana", memory, total_mb)
    assert options.get("memory") == expected


def test_container_baseline_names_the_memory_variable() -> None:
    with pytest.raises(AnsibleFilterError, match=r"^grafana_memory_limit: 'lots'"):
        container_baseline("grafana", "lots")
    with pytest.raises(AnsibleFilterError, match=r"^exporters_node_memory_limit: '20%' is a share"):
        container_baseline("exporters", "20%", 0, "exporters_node_memory_limit")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "Gate way"}, "the role must be a role name"),
        ({"role": "gateway", "labels": ["a"]}, "labels must be a mapping"),
        ({"role": "gateway", "comparisons": {"env": "loose"}}, "must be one of strict"),
    ],
)
def test_container_baseline_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        container_baseline(**kwargs)


def test_container_baseline_returns_a_fresh_mapping() -> None:
    first = container_baseline("gateway")
    first["labels"]["tampered"] = "yes"
    first["comparisons"]["env"] = "ignore"
    assert "tampered" not in container_baseline("gateway")["labels"]
    assert container_baseline("gateway")["comparisons"]["env"] == "strict"


def _net(name: str, **over: object) -> dict:
    """A network as Docker's GET /networks reports it (the fields the role manages)."""
    net = {
        "Name": name,
        "Driver": "bridge",
        "Internal": False,
        "Labels": {"org.edgeai.appliance": "true"},
        "IPAM": {"Driver": "default", "Config": []},
        "Options": {},
    }
    net.update(over)
    return net


WANTED = [
    {"name": "edge_front", "internal": False},
    {"name": "edge_back", "internal": True},
    {"name": "edge_lan", "internal": False, "subnet": "172.30.5.0/24", "icc": False},
]
PRESENT = [
    _net("edge_front"),
    _net("edge_back", Internal=True),
    _net(
        "edge_lan",
        IPAM={"Config": [{"Subnet": "172.30.5.0/24", "Gateway": "172.30.5.1"}]},
        Options={"com.docker.network.bridge.enable_icc": "false"},
    ),
]


def test_networks_that_match_are_left_alone() -> None:
    assert networks_to_change(WANTED, PRESENT) == []


def test_a_missing_network_is_created() -> None:
    assert networks_to_change(WANTED, PRESENT[1:]) == [WANTED[0]]
    assert networks_to_change(WANTED, []) == WANTED
    assert networks_to_change(WANTED, None) == WANTED


@pytest.mark.parametrize(
    ("index", "change"),
    [
        (0, {"Driver": "macvlan"}),
        (0, {"Internal": True}),
        (1, {"Internal": False}),
        (0, {"Labels": {}}),
        (0, {"Labels": None}),
        (2, {"IPAM": {"Config": [{"Subnet": "172.30.6.0/24"}]}}),
        (2, {"IPAM": {"Config": None}}),
        (2, {"Options": {"com.docker.network.bridge.enable_icc": "true"}}),
        (2, {"Options": {}}),
    ],
)
def test_a_network_with_other_settings_goes_to_docker_network(index: int, change: dict) -> None:
    present = [dict(net) for net in PRESENT]
    present[index].update(change)
    assert networks_to_change(WANTED, present) == [WANTED[index]]


def test_icc_is_read_as_ansible_reads_a_boolean() -> None:
    wanted = [{"name": "edge_lan", "subnet": "172.30.5.0/24", "icc": "no"}]
    assert networks_to_change(wanted, PRESENT[2:]) == []
    wanted = [{"name": "edge_lan", "subnet": "172.30.5.0/24", "icc": "yes"}]
    assert networks_to_change(wanted, PRESENT[2:]) == wanted
