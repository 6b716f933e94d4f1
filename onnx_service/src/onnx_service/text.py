"""Text in, vectors out: a Hugging Face tokenizer in front of a transformer graph, pooling after.

A model whose ``config.yaml`` has a ``text:`` section (:class:`onnx_service.config.TextConfig`)
is served with one BYTES input (a text per row) and two outputs: the pooled, optionally
L2-normalised FP32 embedding per row and the number of tokens each text took (what the
OpenAI-compatible endpoint reports as ``usage.prompt_tokens``). The tokenizer runs per batch,
inside the worker thread that runs the graph, and pads to the batch's longest text, so dynamic
batching combines texts of any length; mean pooling averages over real tokens only (the
attention mask), so a row's embedding does not depend on the rows batched with it.
"""

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from onnx_service.config import TextConfig
from onnx_service.errors import InvalidRequestError, LoadError

GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def tokenizer_file(model_file: Path, config: TextConfig) -> Path:
    """The tokenizer of a version: in its directory, else in the model's directory."""
    for directory in (model_file.parent, model_file.parent.parent):
        candidate = directory / config.tokenizer
        if candidate.is_file():
            return candidate
    raise LoadError(
        f"text models need {config.tokenizer} in the version or the model directory "
        f"(looked in {model_file.parent.name}/ and the model directory)"
    )


class TextPipeline:
    """Tokenize, run the graph, pool: for one loaded version (thread-safe: the tokenizer's
    batch encode and onnxruntime's run may be called from several threads)."""

    def __init__(self, config: TextConfig, tokenizer_path: Path, session: ort.InferenceSession):
        self.config = config
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # the Rust library raises plain Exceptions
            raise LoadError(f"cannot read {tokenizer_path.name}: {exc}") from exc
        if config.truncation:
            tokenizer.enable_truncation(max_length=config.max_length)
        else:
            tokenizer.no_truncation()
        padding = tokenizer.padding or {}
        pad_token = padding.get("pad_token", "[PAD]")
        pad_id = tokenizer.token_to_id(pad_token)
        tokenizer.enable_padding(
            pad_id=pad_id if pad_id is not None else int(padding.get("pad_id", 0)),
            pad_token=pad_token,
            length=config.max_length if config.padding == "max_length" else None,
        )
        self.tokenizer = tokenizer
        names = [i.name for i in session.get_inputs()]
        unknown = [n for n in names if n not in GRAPH_INPUTS]
        if "input_ids" not in names or unknown:
            raise LoadError(
                "a text model's graph takes input_ids and optionally attention_mask and "
                f"token_type_ids; this one takes {', '.join(names)}"
            )
        self.graph_inputs = names
        outputs = {o.name: o for o in session.get_outputs()}
        hidden = config.hidden_state or next(iter(outputs))
        if hidden not in outputs:
            raise LoadError(f"text.hidden_state '{hidden}' is not an output of the graph")
        arg = outputs[hidden]
        if arg.type != "tensor(float)" or len(arg.shape or []) != 3:
            raise LoadError(
                f"output '{hidden}' must be FP32 [batch, tokens, hidden] to be pooled, "
                f"not {arg.type} {arg.shape}"
            )
        self.hidden = hidden
        width = arg.shape[2]
        self.width = width if isinstance(width, int) and width > 0 else -1

    def run(self, session: ort.InferenceSession, texts: np.ndarray) -> dict[str, np.ndarray]:
        """Embeddings and token counts for a flat object array of texts."""
        config = self.config
        encodings = self.tokenizer.encode_batch(texts.tolist())
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        tokens = mask.sum(axis=1)
        if not config.truncation and ids.shape[1] > config.max_length:
            row = int(np.argmax(tokens))
            raise InvalidRequestError(
                f"text {row} of the batch has {int(tokens[row])} tokens, over the model's "
                f"max_length {config.max_length} (truncation is off)"
            )
        available: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": np.zeros_like(ids),
        }
        feeds = {name: available[name] for name in self.graph_inputs}
        (hidden,) = session.run([self.hidden], feeds)
        if config.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        if config.normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.clip(norms, 1e-12, None)
        return {
            config.output: np.ascontiguousarray(pooled, dtype=np.float32),
            config.tokens_output: tokens.astype(np.int64),
        }
