"""The Open Inference Protocol over gRPC (KServe V2 / Triton ``inference.GRPCInferenceService``).

Runs in the same process and event loop as the HTTP server (grpc.aio), on its own port, and
serves the same repository: the same model versions, dynamic batchers, metrics, limits
(message size = ``max_request_bytes``, ``max_request_elements``, the shared in-flight bound).
``tritonclient.grpc`` works against it unchanged.

Served RPCs: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelConfig,
ModelInfer (typed ``contents`` or ``raw_input_contents``; outputs always come back in
``raw_output_contents``, as Triton answers), RepositoryIndex, RepositoryModelLoad and
RepositoryModelUnload. The others (statistics, streaming, shared memory, trace and log
settings) answer UNIMPLEMENTED.

Status codes: 400 -> INVALID_ARGUMENT, 404 -> NOT_FOUND, 413 -> RESOURCE_EXHAUSTED,
503 -> UNAVAILABLE (a model not ready, or the in-flight bound reached), 500 -> INTERNAL.
"""

import logging
import math
from typing import Any

import grpc
import numpy as np

from onnx_service import __version__
from onnx_service.codec import binary_strings, check_elements, check_shape, pack_strings
from onnx_service.deps import counted, parse_version
from onnx_service.dtypes import CONFIG_TYPE
from onnx_service.errors import (
    InvalidRequestError,
    LoadError,
    NotFoundError,
    ServiceError,
)
from onnx_service.grpc_api import grpc_service_pb2 as pb
from onnx_service.grpc_api import grpc_service_pb2_grpc as pb_grpc
from onnx_service.grpc_api import model_config_pb2 as config_pb
from onnx_service.model import Feeds, ModelVersion, TensorSpec
from onnx_service.repository import ModelRepository

log = logging.getLogger("onnx_service.grpc")

EXTENSIONS = ["binary_tensor_data", "model_repository", "model_configuration"]
PLATFORM = "onnxruntime_onnx"
STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
# InferTensorContents field per datatype (FP16 only travels as raw bytes)
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _version(text: str) -> int | None:
    return parse_version(text) if text else None


