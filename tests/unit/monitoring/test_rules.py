"""The alert rules rendered by the prometheus role under `promtool test rules` and `check rules`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from packaged import tool

from .conftest import HERE, Rendered

RULES_TEST = HERE / "rules_test.yml"


def _alert_names(rendered: Rendered) -> set[str]:
    return {
        rule["alert"]
        for group in rendered.rules()["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_promtool_unit_tests_pass_on_the_default_rules(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    shutil.copy(rendered["defaults"].prometheus / "rules/edgeai.rules.yml", tmp_path)
    shutil.copy(RULES_TEST, tmp_path)
    result = subprocess.run(
        [tool("promtool"), "test", "rules", RULES_TEST.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_test(rendered: dict[str, Rendered]) -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = _alert_names(rendered["defaults"])
    assert alerts - firing == set(), "alerts without a test that makes them fire"
    assert alerts - quiet == set(), "alerts without a test that keeps them quiet"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_the_expected_alerts_exist(rendered: dict[str, Rendered]) -> None:
    assert _alert_names(rendered["defaults"]) == {
        "TargetDown",
        "GatewayHigh5xxRatio",
        "GatewayLatencyHigh",
        "GatewayRateLimitedRatio",
        "OnnxInferenceFailures",
        "OnnxModelNotLoaded",
        "OnnxModelLoadFailed",
        "OllamaDown",
        "HostDiskWillFillSoon",
        "HostDiskSpaceLow",
        "HostMemoryPressure",
        "ContainerNotRunning",
        "ContainerUnhealthy",
        "ContainerRestarting",
        "ContainerMemoryNearLimit",
        "CertificateExpiringSoon",
        "PullNotConverged",
    }


def test_every_scenario_renders_rules_promtool_accepts(rendered: dict[str, Rendered]) -> None:
    for scenario in rendered.values():
        rules = scenario.prometheus / "rules/edgeai.rules.yml"
        result = subprocess.run(
            [tool("promtool"), "check", "rules", str(rules)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, f"{scenario.name}: {result.stdout}{result.stderr}"


def test_thresholds_come_from_the_inventory(rendered: dict[str, Rendered]) -> None:
    def rule(scenario: str, name: str) -> dict:
        groups = rendered[scenario].rules()["groups"]
        return next(r for g in groups for r in g["rules"] if r.get("alert") == name)

    assert rule("defaults", "TargetDown")["for"] == "2m"
    assert rule("lab", "TargetDown")["for"] == "10s"
    # no per-route thresholds: one term for every route, no route excluded
    latency = rule("site", "GatewayLatencyHigh")["expr"]
    assert "route!~" not in latency
    assert " or " not in latency
    default_latency = rule("defaults", "GatewayLatencyHigh")["expr"]
    assert 'route!~"grafana|ollama|ollama_admin|onnx_admin|openai|prometheus"' in default_latency
    assert 'route="ollama"' in default_latency
    assert 'route="ollama_admin"' not in default_latency
