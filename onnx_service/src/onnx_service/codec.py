"""Turning protocol payloads into numpy arrays and back, with clear 400s for bad input."""

import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from onnx_service.dtypes import ACCEPTED_KINDS
from onnx_service.errors import InvalidRequestError, PayloadTooLargeError
from onnx_service.model import Feeds, ModelVersion, TensorSpec
from onnx_service.schemas import InferRequest, RequestInput

KIND_NAMES = {"b": "boolean", "i": "integer", "u": "integer", "f": "floating-point"}
# JSON values a request may hold besides tensor data (names, shapes, parameters, ...)
HEADER_VALUES = 4096
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
ModelT = TypeVar("ModelT", bound=BaseModel)


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo a gzip or deflate Content-Encoding (tritonclient can send either)."""
    if not encoding or encoding == "identity":
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise InvalidRequestError(f"unsupported Content-Encoding '{encoding}'")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequestError(f"body is not valid {encoding} data: {exc}") from exc
    if len(out) > limit:
        raise PayloadTooLargeError(f"decompressed body is over the {limit}-byte limit")
    return out


def check_json_values(raw: bytes, max_elements: int) -> None:
    """Refuse a JSON body that may hold more values than the element limit, before parsing it.

    Parsed JSON costs ~40 bytes per number (a list slot and a float object) against 2 bytes
    on the wire, so a body within the byte limit could still take gigabytes. A JSON text holds
    at most 1 + commas + containers values, which ``bytes.count`` finds at memory speed; a
    body shorter than the limit cannot hold more values than it has bytes and is not scanned.
    """
    allowed = max_elements + HEADER_VALUES
    if len(raw) <= allowed:
        return
    bound = 1 + raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    if bound > allowed:
        raise PayloadTooLargeError(
            f"the request holds more than the service's limit of {max_elements} tensor "
            "elements (max_request_elements)"
        )


def check_elements(counts: Iterable[int], max_elements: int) -> None:
    """The declared tensor sizes of one request against the element limit."""
    total = sum(counts)
    if total > max_elements:
        raise PayloadTooLargeError(
            f"the request's inputs hold {total} elements, over the service's limit of "
            f"{max_elements} (max_request_elements)"
        )


def _json_default(obj: Any) -> Any:
    """orjson writes numeric arrays itself and hands BYTES (object) arrays to this."""
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        return obj.tolist()
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def load_json(raw: bytes, empty: Any = None) -> Any:
    if not raw.strip() and empty is not None:
        return empty
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"malformed JSON: {exc}") from exc


def validate(model: type[ModelT], obj: Any) -> ModelT:
    if not isinstance(obj, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise InvalidRequestError(describe(exc)) from exc


def describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


def check_shape(spec: TensorSpec, shape: Sequence[int], what: str = "input") -> None:
    if len(shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise InvalidRequestError(
            f"{what} '{spec.name}': shape {list(shape)} does not match the model's "
            f"{list(spec.shape)} (-1 = any size)"
        )


def json_to_array(data: Any, spec: TensorSpec, what: str = "input") -> np.ndarray:
    """A (flat or nested) JSON list as an array of the spec's dtype, strictly typed."""
    if not isinstance(data, list):
        raise InvalidRequestError(f"{what} '{spec.name}': data must be an array")
    if spec.datatype == "BYTES":
        return _json_strings(data, spec, what)
    try:
        arr = np.array(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequestError(
            f"{what} '{spec.name}': data is not a regular array: {exc}"
        ) from exc
    if arr.size:
        kind = arr.dtype.kind
        if kind not in ACCEPTED_KINDS[spec.datatype]:
            found = KIND_NAMES.get(kind, "non-numeric")
            raise InvalidRequestError(
                f"{what} '{spec.name}': data holds {found} values, not {spec.datatype}"
            )
        if spec.dtype.kind in "iu" and arr.dtype != spec.dtype:
            info = np.iinfo(spec.dtype)
            if arr.min() < info.min or arr.max() > info.max:
                raise InvalidRequestError(
                    f"{what} '{spec.name}': values out of range for {spec.datatype}"
                )
    return arr.astype(spec.dtype, copy=False)


def _json_strings(data: list[Any], spec: TensorSpec, what: str) -> np.ndarray:
    """BYTES in JSON: a (nested) list of strings, as an object array of str."""
    try:
        arr = np.array(data, dtype=object)
    except ValueError as exc:
        raise InvalidRequestError(
            f"{what} '{spec.name}': data is not a regular array: {exc}"
        ) from exc
    if not all(isinstance(item, str) for item in arr.flat):
        if any(isinstance(item, list) for item in arr.flat):  # numpy keeps ragged rows as lists
            raise InvalidRequestError(f"{what} '{spec.name}': data is not a regular array")
        raise InvalidRequestError(f"{what} '{spec.name}': BYTES data must be strings")
    return arr


def binary_strings(
    tensor: RequestInput, binary: bytes, offset: int, size: int, count: int
) -> np.ndarray:
    """BYTES in the binary extension: each element a 4-byte little-endian length, then its
    bytes (Triton's serialization); held as UTF-8 text for onnxruntime."""
    end = offset + size
    items: list[str] = []
    view = memoryview(binary)
    while offset < end and len(items) < count:
        if offset + 4 > end:
            raise InvalidRequestError(f"input '{tensor.name}': truncated BYTES element length")
        (length,) = struct.unpack_from("<I", binary, offset)
        offset += 4
        if offset + length > end:
            raise InvalidRequestError(f"input '{tensor.name}': a BYTES element runs past its data")
        try:
            items.append(str(view[offset : offset + length], "utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(
                f"input '{tensor.name}': BYTES element {len(items)} is not UTF-8 text "
                "(onnxruntime string tensors hold text)"
            ) from exc
        offset += length
    if len(items) != count or offset != end:
        raise InvalidRequestError(
            f"input '{tensor.name}': binary_data_size {size} does not hold exactly "
            f"{count} BYTES elements"
        )
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return arr


def pack_strings(flat: np.ndarray) -> bytes:
    """Triton's BYTES serialization of a flat object array of str (or bytes)."""
    parts: list[bytes] = []
    for item in flat:
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


@dataclass
class DecodedInfer:
    request: InferRequest
    feeds: Feeds
    wanted: list[str]
    binary: dict[str, bool]


def decode_infer(
    body: bytes, header_length: str | None, mv: ModelVersion, max_elements: int
) -> DecodedInfer:
    """Parse an OIP infer request (JSON, or JSON + binary tensor data) for one model."""
    binary = b""
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError as exc:
            raise InvalidRequestError("Inference-Header-Content-Length must be an integer") from exc
        if not 0 <= split <= len(body):
            raise InvalidRequestError("Inference-Header-Content-Length is outside the body")
        body, binary = body[:split], body[split:]
    check_json_values(body, max_elements)
    request = validate(InferRequest, load_json(body))
    check_elements((math.prod(t.shape) for t in request.inputs), max_elements)
    feeds = _decode_inputs(request, binary, mv)
    wanted, flags = _wanted_outputs(request, mv)
    return DecodedInfer(request, feeds, wanted, flags)


def _decode_inputs(request: InferRequest, binary: bytes, mv: ModelVersion) -> Feeds:
    feeds: Feeds = {}
    offset = 0
    for tensor in request.inputs:
        spec = mv.input_map.get(tensor.name)
        if spec is None:
            raise InvalidRequestError(
                f"unknown input '{tensor.name}' for model '{mv.name}' "
                f"(inputs: {', '.join(mv.input_map)})"
            )
        if tensor.name in feeds:
            raise InvalidRequestError(f"input '{tensor.name}' is given twice")
        if tensor.datatype != spec.datatype:
            raise InvalidRequestError(
                f"input '{tensor.name}': datatype {tensor.datatype} does not match the "
                f"model's {spec.datatype}"
            )
        check_shape(spec, tensor.shape)
        feeds[tensor.name], offset = _tensor(tensor, spec, binary, offset)
    if offset != len(binary):
        raise InvalidRequestError(f"{len(binary) - offset} bytes of binary data belong to no input")
    missing = [name for name in mv.input_map if name not in feeds]
    if missing:
        raise InvalidRequestError(f"missing inputs: {', '.join(missing)}")
    return feeds


def _tensor(
    tensor: RequestInput, spec: TensorSpec, binary: bytes, offset: int
) -> tuple[np.ndarray, int]:
    """One input's array, from JSON data or from the binary section at ``offset``."""
    count = math.prod(tensor.shape)  # exact: a numpy product could overflow and wrap
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        if tensor.data is None:
            raise InvalidRequestError(f"input '{tensor.name}' has no data")
        arr = json_to_array(tensor.data, spec)
        if arr.size != count:
            raise InvalidRequestError(
                f"input '{tensor.name}': data has {arr.size} elements but shape "
                f"{tensor.shape} needs {count}"
            )
        return arr.reshape(tensor.shape), offset
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidRequestError(f"input '{tensor.name}': bad binary_data_size")
    if spec.datatype == "BYTES":
        if offset + size > len(binary):
            raise InvalidRequestError(f"input '{tensor.name}': binary data is shorter than stated")
        arr = binary_strings(tensor, binary, offset, size, count)
        return arr.reshape(tensor.shape), offset + size
    expected = count * spec.dtype.itemsize
    if size != expected:
        raise InvalidRequestError(
            f"input '{tensor.name}': binary_data_size {size} does not fit shape "
            f"{tensor.shape} of {spec.datatype} ({expected} bytes)"
        )
    if offset + size > len(binary):
        raise InvalidRequestError(f"input '{tensor.name}': binary data is shorter than stated")
    arr = np.frombuffer(binary, dtype=spec.dtype, count=count, offset=offset)
    return arr.reshape(tensor.shape), offset + size


def _flag(parameters: dict[str, Any] | None, key: str, default: bool) -> bool:
    value = (parameters or {}).get(key, default)
    if not isinstance(value, bool):
        raise InvalidRequestError(f"parameter '{key}' must be true or false")
    return value


def _wanted_outputs(request: InferRequest, mv: ModelVersion) -> tuple[list[str], dict[str, bool]]:
    default_binary = _flag(request.parameters, "binary_data_output", False)
    if request.outputs is None:
        return list(mv.output_names), dict.fromkeys(mv.output_names, default_binary)
    flags: dict[str, bool] = {}
    for out in request.outputs:
        if out.name not in mv.output_map:
            raise InvalidRequestError(
                f"unknown output '{out.name}' for model '{mv.name}' "
                f"(outputs: {', '.join(mv.output_names)})"
            )
        if (out.parameters or {}).get("classification"):
            raise InvalidRequestError("the classification extension is not supported")
        flags[out.name] = _flag(out.parameters, "binary_data", default_binary)
    return list(flags), flags


def encode_infer(
    mv: ModelVersion, request_id: str | None, outputs: Feeds, binary: dict[str, bool]
) -> tuple[bytes, dict[str, str]]:
    """The OIP response body and extra headers (binary outputs follow the JSON header)."""
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, arr in outputs.items():
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": mv.output_map[name].datatype,
            "shape": list(arr.shape),
        }
        flat = np.ascontiguousarray(arr).reshape(-1)
        strings = flat.dtype == object  # BYTES
        if binary[name]:
            raw = pack_strings(flat) if strings else flat.tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = flat
        tensors.append(tensor)
    payload: dict[str, Any] = {"model_name": mv.name, "model_version": str(mv.version)}
    if request_id is not None:
        payload["id"] = request_id
    payload["outputs"] = tensors
    header = orjson.dumps(payload, option=JSON_OPTIONS, default=_json_default)
    if not blobs:
        return header, {}
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}