def _contents(tensor: Any, spec: TensorSpec, count: int) -> np.ndarray:
    """One input from the typed ``contents`` fields."""
    field = CONTENTS.get(spec.datatype)
    if field is None:
        raise InvalidRequestError(
            f"input '{tensor.name}': {spec.datatype} data must come in raw_input_contents"
        )
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidRequestError(
            f"input '{tensor.name}': {len(values)} values in contents.{field}, shape "
            f"{list(tensor.shape)} needs {count}"
        )
    if spec.datatype == "BYTES":
        try:
            items = [bytes(v).decode("utf-8") for v in values]
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(
                f"input '{tensor.name}': a BYTES element is not UTF-8 text"
            ) from exc
        arr = np.empty(count, dtype=object)
        arr[:] = items
        return arr
    arr = np.array(values)
    if spec.dtype.kind in "iu" and arr.size:
        info = np.iinfo(spec.dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise InvalidRequestError(
                f"input '{tensor.name}': values out of range for {spec.datatype}"
            )
    return arr.astype(spec.dtype)


def _raw(tensor: Any, spec: TensorSpec, raw: bytes, count: int) -> np.ndarray:
    """One input from ``raw_input_contents`` (little-endian; BYTES length-prefixed)."""
    if spec.datatype == "BYTES":
        return binary_strings(tensor, raw, 0, len(raw), count)
    expected = count * spec.dtype.itemsize
    if len(raw) != expected:
        raise InvalidRequestError(
            f"input '{tensor.name}': {len(raw)} raw bytes do not fit shape "
            f"{list(tensor.shape)} of {spec.datatype} ({expected} bytes)"
        )
    return np.frombuffer(raw, dtype=spec.dtype.newbyteorder("<"), count=count).astype(spec.dtype)


def decode_request(request: Any, mv: ModelVersion, max_elements: int) -> tuple[Feeds, list[str]]:
    """The feeds and wanted outputs of a ModelInferRequest, validated like an HTTP request."""
    if not request.inputs:
        raise InvalidRequestError("the request has no inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequestError(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: give one per input"
        )
    if any(d < 0 for t in request.inputs for d in t.shape):
        raise InvalidRequestError("shapes must not hold negative dimensions")
    check_elements((math.prod(t.shape) for t in request.inputs), max_elements)
    feeds: Feeds = {}
    for i, tensor in enumerate(request.inputs):
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
        shape = list(tensor.shape)
        check_shape(spec, shape)
        count = math.prod(shape)
        arr = _raw(tensor, spec, raw[i], count) if raw else _contents(tensor, spec, count)
        feeds[tensor.name] = arr.reshape(shape)
    missing = [name for name in mv.input_map if name not in feeds]
    if missing:
        raise InvalidRequestError(f"missing inputs: {', '.join(missing)}")
    wanted = [o.name for o in request.outputs] or list(mv.output_names)
    unknown = [name for name in wanted if name not in mv.output_map]
    if unknown:
        raise InvalidRequestError(
            f"unknown output '{unknown[0]}' for model '{mv.name}' "
            f"(outputs: {', '.join(mv.output_names)})"
        )
    return feeds, wanted


def encode_response(mv: ModelVersion, request_id: str, outputs: Feeds) -> Any:
    response = pb.ModelInferResponse(
        model_name=mv.name, model_version=str(mv.version), id=request_id
    )
    for name, arr in outputs.items():
        response.outputs.add(name=name, datatype=mv.output_map[name].datatype, shape=arr.shape)
        flat = np.ascontiguousarray(arr).reshape(-1)
        if flat.dtype == object:
            response.raw_output_contents.append(pack_strings(flat))
        else:
            response.raw_output_contents.append(flat.astype(flat.dtype.newbyteorder("<")).tobytes())
    return response


def model_config(mv: ModelVersion) -> Any:
    cfg = mv.config
    batch_dims = 1 if cfg.max_batch_size and mv.batched else 0

    def tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "data_type": config_pb.DataType.Value(CONFIG_TYPE[s.datatype]),
                "dims": list(s.shape[batch_dims:]),
            }
            for s in specs
        ]

    config = config_pb.ModelConfig(
        name=mv.name,
        platform=PLATFORM,
        backend="onnxruntime",
        max_batch_size=cfg.max_batch_size if batch_dims else 0,
        input=[config_pb.ModelInput(**t) for t in tensors(mv.inputs)],
        output=[config_pb.ModelOutput(**t) for t in tensors(mv.outputs)],
        instance_group=[
            config_pb.ModelInstanceGroup(
                count=cfg.instance_count, kind=config_pb.ModelInstanceGroup.KIND_CPU
            )
        ],
    )
    if cfg.dynamic_batching is not None:
        config.dynamic_batching.max_queue_delay_microseconds = (
            cfg.dynamic_batching.max_queue_delay_us
        )
        # ModelDynamicBatching has no such field: a model parameter, as in the HTTP config
        adaptive = "true" if cfg.dynamic_batching.adaptive_queue_delay else "false"
        config.parameters["adaptive_queue_delay"].string_value = adaptive
    return config


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The servicer; ``state`` is the FastAPI app's state (repository, settings, admission)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    @property
    def repository(self) -> ModelRepository:
        repository: ModelRepository = self.state.repository
        return repository

    async def _fail(self, context: grpc.aio.ServicerContext, exc: ServiceError) -> None:
        await context.abort(STATUS.get(exc.status_code, grpc.StatusCode.INTERNAL), exc.message)

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 - the proto's
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.repository.ready)

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            version = _version(request.version)
            self.repository.get(request.name, version)
        except NotFoundError as exc:
            await self._fail(context, exc)
        except ServiceError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerMetadataResponse(
            name=self.state.settings.server_name, version=__version__, extensions=EXTENSIONS
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            mv = self.repository.get(request.name, _version(request.version))
            entry = self.repository.entry(request.name)
        except ServiceError as exc:
            await self._fail(context, exc)
        response = pb.ModelMetadataResponse(
            name=mv.name, versions=[str(v) for v in sorted(entry.serving)], platform=PLATFORM
        )
        for spec in mv.inputs:
            response.inputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
        for spec in mv.outputs:
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
        return response

    async def ModelConfig(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            mv = self.repository.get(request.name, _version(request.version))
        except ServiceError as exc:
            await self._fail(context, exc)
        return pb.ModelConfigResponse(config=model_config(mv))

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        admission = self.state.admission
        try:
            admission.enter()
        except ServiceError as exc:
            await self._fail(context, exc)
        try:
            mv = self.repository.get(request.model_name, _version(request.model_version))
            limit = self.state.settings.max_request_elements

            async def work() -> Any:
                feeds, wanted = decode_request(request, mv, limit)
                outputs = await mv.infer(feeds, wanted, mv.batch_size(feeds))
                return encode_response(mv, request.id, outputs)

            return await counted(mv, work)
        except ServiceError as exc:
            await self._fail(context, exc)
        finally:
            admission.leave()

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:  # noqa: N802
        response = pb.RepositoryIndexResponse()
        for row in self.repository.index(ready_only=request.ready):
            response.models.add(**row)
        return response

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:  # noqa: N802
        for key in request.parameters:
            if key == "config" or key.startswith("file:"):
                await self._fail(
                    context,
                    InvalidRequestError(
                        f"load parameter '{key}' (config override) is not supported"
                    ),
                )
        try:
            await self.repository.load(request.model_name)
        except LoadError as exc:
            await self._fail(context, InvalidRequestError(str(exc)))
        except ServiceError as exc:
            await self._fail(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            await self.repository.unload(request.model_name)
        except ServiceError as exc:
            await self._fail(context, exc)
        return pb.RepositoryModelUnloadResponse()


async def start(state: Any, host: str, port: int, max_message_bytes: int) -> grpc.aio.Server:
    """Start the gRPC server on the running event loop; returns it (``bound_port`` set)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(state), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    server.bound_port = bound  # type: ignore[attr-defined]
    log.info("gRPC (inference.GRPCInferenceService) on %s:%d", host, bound)
    return server
