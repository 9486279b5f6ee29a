"""A tiny torch model built from a fixed seed: a real model's shape for fast tests, with no download.

Each item's UTF-8 bytes are averaged through an embedding table, projected and L2-normalised.
The weights come from a private generator seeded with `SEED`, so every process that builds the
model holds the same weights, and the global torch seed is left alone.
"""

from __future__ import annotations

from itertools import accumulate
from typing import Any

from tasks.batch_map.examples.text import text_of

SEED = 0
BYTE_VALUES = 256
START = BYTE_VALUES  # a token in front of every text, so an empty text still has a vector
WIDTH = 32
DIMENSION = 16


class TinyEncoder:
    """Each item's text as an L2-normalised float32 vector of `DIMENSION` values under `embedding`."""

    def __init__(self, device: str = "cpu") -> None:
        """Build the model once per worker process, on `device`."""
        import torch

        generator = torch.Generator().manual_seed(SEED)
        self.device = device
        self.table = torch.randn(BYTE_VALUES + 1, WIDTH, generator=generator).to(device)
        self.projection = (torch.randn(WIDTH, DIMENSION, generator=generator) / WIDTH**0.5).to(device)

    def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import torch
        from torch.nn.functional import embedding_bag, normalize

        tokens = [[START, *text_of(item).encode("utf-8")] for item in batch]
        flat = torch.tensor([token for each in tokens for token in each], device=self.device)
        offsets = torch.tensor([0, *accumulate(len(each) for each in tokens)][:-1], device=self.device)
        pooled = embedding_bag(flat, self.table, offsets, mode="mean")
        vectors = normalize((pooled @ self.projection).float(), dim=1).cpu()
        return [{"embedding": vector} for vector in vectors]