def _v1_columns(body: Any, mv: ModelVersion) -> tuple[dict[str, Any], bool]:
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise InvalidRequestError("give exactly one of 'instances' or 'inputs'")
    names = list(mv.input_map)
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise InvalidRequestError("'instances' must be a non-empty array")
        if len(names) == 1:
            return {names[0]: rows}, True
        if not all(isinstance(r, dict) for r in rows):
            raise InvalidRequestError(
                f"model '{mv.name}' has several inputs: each instance must be an object "
                f"with keys {', '.join(names)}"
            )
        return {n: [r.get(n) for r in rows] for n in names}, True
    cols = body["inputs"]
    if len(names) == 1 and isinstance(cols, list):
        return {names[0]: cols}, False
    if isinstance(cols, dict):
        return cols, False
    raise InvalidRequestError(f"'inputs' must be an object with keys {', '.join(names)}")


def v1_feeds(body: Any, mv: ModelVersion) -> tuple[Feeds, bool]:
    """KServe V1 ``instances`` (rows) or ``inputs`` (columns); returns feeds, is_row_format."""
    columns, rows = _v1_columns(body, mv)
    unknown = [n for n in columns if n not in mv.input_map]
    if unknown:
        raise InvalidRequestError(f"unknown inputs: {', '.join(map(str, unknown))}")
    missing = [n for n in mv.input_map if n not in columns]
    if missing:
        raise InvalidRequestError(f"missing inputs: {', '.join(missing)}")
    feeds: Feeds = {}
    for name, data in columns.items():
        spec = mv.input_map[name]
        arr = json_to_array(data, spec)
        check_shape(spec, arr.shape)
        feeds[name] = arr
    return feeds, rows


def v1_response(outputs: Feeds, rows: bool) -> bytes:
    names: Iterable[str] = list(outputs)
    if rows:
        if len(outputs) == 1:
            body: dict[str, Any] = {"predictions": next(iter(outputs.values()))}
        else:
            if any(arr.ndim == 0 for arr in outputs.values()):
                raise InvalidRequestError(
                    "the model's outputs have no batch dimension: use 'inputs'"
                )
            counts = {n: len(arr) for n, arr in outputs.items()}
            if len(set(counts.values())) > 1:
                rows_text = ", ".join(f"{n}: {c}" for n, c in counts.items())
                raise InvalidRequestError(
                    f"the model's outputs have different numbers of rows ({rows_text}), so "
                    "they cannot be returned as 'predictions' per instance: send 'inputs' "
                    "(columns) instead"
                )
            count = next(iter(counts.values()))
            body = {"predictions": [{n: outputs[n][i] for n in names} for i in range(count)]}
    elif len(outputs) == 1:
        body = {"outputs": next(iter(outputs.values()))}
    else:
        body = {"outputs": outputs}
    return orjson.dumps(body, option=JSON_OPTIONS, default=_json_default)
