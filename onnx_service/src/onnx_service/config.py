"""Per-model configuration: ``<repository>/<model>/config.yaml``."""

from pathlib import Path
from typing import Annotated, Literal, Self

import onnxruntime as ort
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from onnx_service.errors import LoadError


class DynamicBatching(BaseModel):
    """Coalesce concurrent requests into one ``session.run``.

    ``max_queue_delay_us`` is Triton's: how long the oldest queued request may wait for
    others. With ``adaptive_queue_delay`` it is only the upper bound: a batch also closes as
    soon as the queue holds as many rows as the recent concurrency says are coming (the most
    rows queued plus running over the last few batches, less the rows running now), so a
    lone client never waits and a steady crowd of N forms batches of N.
    """

    model_config = ConfigDict(extra="forbid")

    max_queue_delay_us: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    adaptive_queue_delay: bool = False


class VersionPolicy(BaseModel):
    """Which versions of a model are served: exactly one of the three keys."""

    model_config = ConfigDict(extra="forbid")

    latest: Annotated[int, Field(ge=1)] | None = None
    all: bool = False
    specific: list[Annotated[int, Field(ge=1)]] | None = None

    @model_validator(mode="after")
    def _one_policy(self) -> Self:
        chosen = [self.latest is not None, self.all, self.specific is not None]
        if sum(chosen) > 1:
            raise ValueError("give only one of latest, all, specific")
        if self.specific is not None and not self.specific:
            raise ValueError("specific needs at least one version")
        return self

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve, out of those present on disk."""
        ordered = sorted(available)
        if self.all:
            return ordered
        if self.specific is not None:
            return [v for v in ordered if v in set(self.specific)]
        return ordered[-(self.latest or 1) :]


class TextConfig(BaseModel):
    """Text in, vectors out: a tokenizer in front of a transformer graph, pooling after it.

    The model then takes a BYTES input (one text per row) and answers an FP32 embedding per
    row and the number of tokens each text took; the graph's own inputs (input_ids,
    attention_mask, token_type_ids) are filled by the service. Tokenization runs per batch
    (padded to the batch's longest text), so dynamic batching combines texts of any length.
    """

    model_config = ConfigDict(extra="forbid")

    tokenizer: str = Field(
        default="tokenizer.json", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )  # a Hugging Face tokenizers file in the version directory (else the model directory)
    input: str = "text"
    max_length: Annotated[int, Field(ge=1, le=65536)] = 512
    truncation: bool = True
    padding: Literal["longest", "max_length"] = "longest"
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    hidden_state: str | None = None  # graph output [batch, tokens, hidden]; default: the first
    output: str = "embedding"
    tokens_output: str = "tokens"

    @model_validator(mode="after")
    def _names(self) -> Self:
        if len({self.input, self.output, self.tokens_output}) != 3:
            raise ValueError("input, output and tokens_output must be different names")
        return self


class ModelConfig(BaseModel):
    """The keys of config.yaml. Every key is optional."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: Annotated[int, Field(ge=0, le=65536)] = 0
    dynamic_batching: DynamicBatching | None = None
    instance_count: Annotated[int, Field(ge=1, le=64)] = 1
    intra_op_threads: Annotated[int, Field(ge=0, le=1024)] = 0
    inter_op_threads: Annotated[int, Field(ge=0, le=1024)] = 0
    intra_op_spinning: bool = False
    execution_providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    version_policy: VersionPolicy = Field(default_factory=VersionPolicy)
    text: TextConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.dynamic_batching is not None and self.max_batch_size < 1:
            raise ValueError("dynamic_batching needs max_batch_size >= 1")
        known = set(ort.get_all_providers())
        unknown = [p for p in self.execution_providers if p not in known]
        if unknown:
            raise ValueError(f"unknown execution providers: {', '.join(unknown)}")
        return self

    def providers(self) -> list[str]:
        """Configured providers that this onnxruntime build has, CPU always last."""
        available = set(ort.get_available_providers())
        chosen = [
            p for p in self.execution_providers if p in available and p != "CPUExecutionProvider"
        ]
        return [*chosen, "CPUExecutionProvider"]


def read_config(path: Path) -> ModelConfig:
    """Parse config.yaml; a missing file means defaults. Raises LoadError with the reason."""
    if not path.exists():
        return ModelConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LoadError(f"cannot read {path.name}: {exc}") from exc
    if raw is None:
        return ModelConfig()
    if not isinstance(raw, dict):
        raise LoadError(f"{path.name} must be a mapping")
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise LoadError(f"invalid {path.name}: {problems}") from exc
