"""The lab image set: debootstrap bases and Dockerfile recipes, cached by a content hash.

Every image is tagged `edgeai-lab/<name>:<hash>`, where the hash covers its recipe, its build
context (the files git tracks or would track there), its base image's hash and its build args.
An image whose tag exists is not built again, so a warm run takes seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgelab.emulation import emulate
from edgelab.proc import CommandError, run

NAMESPACE = "edgeai-lab"
HASH_LENGTH = 16
# Trust anchors the build machine added locally (a TLS-inspecting proxy's CA, a corporate CA):
# the lab base trusts them too, so apt and pip work inside image builds as they do on the host.
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
# the Debian 13 base whose qemu-user runs foreign-architecture images (see edgelab.emulation)
EMULATOR_BASE = "base-trixie"
PIP_CONF = "[global]\n# use Debian's trust store (it includes the build machine's local CAs)\n"
PIP_CONF += "cert = /etc/ssl/certs/ca-certificates.crt\n"


class SpecError(ValueError):
    """tests/images/images.yml is malformed; the message names the entry."""


@dataclass(frozen=True)
class Recipe:
    name: str
    context: Path
    dockerfile: Path
    base: str
    push: bool
    build_args: dict[str, str] = field(default_factory=dict)
    # built by `edgelab images` unless false; then only when named (`edgelab images --only NAME`)
    default: bool = True


@dataclass(frozen=True)
class Base:
    """A debootstrap root: `base` (images.yml's `base:`) and the extra ones under `bases:`."""

    suite: str
    variant: str
    # a Debian architecture other than the build machine's (e.g. arm64): debootstrap fetches it,
    # and every image built on it is built and run as that platform (under qemu-user-static)
    arch: str | None = None

    @property
    def platform(self) -> str | None:
        return f"linux/{self.arch}" if self.arch else None


@dataclass(frozen=True)
class ImageSet:
    root: Path
    bases: dict[str, Base]
    recipes: dict[str, Recipe]

    @property
    def suite(self) -> str:
        return self.bases["base"].suite

    @property
    def variant(self) -> str:
        return self.bases["base"].variant


def load_spec(spec_path: Path, root: Path) -> ImageSet:
    """Read and check the image set; bases must exist and must not form a cycle."""
    data = yaml.safe_load(spec_path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
        raise SpecError(f"{spec_path}: expected a mapping with an 'images' mapping")
    bases = _load_bases(data, spec_path)
    entries: dict[str, tuple[Path, object]] = {n: (spec_path, e) for n, e in data["images"].items()}
    # Fragments: each component adds its images in images.d/<component>.yml (an `images` mapping).
    for fragment in sorted((spec_path.parent / "images.d").glob("*.yml")):
        fdata = yaml.safe_load(fragment.read_text())
        if not isinstance(fdata, dict) or not isinstance(fdata.get("images"), dict):
            raise SpecError(f"{fragment}: expected a mapping with an 'images' mapping")
        for name, entry in fdata["images"].items():
            if name in entries or name in bases:
                first = entries[name][0]
                raise SpecError(f"{fragment}: image '{name}' is already defined in {first}")
            entries[name] = (fragment, entry)
    recipes: dict[str, Recipe] = {}
    for name, (source, entry) in entries.items():
        if not isinstance(entry, dict) or "context" not in entry:
            raise SpecError(f"{source}: image '{name}' needs a 'context'")
        context = root / entry["context"]
        dockerfile = context / entry.get("dockerfile", "Dockerfile")
        if not dockerfile.is_file():
            raise SpecError(f"{source}: image '{name}': {dockerfile} does not exist")
        recipes[name] = Recipe(
            name=name,
            context=context,
            dockerfile=dockerfile,
            base=entry.get("base", "base"),
            push=bool(entry.get("push", True)),
            build_args={str(k): str(v) for k, v in (entry.get("build_args") or {}).items()},
            default=bool(entry.get("default", True)),
        )
    for recipe in recipes.values():
        if recipe.base not in bases and recipe.base not in recipes:
            raise SpecError(f"{spec_path}: image '{recipe.name}': unknown base '{recipe.base}'")
    for name in recipes:
        _check_acyclic(name, recipes, spec_path)
    if any(base.arch for base in bases.values()) and EMULATOR_BASE not in bases:
        raise SpecError(f"{spec_path}: a base with an arch needs the base '{EMULATOR_BASE}'")
    return ImageSet(root=root, bases=bases, recipes=recipes)


def _load_bases(data: dict[str, object], spec_path: Path) -> dict[str, Base]:
    """`base` (the default root) and the named roots under `bases`."""
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise SpecError(f"{spec_path}: 'base' must be a mapping {{suite, variant}}")
    bases = {"base": Base(str(base.get("suite", "bookworm")), str(base.get("variant", "minbase")))}
    extra = data.get("bases") or {}
    if not isinstance(extra, dict):
        raise SpecError(f"{spec_path}: 'bases' must map names to {{suite, variant}}")
    for name, entry in extra.items():
        if name in bases or not isinstance(entry, dict) or "suite" not in entry:
            raise SpecError(
                f"{spec_path}: base '{name}' needs a 'suite' and a name other than 'base'"
            )
        arch = entry.get("arch")
        if arch is not None and not re.fullmatch(r"[a-z0-9]+", str(arch)):
            raise SpecError(f"{spec_path}: base '{name}': arch must be a Debian architecture")
        bases[str(name)] = Base(
            str(entry["suite"]),
            str(entry.get("variant", "minbase")),
            str(arch) if arch is not None else None,
        )
    return bases


def _check_acyclic(name: str, recipes: dict[str, Recipe], spec_path: Path) -> None:
    seen = [name]
    current = recipes[name].base
    while current in recipes:
        if current in seen:
            raise SpecError(f"{spec_path}: base cycle {' -> '.join([*seen, current])}")
        seen.append(current)
        current = recipes[current].base


def context_files(context: Path) -> list[Path]:
    """The files of a build context that count: tracked or untracked-but-not-ignored by git."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "."],
        cwd=context,
        capture_output=True,
        check=False,
    )
    if result.returncode == 0:
        names = [n for n in result.stdout.decode().split("\0") if n]
        return sorted(context / n for n in names if (context / n).is_file())
    return sorted(p for p in context.rglob("*") if p.is_file())


def hash_files(files: list[Path], relative_to: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(relative_to)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def base_hash(images: ImageSet, ca_dir: Path = LOCAL_CA_DIR, name: str = "base") -> str:
    base = images.bases[name]
    # (the build machine's own architecture adds nothing, so its hashes stay what they were)
    arch = f" --arch={base.arch}" if base.arch else ""
    digest = hashlib.sha256(f"debootstrap{arch} {base.suite} {base.variant}\n".encode())
    digest.update(PIP_CONF.encode())
    cas = sorted(ca_dir.glob("*.crt")) if ca_dir.is_dir() else []
    digest.update(hash_files(cas, ca_dir).encode())
    return digest.hexdigest()[:HASH_LENGTH]


def image_hashes(images: ImageSet, ca_dir: Path = LOCAL_CA_DIR) -> dict[str, str]:
    """Content hash of every image, bases first."""
    hashes = {name: base_hash(images, ca_dir, name) for name in images.bases}

    def resolve(name: str) -> str:
        if name in hashes:
            return hashes[name]
        recipe = images.recipes[name]
        files = context_files(recipe.context)
        if recipe.dockerfile not in files:
            files = sorted([*files, recipe.dockerfile])
        digest = hashlib.sha256(hash_files(files, recipe.context).encode())
        digest.update(resolve(recipe.base).encode())
        digest.update(json.dumps(recipe.build_args, sort_keys=True).encode())
        hashes[name] = digest.hexdigest()[:HASH_LENGTH]
        return hashes[name]

    for name in images.recipes:
        resolve(name)
    return hashes


def platform_of(images: ImageSet, name: str) -> str | None:
    """The platform an image is built for: its debootstrap root's (None: the build machine's)."""
    while name in images.recipes:
        name = images.recipes[name].base
    return images.bases[name].platform


def image_ref(name: str, content_hash: str) -> str:
    return f"{NAMESPACE}/{name}:{content_hash}"


def image_exists(ref: str) -> bool:
    result = subprocess.run(
        ["docker", "image", "inspect", ref],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def build_base(base: Base, ref: str, ca_dir: Path = LOCAL_CA_DIR) -> None:
    """debootstrap a minimal Debian, add the local trust anchors, import it as `ref`."""
    with tempfile.TemporaryDirectory(prefix="edgelab-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        arch = [f"--arch={base.arch}"] if base.arch else []
        run(["debootstrap", *arch, f"--variant={base.variant}", base.suite, str(rootfs)])
        if ca_dir.is_dir():
            target = rootfs / "usr/local/share/ca-certificates"
            target.mkdir(parents=True, exist_ok=True)
            for cert in sorted(ca_dir.glob("*.crt")):
                (target / cert.name).write_bytes(cert.read_bytes())
        (rootfs / "etc/pip.conf").write_text(PIP_CONF)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "-c", "."],
            stdout=subprocess.PIPE,
        )
        imported = subprocess.run(
            ["docker", "import", "--change", 'CMD ["/bin/bash"]', "-", ref],
            stdin=tar.stdout,
            capture_output=True,
            check=False,
        )
        tar.wait()
        if tar.returncode != 0 or imported.returncode != 0:
            raise CommandError(
                f"importing {rootfs} as {ref} failed (tar {tar.returncode}, docker import "
                f"{imported.returncode}): {imported.stderr.decode(errors='replace').strip()}"
            )
    if base.platform:
        set_platform(ref, base.platform)


def set_platform(ref: str, platform: str) -> None:
    """Record `platform` in the image config of `ref` (docker save, rewrite, docker load).

    The engine of the build machines (Debian's Docker 20.10, legacy builder, no buildx) ignores
    `docker import --platform` and fails `docker build --platform` for a foreign platform at the
    first COPY after a RUN ("image ... does not match the specified platform"). So foreign images
    are built without the flag, from bases of their architecture, and their config is corrected
    afterwards; the layers, and so the binaries, are untouched.
    """
    _os, _sep, arch_variant = platform.partition("/")
    arch, _sep, variant = arch_variant.partition("/")
    variant = variant or ("v8" if arch == "arm64" else "")
    with tempfile.TemporaryDirectory(prefix="edgelab-platform-") as tmp:
        saved, fixed = Path(tmp) / "saved.tar", Path(tmp) / "fixed.tar"
        run(["docker", "save", "-o", str(saved), ref])
        with tarfile.open(saved) as source, tarfile.open(fixed, "w") as target:
            manifest = json.load(source.extractfile("manifest.json"))
            old_config = manifest[0]["Config"]
            config = json.load(source.extractfile(old_config))
            if (config.get("architecture"), config.get("variant", "")) == (arch, variant):
                return
            config["architecture"] = arch
            config.pop("variant", None)
            if variant:
                config["variant"] = variant
            data = json.dumps(config, separators=(",", ":")).encode()
            new_config = f"{hashlib.sha256(data).hexdigest()}.json"
            manifest[0]["Config"] = new_config
            manifest[0]["RepoTags"] = [ref]
            for member in source.getmembers():
                if member.name in {old_config, "manifest.json", "repositories"}:
                    continue
                target.addfile(member, source.extractfile(member) if member.isfile() else None)
            for name, payload in (
                (new_config, data),
                ("manifest.json", json.dumps(manifest).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                target.addfile(info, io.BytesIO(payload))
        run(["docker", "load", "-q", "-i", str(fixed)])


def build_recipe(
    recipe: Recipe, ref: str, base_ref: str, content_hash: str, platform: str | None = None
) -> None:
    argv = [
        "docker",
        "build",
        "--build-arg",
        f"BASE_IMAGE={base_ref}",
        "--label",
        f"org.edgeai.lab.hash={content_hash}",
        "-t",
        ref,
        "-f",
        str(recipe.dockerfile),
    ]
    for key, value in sorted(recipe.build_args.items()):
        argv += ["--build-arg", f"{key}={value}"]
    run([*argv, str(recipe.context)])
    if platform:  # built from a base of that platform; its config says so (see set_platform)
        set_platform(ref, platform)


def ensure_images(
    images: ImageSet, log: Callable[[str], None] = print, only: list[str] | None = None
) -> dict[str, str]:
    """Build what is missing; return name -> ref for every image built or found and its bases.

    Without `only`, every recipe that is not `default: false`; with it, the named ones.
    """
    unknown = sorted(set(only or []) - set(images.recipes))
    if unknown:
        raise SpecError(f"no image recipe named {', '.join(unknown)}")
    hashes = image_hashes(images)
    refs = {name: image_ref(name, h) for name, h in hashes.items()}
    done: set[str] = set()

    def ensure(name: str) -> None:
        if name in done:
            return
        if name in images.bases:
            base = images.bases[name]
            if base.arch:
                ensure(EMULATOR_BASE)
                emulate(base.arch, refs[EMULATOR_BASE], images.root / ".cache/qemu")
            if image_exists(refs[name]):
                log(f"cached  {refs[name]}")
            else:
                what = f"{base.suite} {base.arch}" if base.arch else base.suite
                log(f"build   {refs[name]} (debootstrap {what})")
                build_base(base, refs[name])
            done.add(name)
            return
        recipe = images.recipes[name]
        ensure(recipe.base)
        if image_exists(refs[name]):
            log(f"cached  {refs[name]}")
        else:
            log(f"build   {refs[name]}")
            platform = platform_of(images, name)
            build_recipe(recipe, refs[name], refs[recipe.base], hashes[name], platform)
        done.add(name)

    for name, recipe in images.recipes.items():
        if (name in only) if only else recipe.default:
            ensure(name)
    return {name: refs[name] for name in sorted(done)}
