"""Command line of the lab harness: `python -m edgelab COMMAND` (PYTHONPATH=tools)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from edgelab import caps, engine, images, lanes, models, registry, secrets

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests/images/images.yml"
STATE = ROOT / ".lab"
IMAGES_JSON = STATE / "images.json"
SECRETS_JSON = STATE / "secrets.json"
MODELS_JSON = STATE / "demo-models.json"
# real binaries the tests drive: nginx with njs (gateway), testssl.sh (TLS profile), debootstrap
TEST_PACKAGES = (
    "debootstrap",
    "nginx",
    "libnginx-mod-http-js",
    "testssl.sh",
    "curl",
    # nft -c checks the hardening role's rendered firewall (tests/unit/test_hardening_firewall.py)
    "nftables",
    # promtool, amtool, mtail and the blackbox exporter check monitoring configs and rules.
    "prometheus",
    "prometheus-alertmanager",
    "mtail",
    "prometheus-blackbox-exporter",
    # headless Chromium: the Grafana stand-in's front is tested in a real browser (Molecule)
    "chromium",
)


def _log(message: str) -> None:
    print(f"edgelab: {message}", flush=True)


def cmd_engine(_: argparse.Namespace) -> int:
    how = engine.ensure_engine(ROOT / ".cache/dockerd.log")
    _log(f"Docker engine {how}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    engine.ensure_engine(ROOT / ".cache/dockerd.log")
    engine.apt_install(["debootstrap"])
    image_set = images.load_spec(SPEC, ROOT)
    if args.only:
        # images outside the lab set (e.g. the arm64 ones): built, not pushed, not recorded
        for name, ref in images.ensure_images(image_set, log=_log, only=args.only).items():
            _log(f"{name}: {ref}")
        return 0
    refs = images.ensure_images(image_set, log=_log)
    if not args.no_registry:
        registry.ensure_registry(refs["registry"], log=_log)
        for name, recipe in image_set.recipes.items():
            if recipe.push:
                registry.push(refs[name], log=_log)
    STATE.mkdir(exist_ok=True)
    IMAGES_JSON.write_text(
        json.dumps({"registry": registry.PULL_HOST, "images": refs}, indent=2, sort_keys=True)
        + "\n"
    )
    _log(f"wrote {IMAGES_JSON.relative_to(ROOT)}")
    MODELS_JSON.write_text(json.dumps(models.demo_onnx_models(), indent=2) + "\n")
    gguf = models.gemma_gguf(STATE, ROOT / ".cache/models")
    _log(f"verified {gguf.relative_to(ROOT)} (sha256 {models.GEMMA_SHA256[:12]}...)")
    _, made = secrets.ensure_secrets(SECRETS_JSON)
    _log(f"{'made' if made else 'kept'} the lab secrets in {SECRETS_JSON.relative_to(ROOT)}")
    return 0


def cmd_packages(_: argparse.Namespace) -> int:
    """Debian packages the tests run for real on this machine (installed only when missing)."""
    engine.apt_install(list(TEST_PACKAGES))
    _log("test packages present: " + " ".join(TEST_PACKAGES))
    return 0


def cmd_env(_: argparse.Namespace) -> int:
    """Shell exports for Molecule: the edge-host image and its capability list."""
    image_set = images.load_spec(SPEC, ROOT)
    hashes = images.image_hashes(image_set)
    exports = {
        "EDGEAI_EDGE_HOST_IMAGE": images.image_ref("edge-host", hashes["edge-host"]),
        "EDGEAI_EDGE_HOST_CAPS": "[" + ", ".join(caps.edge_host_capabilities()) + "]",
        "EDGEAI_LAB_NETWORK": registry.NETWORK,
        "EDGEAI_LAB_STATE": str(STATE),
        # the lab images the Docker-driven pytest suites run (tests/gateway, tests/model_sync)
        "GATEWAY_TEST_IMAGE": images.image_ref("nginx", hashes["nginx"]),
        "MSYNC_ONNX_IMAGE": images.image_ref("onnx-service", hashes["onnx-service"]),
        "MSYNC_OLLAMA_IMAGE": images.image_ref("ollama-standin", hashes["ollama-standin"]),
        # the keepalived test runs the VRRP peers and, next to each, a health target in python
        "KEEPALIVED_TEST_IMAGE": images.image_ref("keepalived", hashes["keepalived"]),
        "PYTHON_TEST_IMAGE": images.image_ref("python", hashes["python"]),
        # the project's images built for arm64 (`make arm64` builds them, run under qemu)
        "ARM64_ONNX_IMAGE": images.image_ref("onnx-service-arm64", hashes["onnx-service-arm64"]),
    }
    for key, value in exports.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    if engine.engine_usable():
        registry.remove_all(log=_log)
    IMAGES_JSON.unlink(missing_ok=True)
    return 0


def cmd_lanes(args: argparse.Namespace) -> int:
    """Run NAME=COMMAND lanes side by side (make test's stages)."""
    return lanes.run(lanes.parse(args.lane))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgelab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("engine", help="make sure a Docker engine answers").set_defaults(func=cmd_engine)
    images_parser = sub.add_parser("images", help="build the lab image set and fill the registry")
    images_parser.add_argument("--no-registry", action="store_true", help="build only")
    images_parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="build only this recipe and its bases, including `default: false` ones (repeatable)",
    )
    images_parser.set_defaults(func=cmd_images)
    sub.add_parser("env", help="print shell exports for Molecule").set_defaults(func=cmd_env)
    sub.add_parser("packages", help="install the Debian packages the tests use").set_defaults(
        func=cmd_packages
    )
    sub.add_parser("down", help="remove the lab registry and network").set_defaults(func=cmd_down)
    lanes_parser = sub.add_parser(
        "lanes", help="run commands side by side, output tagged by lane, every lane to its end"
    )
    lanes_parser.add_argument("lane", nargs="+", metavar="NAME=COMMAND", help="a bash command")
    lanes_parser.set_defaults(func=cmd_lanes)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (engine.EngineError, images.SpecError, lanes.LaneSpecError, RuntimeError) as error:
        print(f"edgelab: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
