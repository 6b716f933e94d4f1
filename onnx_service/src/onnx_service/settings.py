"""Service settings: ONNX_SERVICE_* environment variables, and command-line flags."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from onnx_service import DEFAULT_GRPC_PORT, DEFAULT_PORT


class Settings(BaseSettings):
    """
    ONNX inference server: KServe V1 on /v1 and the Open Inference Protocol (KServe V2 /
    Triton) on /v2. Every option can also be given as an environment variable
    ONNX_SERVICE_<OPTION> (for example ONNX_SERVICE_MODEL_REPOSITORY=/models); a flag wins
    over its variable.
    """

    model_config = SettingsConfigDict(
        env_prefix="ONNX_SERVICE_",
        extra="ignore",
        # only used when the command line is parsed (onnx-service, python -m onnx_service)
        cli_prog_name="onnx-service",
        cli_kebab_case=True,
        cli_avoid_json=True,
        cli_hide_none_type=True,
    )

    model_repository: Path = Field(
        default=Path("/models"), description="Root of the Triton-style model repository."
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="Port to listen on.")
    grpc_port: int = Field(
        default=DEFAULT_GRPC_PORT,
        ge=0,
        le=65535,
        description=(
            "Port of the gRPC Open Inference Protocol (inference.GRPCInferenceService, what "
            "tritonclient.grpc speaks), on the same address; 0 turns gRPC off."
        ),
    )
    max_request_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description=(
            "Largest accepted request body in bytes, as sent and again after gzip/deflate "
            "decompression (which stops at this size); larger bodies get 413."
        ),
    )
    max_request_elements: int = Field(
        default=4 * 1024 * 1024,
        ge=1,
        description=(
            "Most tensor elements one inference request may carry, all inputs together (JSON "
            "values are counted before they are parsed); more get 413. Bounds the memory a "
            "request can take: a JSON number costs ~40 bytes once parsed."
        ),
    )
    max_inflight_requests: int = Field(
        default=64,
        ge=1,
        description=(
            "Inference requests handled at once, from the first byte to the answer; more get "
            "503 with Retry-After (health, metadata and metrics are never refused)."
        ),
    )
    poll_interval_s: float = Field(
        default=0.0,
        ge=0.0,
        description="Seconds between repository polls for new versions; 0 disables polling.",
    )
    inference_threads: int = Field(
        default=0, ge=0, description="Threads running session.run; 0 means one per CPU."
    )
    inline_compute_us: float = Field(
        default=100.0,
        ge=0.0,
        description=(
            "Requests whose estimated session.run time is under this run on the event loop "
            "instead of the thread pool (the hop costs more); 0 always uses the pool."
        ),
    )
    keep_alive_s: float = Field(
        default=75.0,
        gt=0.0,
        description=(
            "Seconds an idle HTTP connection stays open. Longer than the gateway's upstream "
            "keepalive_timeout (60 s), so that the gateway closes an idle connection first and "
            "never sends a request on one this server is closing (uvicorn's own default is 5 s)."
        ),
    )
    log_level: str = Field(default="info", description="uvicorn log level.")
    server_name: str = Field(default="onnx_service", description="Name in GET /v2.")
