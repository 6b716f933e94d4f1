"""Build the project's own images at the collection's version and deliver them to a site.

The collection deploys three images that this repository builds and nobody else publishes: the
ONNX inference service (`onnx_service_image`), the Ollama exporter (`ollama_exporter_image`) and
keepalived for the gateway group's virtual IP (`keepalived_image`).
Their role defaults name them `localhost/edgeai/<name>:<collection version>`: a reference no
device resolves through a public registry. This command builds them from this checkout and

- with `--registry HOST[:PORT]`, pushes them to the site's registry under the name the devices
  pull through `docker_image_mirror: HOST[:PORT]` (the `edgeai.appliance.mirror_ref` mapping),
  for every `--platform` (several platforms become one multi-platform manifest list);
- without it, leaves them on this machine's engine, where `playbooks/bundle.yml` exports them
  into an offline bundle (one platform per bundle: the architecture of the devices).

    make release-images REGISTRY=registry.site.example:5000 PLATFORMS=linux/amd64,linux/arm64

A platform other than the build machine's needs qemu's user mode registered with binfmt_misc
(10.0 or later: 7.2 crashes in onnxruntime; `make arm64` shows it working on this kind of machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform as host
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from edgelab.images import set_platform  # noqa: E402


def _collection_filter(name: str):
    """A module of the collection's filter plugins, loaded by path (`docker` is also the SDK)."""
    spec = importlib.util.spec_from_file_location(
        f"edgeai_filter_{name}", ROOT / f"plugins/filter/{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the devices' mapping of an image reference to the site registry's name for it
mirror_ref = _collection_filter("docker").mirror_ref

DEFAULT_BASE = "python:3.11-slim"
# the build machine's architecture, as Docker names platforms
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(host.machine(), host.machine())
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU = {"arm64": "aarch64", "amd64": "x86_64", "arm": "arm", "riscv64": "riscv64"}


class ReleaseError(RuntimeError):
    """A check failed before anything was built or pushed; the message says which."""


@dataclass(frozen=True)
class ProjectImage:
    name: str
    context: Path
    role: str
    variable: str

    def default_ref(self) -> str:
        defaults = yaml.safe_load((ROOT / f"roles/{self.role}/defaults/main.yml").read_text())
        return str(defaults[self.variable])


IMAGES = (
    ProjectImage("onnx-service", ROOT / "onnx_service", "onnx_service", "onnx_service_image"),
    ProjectImage(
        "ollama-exporter", ROOT / "exporters/ollama_exporter", "ollama", "ollama_exporter_image"
    ),
    # Debian's keepalived: no maintained public image exists (the lab builds the same recipe)
    ProjectImage("keepalived", ROOT / "tests/images/keepalived", "keepalived", "keepalived_image"),
)


def collection_version() -> str:
    return str(yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"])


def check_refs(images: tuple[ProjectImage, ...], version: str) -> dict[str, str]:
    """Each role default must name its image at the collection's version."""
    refs = {}
    for image in images:
        ref = image.default_ref()
        repository, _, tag = ref.rpartition(":")
        if tag != version or "/" not in repository:
            raise ReleaseError(
                f"roles/{image.role}/defaults/main.yml: {image.variable} is {ref!r}; it must be "
                f"<repository>:{version}, the version in galaxy.yml"
            )
        refs[image.name] = ref
    return refs


def arch_of(platform: str) -> str:
    os_name, _, arch = platform.partition("/")
    if os_name != "linux" or not arch or "/" in arch:
        raise ReleaseError(f"--platform {platform!r}: expected linux/<arch>, e.g. linux/arm64")
    return arch


def check_emulation(arch: str) -> None:
    """A foreign platform builds only where the kernel runs its binaries through qemu."""
    if arch == HOST_ARCH:
        return
    entry = BINFMT / f"qemu-{QEMU.get(arch, arch)}"
    if not (entry.is_file() and entry.read_text().startswith("enabled")):
        raise ReleaseError(
            f"linux/{arch} binaries do not run on this {HOST_ARCH} machine: register qemu's user "
            f"mode (10.0 or later, e.g. Debian 13's qemu-user) with binfmt_misc ({entry} is "
            "missing; `make arm64` shows how the lab does it)"
        )


def parse_bases(values: list[str], platforms: list[str]) -> dict[str, str]:
    """`--base-image REF` for every platform, or `--base-image PLATFORM=REF` per platform."""
    bases = dict.fromkeys(platforms, DEFAULT_BASE)
    for value in values:
        platform, sep, ref = value.partition("=")
        if not sep:
            bases = dict.fromkeys(platforms, value)
        elif platform not in bases:
            raise ReleaseError(f"--base-image {value!r}: {platform} is not one of --platform")
        else:
            bases[platform] = ref
    return bases


def has_buildkit() -> bool:
    """Whether `docker build` is BuildKit's (buildx), which builds any platform with --platform."""
    result = subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False)
    return result.returncode == 0


def plan(args: argparse.Namespace, buildkit: bool = True) -> list[list[str]]:
    """The commands of a release, in order (`set-platform REF PLATFORM` is done in-process).

    Without BuildKit (the legacy builder, as Debian's Docker 20.10 has it) a foreign platform is
    built without --platform from a base image of that platform, named per platform with
    --base-image, and its config is corrected afterwards (edgelab.images.set_platform).
    """
    version = collection_version()
    refs = check_refs(IMAGES, version)
    platforms = args.platform or ["linux/amd64"]
    for platform in platforms:
        check_emulation(arch_of(platform))
    if len(platforms) > 1 and not args.registry:
        raise ReleaseError(
            "several --platform values need --registry: a multi-platform image exists only as a "
            "manifest list in a registry (for an offline bundle, release one platform at a time)"
        )
    bases = parse_bases(args.base_image or [], platforms)
    for platform in platforms:
        if not buildkit and arch_of(platform) != HOST_ARCH and bases[platform] == DEFAULT_BASE:
            raise ReleaseError(
                f"{platform}: this engine's builder has no BuildKit (install docker-buildx), so "
                f"name a base image of that platform: --base-image {platform}=<image>"
            )
    insecure = ["--insecure"] if args.insecure else []
    commands: list[list[str]] = []
    for image in IMAGES:
        ref = refs[image.name]
        target = mirror_ref(ref, args.registry) if args.registry else ref
        labels = [
            "--label", f"org.opencontainers.image.version={version}",
            "--label", f"org.opencontainers.image.title={image.name}",
            "--label", "org.opencontainers.image.licenses=GPL-3.0-or-later",
        ]  # fmt: skip
        per_platform = []
        for platform in platforms:
            tag = target if len(platforms) == 1 else f"{target}-{arch_of(platform)}"
            legacy = not buildkit and arch_of(platform) != HOST_ARCH
            commands.append(
                [
                    "docker", "build", *([] if legacy else ["--platform", platform]),
                    "--build-arg", f"BASE_IMAGE={bases[platform]}",
                    *labels, "-t", tag, str(image.context),
                ]
            )  # fmt: skip
            if legacy:
                commands.append(["set-platform", tag, platform])
            if args.registry:
                commands.append(["docker", "push", tag])
            per_platform.append(tag)
        if len(platforms) > 1:
            commands.append(["docker", "manifest", "rm", target])
            commands.append(["docker", "manifest", "create", *insecure, target, *per_platform])
            commands.append(["docker", "manifest", "push", *insecure, "--purge", target])
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="release_images.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--registry",
        help="the site's registry, HOST[:PORT] as in docker_image_mirror (default: build only)",
    )
    parser.add_argument(
        "--platform",
        action="append",
        help="linux/<arch> to build for (repeatable; default linux/amd64)",
    )
    parser.add_argument(
        "--base-image",
        action="append",
        metavar="[PLATFORM=]REF",
        help=f"python base image (default {DEFAULT_BASE}; per platform with PLATFORM=REF)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="the registry speaks plain HTTP (a lab registry)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    if args.platform and len(args.platform) == 1 and "," in args.platform[0]:
        args.platform = [p for p in args.platform[0].split(",") if p]
    try:
        commands = plan(args, buildkit=has_buildkit())
    except ReleaseError as error:
        print(f"release_images: error: {error}", file=sys.stderr)
        return 2
    for command in commands:
        print("+ " + " ".join(command), flush=True)
        if args.dry_run:
            continue
        if command[0] == "set-platform":
            set_platform(command[1], command[2])
            continue
        # `manifest rm` only clears a local list left by an earlier run
        check = command[:3] != ["docker", "manifest", "rm"]
        result = subprocess.run(command, check=False, capture_output=not check)
        if check and result.returncode != 0:
            failed = " ".join(command[:3])
            print(f"release_images: error: {failed} failed ({result.returncode})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
