"""tools/release_images.py: what it would build and push, checked without running Docker.

The end-to-end run (both platforms built, one manifest list per image in a registry) is in
tests/arm64, which `make arm64` runs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("release_images", REPO / "tools/release_images.py")
release = importlib.util.module_from_spec(spec)
sys.modules["release_images"] = release
spec.loader.exec_module(release)

VERSION = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]


def _plan(*argv: str, buildkit: bool = True) -> list[list[str]]:
    parser_args = release.argparse.Namespace(
        registry=None, platform=None, base_image=None, insecure=False, dry_run=True
    )
    it = iter(argv)
    for flag in it:
        key = flag.lstrip("-").replace("-", "_")
        value = next(it) if key not in {"insecure"} else True
        if key in {"platform", "base_image"}:
            setattr(parser_args, key, [*(getattr(parser_args, key) or []), value])
        else:
            setattr(parser_args, key, value)
    return release.plan(parser_args, buildkit=buildkit)


@pytest.fixture
def arm64_emulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/x\n")
    monkeypatch.setattr(release, "BINFMT", tmp_path)
    monkeypatch.setattr(release, "HOST_ARCH", "amd64")


def test_role_defaults_name_the_collection_version_on_no_public_registry() -> None:
    refs = release.check_refs(release.IMAGES, VERSION)
    assert refs == {
        "onnx-service": f"localhost/edgeai/onnx-service:{VERSION}",
        "ollama-exporter": f"localhost/edgeai/ollama-exporter:{VERSION}",
        "keepalived": f"localhost/edgeai/keepalived:{VERSION}",
    }


def test_a_default_at_another_version_is_refused() -> None:
    with pytest.raises(release.ReleaseError, match=r"onnx_service_image .* must be .*:9\.9\.9"):
        release.check_refs(release.IMAGES, "9.9.9")


def test_local_build_tags_the_role_defaults_and_pushes_nothing() -> None:
    commands = _plan()
    builds = [c for c in commands if c[:2] == ["docker", "build"]]
    assert [c[c.index("-t") + 1] for c in builds] == [
        f"localhost/edgeai/onnx-service:{VERSION}",
        f"localhost/edgeai/ollama-exporter:{VERSION}",
        f"localhost/edgeai/keepalived:{VERSION}",
    ]
    assert all("BASE_IMAGE=python:3.11-slim" in c for c in builds)
    assert all(f"org.opencontainers.image.version={VERSION}" in c for c in builds)
    assert not [c for c in commands if c[1] in {"push", "manifest"}]


def test_registry_push_uses_the_name_devices_pull_through_the_mirror(
    arm64_emulated: None,
) -> None:
    mirror_ref = release._collection_filter("docker").mirror_ref
    commands = _plan(
        "--registry", "registry.site:5000", "--insecure",
        "--platform", "linux/amd64", "--platform", "linux/arm64",
        "--base-image", "linux/arm64=lab/python-arm64:1",
    )  # fmt: skip
    target = mirror_ref(f"localhost/edgeai/onnx-service:{VERSION}", "registry.site:5000")
    assert target == f"registry.site:5000/localhost/edgeai/onnx-service:{VERSION}"
    assert ["docker", "push", f"{target}-arm64"] in commands
    assert ["docker", "push", f"{target}-amd64"] in commands
    create = ["docker", "manifest", "create", "--insecure", target, f"{target}-amd64",
              f"{target}-arm64"]  # fmt: skip
    assert create in commands
    assert commands.index(create) < commands.index(
        ["docker", "manifest", "push", "--insecure", "--purge", target]
    )
    arm_build = next(c for c in commands if c[:2] == ["docker", "build"] and "linux/arm64" in c)
    assert "BASE_IMAGE=lab/python-arm64:1" in arm_build


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--platform", "linux/amd64", "--platform", "linux/arm64"), "need --registry"),
        (("--platform", "arm64"), "expected linux/<arch>"),
        (("--base-image", "linux/s390x=x"), "not one of --platform"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(
    arm64_emulated: None, argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(release.ReleaseError, match=message):
        _plan(*argv)


def test_a_foreign_platform_without_qemu_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(release, "BINFMT", tmp_path)
    monkeypatch.setattr(release, "HOST_ARCH", "amd64")
    with pytest.raises(release.ReleaseError, match="register qemu"):
        _plan("--registry", "r:5000", "--platform", "linux/arm64")


def test_main_reports_a_refusal_as_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert release.main(["--platform", "arm64", "--dry-run"]) == 2
    assert "expected linux/<arch>" in capsys.readouterr().err


def test_without_buildkit_a_foreign_platform_builds_from_its_own_base(arm64_emulated: None) -> None:
    argv = ("--registry", "r:5000", "--platform", "linux/amd64", "--platform", "linux/arm64")
    with pytest.raises(release.ReleaseError, match="--base-image linux/arm64=<image>"):
        _plan(*argv, buildkit=False)
    commands = _plan(*argv, "--base-image", "linux/arm64=lab/py-arm64:1", buildkit=False)
    arm_tag = f"r:5000/localhost/edgeai/onnx-service:{VERSION}-arm64"
    arm_build = next(c for c in commands if c[:2] == ["docker", "build"] and arm_tag in c)
    assert "--platform" not in arm_build
    assert "BASE_IMAGE=lab/py-arm64:1" in arm_build
    # the config is corrected before the push
    fix = ["set-platform", arm_tag, "linux/arm64"]
    assert (
        commands.index(arm_build)
        < commands.index(fix)
        < commands.index(["docker", "push", arm_tag])
    )
    amd_build = next(c for c in commands if c[:2] == ["docker", "build"] and "linux/amd64" in c)
    assert "--platform" in amd_build
