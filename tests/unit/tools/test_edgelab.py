"""The lab harness: image specs, content hashes and capabilities (no Docker needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))

import lab_summary
from edgelab import caps, emulation, images
from edgelab.engine import wait_until
from edgelab.secrets import NAMES, TOKEN_BYTES, ensure_secrets


def _spec(tmp_path: Path, body: str) -> Path:
    spec = tmp_path / "images.yml"
    spec.write_text(body)
    return spec


def _recipe(tmp_path: Path, name: str, extra: dict[str, str] | None = None) -> Path:
    context = tmp_path / name
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    for file_name, content in (extra or {}).items():
        (context / file_name).write_text(content)
    return context


@pytest.fixture
def image_set(tmp_path: Path) -> images.ImageSet:
    _recipe(tmp_path, "python")
    _recipe(tmp_path, "app", {"app.py": "print('v1')\n"})
    spec = _spec(
        tmp_path,
        "base: {suite: bookworm}\nimages:\n  python: {context: python}\n"
        "  app: {context: app, base: python}\n",
    )
    return images.load_spec(spec, tmp_path)


def test_hashes_are_stable(image_set: images.ImageSet, tmp_path: Path) -> None:
    first = images.image_hashes(image_set, ca_dir=tmp_path / "no-cas")
    second = images.image_hashes(image_set, ca_dir=tmp_path / "no-cas")
    assert first == second
    assert set(first) == {"base", "python", "app"}
    assert all(len(h) == images.HASH_LENGTH for h in first.values())


def test_a_changed_file_changes_its_image_only(image_set: images.ImageSet, tmp_path: Path) -> None:
    before = images.image_hashes(image_set, ca_dir=tmp_path / "no-cas")
    (tmp_path / "app/app.py").write_text("print('v2')\n")
    after = images.image_hashes(image_set, ca_dir=tmp_path / "no-cas")
    assert after["app"] != before["app"]
    assert after["python"] == before["python"]
    assert after["base"] == before["base"]


def test_a_changed_base_changes_everything_above_it(
    image_set: images.ImageSet, tmp_path: Path
) -> None:
    before = images.image_hashes(image_set, ca_dir=tmp_path / "no-cas")
    (tmp_path / "python/Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN true\n")
    after = images.image_hashes(image_set, ca_dir=tmp_path / "no-cas")
    assert after["python"] != before["python"]
    assert after["app"] != before["app"]


def test_new_trust_anchors_rebuild_the_base(image_set: images.ImageSet, tmp_path: Path) -> None:
    cas = tmp_path / "cas"
    cas.mkdir()
    before = images.image_hashes(image_set, ca_dir=cas)
    (cas / "proxy.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    after = images.image_hashes(image_set, ca_dir=cas)
    assert after["base"] != before["base"]
    assert after["app"] != before["app"]


def test_git_ignored_files_do_not_count(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    context = _recipe(tmp_path, "svc", {"main.py": "x = 1\n", ".gitignore": "*.pyc\n"})
    (context / "cache.pyc").write_text("junk")
    names = [p.name for p in images.context_files(context)]
    assert "main.py" in names
    assert "cache.pyc" not in names


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("images: []\n", "expected a mapping"),
        ("images:\n  a: {}\n", "needs a 'context'"),
        ("images:\n  a: {context: missing}\n", "does not exist"),
        ("images:\n  a: {context: a, base: nope}\n", "unknown base 'nope'"),
        ("images:\n  a: {context: a, base: b}\n  b: {context: a, base: a}\n", "base cycle"),
    ],
)
def test_bad_specs_are_named(tmp_path: Path, body: str, message: str) -> None:
    _recipe(tmp_path, "a")
    with pytest.raises(images.SpecError, match=message):
        images.load_spec(_spec(tmp_path, body), tmp_path)


def test_the_repository_spec_loads() -> None:
    root = Path(__file__).resolve().parents[3]
    image_set = images.load_spec(root / "tests/images/images.yml", root)
    assert {"python", "edge-host", "registry"} <= set(image_set.recipes)
    assert image_set.recipes["edge-host"].push is False


def test_capabilities_from_the_bounding_set() -> None:
    everything_but_sys_resource = (1 << 41) - 1
    names = caps.capabilities(everything_but_sys_resource)
    assert "SYS_RESOURCE" not in names
    assert names[0] == "CHOWN"
    assert names[-1] == "AUDIT_READ"  # newer ones are unknown to Docker 20.10
    assert len(names) == 37
    assert caps.capabilities(0b101) == ["CHOWN", "DAC_READ_SEARCH"]


def test_bounding_set_is_read_from_the_status_file() -> None:
    status = "Name:\tpython3\nCapBnd:\t000001fffeffffff\n"
    mask = caps.bounding_set(status)
    assert mask == 0x1FFFEFFFFFF
    assert "SYS_RESOURCE" not in caps.capabilities(mask, exclude=frozenset())
    with pytest.raises(ValueError, match="CapBnd"):
        caps.bounding_set("Name:\tx\n")


def test_wait_until_polls_until_true() -> None:
    calls = iter([False, False, True])
    assert wait_until(lambda: next(calls), timeout=5, interval=0)
    assert not wait_until(lambda: False, timeout=0, interval=0)


def test_lab_secrets_are_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "lab/secrets.json"
    first, made = ensure_secrets(path)
    assert made
    assert set(first) == set(NAMES)
    # hex: two characters a byte; 32 bytes unless the secret has a size of its own (VRRP: 8 chars)
    assert {name: len(value) for name, value in first.items()} == {
        name: 2 * TOKEN_BYTES.get(name, 32) for name in NAMES
    }
    assert len(first["vrrp_password"]) == 8
    assert len(set(first.values())) == len(NAMES)
    assert path.stat().st_mode & 0o777 == 0o600
    again, made_again = ensure_secrets(path)
    assert again == first
    assert not made_again


def test_a_new_secret_is_added_and_existing_ones_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    older = {name: f"kept-{name}" for name in NAMES if name != "grafana_password"}
    path.write_text(json.dumps(older))
    current, made = ensure_secrets(path)
    assert made
    assert {k: current[k] for k in older} == older
    assert len(current["grafana_password"]) == 64
    assert json.loads(path.read_text()) == current


def test_fragments_add_images_and_may_not_redefine_one(tmp_path: Path) -> None:
    _recipe(tmp_path, "a")
    _recipe(tmp_path, "b")
    spec = _spec(tmp_path, "images:\n  a: {context: a}\n")
    fragments = spec.parent / "images.d"
    fragments.mkdir()
    (fragments / "b.yml").write_text("images:\n  b: {context: b, base: a}\n")
    assert images.load_spec(spec, tmp_path).recipes["b"].base == "a"
    (fragments / "c.yml").write_text("images:\n  a: {context: b}\n")
    with pytest.raises(images.SpecError, match=r"c\.yml: image 'a' is already defined"):
        images.load_spec(spec, tmp_path)


def test_the_lab_summary_is_private_like_the_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """.lab/summary.json holds every key and password: 0600, also when an older one was 0644."""
    summary = {
        "url": "https://127.0.0.1:30080",
        "ca_cert": "/x/ca.crt",
        "api_keys": {"user": "u" * 64, "admin": "a" * 64},
        "prometheus": {"user": "lab", "password": "p" * 64},
        "grafana": {"user": "admin", "password": "g" * 64},
        "models": {
            "onnx": ["magika", "minilm"],
            "embeddings": ["minilm"],
            "ollama": ["gemma3:270m"],
        },
        "standins": ["grafana", "ollama"],
        "containers": [],
    }
    target = tmp_path / "summary.json"
    target.write_text("{}")
    target.chmod(0o644)
    monkeypatch.setattr(lab_summary, "collect", lambda: summary)
    monkeypatch.setattr(lab_summary, "SUMMARY", target)
    monkeypatch.setattr(lab_summary, "EXAMPLES", tmp_path / "examples")
    monkeypatch.setattr(lab_summary, "ROOT", tmp_path)
    assert lab_summary.main() == 0
    assert json.loads(target.read_text()) == summary
    assert target.stat().st_mode & 0o777 == 0o600
    target.unlink()
    assert lab_summary.main() == 0
    assert target.stat().st_mode & 0o777 == 0o600
    assert "a" * 64 in capsys.readouterr().out


def test_a_recipe_can_stand_on_another_debootstrap_base(tmp_path: Path) -> None:
    _recipe(tmp_path, "web")
    _recipe(tmp_path, "app")
    spec = _spec(
        tmp_path,
        "base: {suite: bookworm}\nbases:\n  base-trixie: {suite: trixie}\n"
        "images:\n  web: {context: web, base: base-trixie}\n  app: {context: app}\n",
    )
    image_set = images.load_spec(spec, tmp_path)
    assert image_set.bases["base-trixie"] == images.Base("trixie", "minbase")
    assert image_set.suite == "bookworm"
    hashes = images.image_hashes(image_set, ca_dir=tmp_path / "no-cas")
    assert set(hashes) == {"base", "base-trixie", "web", "app"}
    assert hashes["base"] != hashes["base-trixie"]
    # the same recipe on the other base is another image
    assert hashes["web"] != hashes["app"]


def test_an_extra_base_needs_a_suite(tmp_path: Path) -> None:
    _recipe(tmp_path, "a")
    spec = _spec(tmp_path, "bases:\n  other: {variant: minbase}\nimages:\n  a: {context: a}\n")
    with pytest.raises(images.SpecError, match="base 'other' needs a 'suite'"):
        images.load_spec(spec, tmp_path)


def test_a_base_of_another_architecture_builds_its_images_for_that_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _recipe(tmp_path, "py")
    _recipe(tmp_path, "svc")
    spec = _spec(
        tmp_path,
        "base: {suite: bookworm}\nbases:\n  base-arm64: {suite: bookworm, arch: arm64}\n"
        "  base-trixie: {suite: trixie}\n"
        "images:\n  py: {context: py}\n"
        "  py-arm64: {context: py, base: base-arm64, default: false}\n"
        "  svc-arm64: {context: svc, base: py-arm64, default: false}\n",
    )
    image_set = images.load_spec(spec, tmp_path)
    assert image_set.bases["base-arm64"].platform == "linux/arm64"
    assert images.platform_of(image_set, "svc-arm64") == "linux/arm64"
    assert images.platform_of(image_set, "py") is None
    hashes = images.image_hashes(image_set, ca_dir=tmp_path / "no-cas")
    # the same recipe for another architecture is another image; the host's keeps its hash
    assert hashes["py"] != hashes["py-arm64"]
    assert hashes["base"] == images.base_hash(
        images.load_spec(_spec(tmp_path, "images:\n  py: {context: py}\n"), tmp_path),
        ca_dir=tmp_path / "no-cas",
    )
    built: list[tuple[str, str | None]] = []
    monkeypatch.setattr(images, "image_exists", lambda _ref: False)
    monkeypatch.setattr(images, "build_base", lambda base, ref: built.append((ref, base.arch)))
    monkeypatch.setattr(
        images, "emulate", lambda arch, image, cache: built.append(("emulate", arch))
    )
    monkeypatch.setattr(
        images,
        "build_recipe",
        lambda recipe, ref, base_ref, h, platform=None: built.append((recipe.name, platform)),
    )
    images.ensure_images(image_set, log=lambda _m: None)
    # `default: false` recipes stay out of a plain build ...
    assert [b for b in built if b[0] in {"py-arm64", "svc-arm64"}] == []
    built.clear()
    images.ensure_images(image_set, log=lambda _m: None, only=["svc-arm64"])
    # ... and are built, with their bases, when named, after the emulator's base
    order = [name.split(":")[0] for name, _arch in built]
    assert order.index("edgeai-lab/base-trixie") < order.index("emulate")
    assert ("py-arm64", "linux/arm64") in built
    assert ("svc-arm64", "linux/arm64") in built
    with pytest.raises(images.SpecError, match="no image recipe named nope"):
        images.ensure_images(image_set, log=lambda _m: None, only=["nope"])


def test_emulation_registers_debian_13s_qemu_in_place_of_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binfmt, cache = tmp_path / "binfmt_misc", tmp_path / "cache"
    binfmt.mkdir()
    (binfmt / "register").write_text("")
    # Debian 12's interpreter is registered: it is replaced
    (binfmt / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/x\n")
    fetched: list[str] = []

    def fetch(arch: str, image: str, target: Path) -> None:
        fetched.append(image)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("qemu")

    monkeypatch.setattr(emulation, "fetch_qemu", fetch)
    with pytest.raises(emulation.EmulationError, match="did not take"):
        emulation.emulate("arm64", "lab/trixie:1", cache, binfmt)  # a plain directory
    assert fetched == ["lab/trixie:1"]
    line = (binfmt / "register").read_text()
    assert line.startswith(":qemu-aarch64:M::\\x7f\\x45\\x4c\\x46")
    assert line.endswith(f":{cache / 'qemu-aarch64-static'}:OCF\n")
    assert (binfmt / "qemu-aarch64").read_text() == "-1\n"  # the old entry was removed
    # registered and fetched: nothing to do, nothing fetched again
    (binfmt / "qemu-aarch64").write_text(f"enabled\ninterpreter {cache / 'qemu-aarch64-static'}\n")
    (binfmt / "register").write_text("")
    assert (
        emulation.emulate("arm64", "lab/trixie:1", cache, binfmt) == cache / "qemu-aarch64-static"
    )
    assert fetched == ["lab/trixie:1"]
    assert (binfmt / "register").read_text() == ""
    with pytest.raises(emulation.EmulationError, match="no emulation known"):
        emulation.emulate("s390x", "lab/trixie:1", cache, binfmt)
