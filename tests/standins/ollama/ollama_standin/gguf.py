"""Just enough GGUF: write small deterministic files, read the header and a few metadata keys."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"GGUF"
_STRING = 8
_ARRAY = 9
# Sizes of GGUF scalar value types (uint8 .. float64), by type id.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}
_MAX_KEYS_SCANNED = 64
_MAX_STRING = 1 << 20


class NotGGUFError(ValueError):
    """The data is not a GGUF file."""


@dataclass(frozen=True)
class GGUFInfo:
    version: int
    tensor_count: int
    metadata: dict[str, str | int]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack("<Q", len(data)) + data


def build(metadata: dict[str, str], size: int, seed: str) -> bytes:
    """A valid GGUF v3 file without tensors, padded to ``size`` bytes by a filler string key.

    The filler is derived from ``seed`` so the bytes (and so the digest) never change.
    """
    kvs = list(metadata.items())
    head = MAGIC + struct.pack("<IQQ", 3, 0, len(kvs) + 1)
    body = b"".join(_string(k) + struct.pack("<I", _STRING) + _string(v) for k, v in kvs)
    filler_key = _string("standin.filler") + struct.pack("<I", _STRING)
    fixed = len(head) + len(body) + len(filler_key) + 8
    if size < fixed:
        raise ValueError(f"size {size} is smaller than the GGUF header ({fixed} bytes)")
    filler = bytearray()
    counter = 0
    while len(filler) < size - fixed:
        filler += hashlib.sha256(f"{seed}:{counter}".encode()).hexdigest().encode()
        counter += 1
    return head + body + filler_key + _string(filler[: size - fixed].decode())


def _read(stream: BinaryIO, count: int) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise NotGGUFError("truncated GGUF header")
    return data


def _read_string(stream: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", _read(stream, 8))
    if length > _MAX_STRING:
        stream.seek(length, 1)
        return ""
    return _read(stream, length).decode(errors="replace")


def _skip_value(stream: BinaryIO, value_type: int) -> None:
    if value_type == _STRING:
        (length,) = struct.unpack("<Q", _read(stream, 8))
        stream.seek(length, 1)
    elif value_type == _ARRAY:
        item_type, count = struct.unpack("<IQ", _read(stream, 12))
        if item_type in _SCALAR_SIZES:
            stream.seek(_SCALAR_SIZES[item_type] * count, 1)
        else:
            for _ in range(count):
                _skip_value(stream, item_type)
    elif value_type in _SCALAR_SIZES:
        stream.seek(_SCALAR_SIZES[value_type], 1)
    else:
        raise NotGGUFError(f"unknown GGUF value type {value_type}")


def read_info(stream: BinaryIO) -> GGUFInfo:
    """Check the magic and version and read the scalar/string metadata near the start."""
    if stream.read(4) != MAGIC:
        raise NotGGUFError("invalid file magic")
    (version,) = struct.unpack("<I", _read(stream, 4))
    if version not in (2, 3):
        raise NotGGUFError(f"unsupported GGUF version {version}")
    tensor_count, kv_count = struct.unpack("<QQ", _read(stream, 16))
    metadata: dict[str, str | int] = {}
    for _ in range(min(kv_count, _MAX_KEYS_SCANNED)):
        key = _read_string(stream)
        (value_type,) = struct.unpack("<I", _read(stream, 4))
        if value_type == _STRING:
            metadata[key] = _read_string(stream)
        elif value_type in _SCALAR_FORMATS:
            fmt = _SCALAR_FORMATS[value_type]
            (metadata[key],) = struct.unpack(fmt, _read(stream, struct.calcsize(fmt)))
        else:
            _skip_value(stream, value_type)
    return GGUFInfo(version=version, tensor_count=tensor_count, metadata=metadata)
