"""Out-of-memory backoff for GPU batch work: halve the sub-batch, retry, remember what fits.

Every GPU batch task hands its items to `run_with_oom_backoff`. When the device runs out of
memory, the helper frees torch's cached blocks, halves the sub-batch and retries the same items,
down to a minimum; below that it raises `GpuOutOfMemoryError`. The size that worked after an
out-of-memory error is remembered per (operation, GPU name) in `.colabflow/batch-sizes.json` on
result storage, and the next batch on that GPU starts there instead of failing again.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, PositiveInt, ValidationError

from tasks.errors import ColabflowError, GpuOutOfMemoryError
from tasks.stores import Place, read_optional

T = TypeVar("T")
R = TypeVar("R")

BATCH_SIZES_KEY = ".colabflow/batch-sizes.json"

logger = logging.getLogger("colabflow.gpu")


class _BatchSizes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    sizes: dict[str, dict[str, PositiveInt]] = {}


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says the device ran out of memory.

    torch raises `torch.cuda.OutOfMemoryError`. nvCOMP's Python API documents no error class of
    its own: its pybind11 layer turns `std::bad_alloc` into `MemoryError`, and CUDA failures into
    `RuntimeError` carrying CUDA's text for cudaErrorMemoryAllocation, "out of memory".
    """
    if isinstance(error, ColabflowError):
        return False
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def free_device_cache() -> None:
    """Drop what the failed attempt left behind and hand torch's cached GPU blocks back to CUDA."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class BatchSizeMemory:
    """The sub-batch sizes that fit after an out-of-memory error, per (operation, GPU name).

    With a place they live in `BATCH_SIZES_KEY` under it (result storage), so every worker and
    every later job on the same GPU model starts from them; without one, only in this object.
    Two workers writing at the same moment may lose one update, which costs one more backoff.
    """

    place: Place | None = None
    _local: _BatchSizes = field(default_factory=_BatchSizes)

    def _load(self) -> _BatchSizes:
        if self.place is None:
            return self._local
        content = read_optional(self.place.store, self.place.key(BATCH_SIZES_KEY))
        if content is None:
            return _BatchSizes()
        try:
            return _BatchSizes.model_validate_json(content)
        except ValidationError as error:
            logger.warning(
                "ignoring %s, which is not a batch-size file (%s); it will be rewritten",
                self.place.uri(self.place.key(BATCH_SIZES_KEY)), error.errors()[0]["msg"],
            )
            return _BatchSizes()

    def recall(self, operation: str, gpu_name: str) -> int | None:
        """The remembered size for this operation on this GPU model, if any."""
        return self._load().sizes.get(operation, {}).get(gpu_name)

    def remember(self, operation: str, gpu_name: str, size: int) -> None:
        """Record the size that fits, merged into what other workers recorded."""
        sizes = self._load()
        sizes.sizes.setdefault(operation, {})[gpu_name] = size
        if self.place is None:
            self._local = sizes
            return
        content = json.dumps(sizes.model_dump(), indent=1, sort_keys=True).encode() + b"\n"
        self.place.writable("result storage").write_bytes(self.place.key(BATCH_SIZES_KEY), content)


def _attempt(run: Callable[[list[T]], list[R]], part: list[T]) -> list[R] | None:
    """`run(part)`, or None when it ran out of memory; any other error propagates."""
    try:
        produced = run(part)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        logger.warning("out of memory with %d items per sub-batch: %s", len(part), error)
        return None
    if len(produced) != len(part):
        raise ValueError(f"a batch operation returned {len(produced)} results for {len(part)} items")
    return produced


def run_with_oom_backoff(
    operation: str,
    items: Sequence[T],
    run: Callable[[list[T]], list[R]],
    gpu_name: str,
    memory: BatchSizeMemory,
    minimum: int = 1,
    free_memory: Callable[[], None] = free_device_cache,
) -> list[R]:
    """Run `run` over `items` in sub-batches that fit on the GPU; results come back in item order.

    Starts at the remembered size (or all items), halves on each out-of-memory error down to
    `minimum`, and keeps the size that worked for the rest of the items. After an out-of-memory
    error the size that finally worked is remembered for the next call.
    """
    if minimum < 1:
        raise ValueError(f"minimum must be at least 1, got {minimum}")
    if not items:
        return []
    size = min(len(items), memory.recall(operation, gpu_name) or len(items))
    results: list[R] = []
    backed_off = False
    while len(results) < len(items):
        part = list(items[len(results) : len(results) + size])
        produced = _attempt(run, part)
        if produced is not None:
            results.extend(produced)
            continue
        if size <= minimum:
            raise GpuOutOfMemoryError(
                f"{operation} on {gpu_name} ran out of GPU memory even with {size} item(s) per sub-batch "
                f"(the minimum); free GPU memory held by other processes (see nvidia-smi), use smaller "
                f"items, or run this work on the CPU"
            )
        free_memory()
        size, backed_off = max(minimum, size // 2), True
    if backed_off:
        memory.remember(operation, gpu_name, size)
    return results
