"""Request and response bodies of both protocols (they also make the OpenAPI schema)."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Parameters = dict[str, Any]


class ErrorResponse(BaseModel):
    error: str


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    name: str
    ready: bool


class RequestInput(BaseModel):
    model_config = ConfigDict(strict=True)

    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: str
    parameters: Parameters | None = None
    data: Any = Field(default=None, json_schema_extra={"type": "array"})


class RequestOutput(BaseModel):
    model_config = ConfigDict(strict=True)

    name: str
    parameters: Parameters | None = None


class InferRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    id: str | None = None
    parameters: Parameters | None = None
    inputs: Annotated[list[RequestInput], Field(min_length=1)]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class RepositoryIndexRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    repository_name: str | None = None
    ready: bool = False


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str | None = None
    state: str | None = None
    reason: str | None = None


class ModelLoadRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    parameters: Parameters | None = None


class ModelLoadResponse(BaseModel):
    name: str
    versions: list[str]


class ModelConfigResponse(BaseModel):
    name: str
    platform: str
    backend: str
    max_batch_size: int
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    dynamic_batching: dict[str, Any] | None = None
    instance_group: list[dict[str, Any]]
    version_policy: dict[str, Any]
    parameters: dict[str, Any]


class V1ModelList(BaseModel):
    models: list[str]


class V1PredictRequest(BaseModel):
    instances: list[Any] | None = None
    inputs: Any = None


class V1PredictResponse(BaseModel):
    predictions: list[Any] | None = None
    outputs: Any = None
