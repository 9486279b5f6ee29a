"""Out-of-memory backoff for GPU batch work: halve the sub-batch, retry, remember what fits.

Every GPU batch task hands its items to `run_with_oom_backoff`. When the device runs out of
memory, the helper frees torch's cached blocks, halves the sub-batch and retries the same items,
down to a minimum; below that it raises `GpuOutOfMemoryError`. A sub-batch is measured by a
weight per item: one per item by default, or bytes, as the nvCOMP codec does, so a remembered
budget still fits a later batch of larger or smaller chunks. The budget that worked after an
out-of-memory error is remembered per (operation, GPU name) in `.colabflow/batch-sizes.json` on
result storage, and the next batch on that GPU starts there instead of failing again.

The record itself is kept with tasks/storage/records.py.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, PositiveInt

from tasks.errors import ColabflowError, GpuOutOfMemoryError
from tasks.storage.places import Place
from tasks.storage.records import read_record, write_record

T = TypeVar("T")
R = TypeVar("R")

BATCH_SIZES_KEY = ".colabflow/batch-sizes.json"

logger = logging.getLogger("colabflow.gpu")


class _BatchSizes(BaseModel):
    """batch-size file"""

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
    """The sub-batch budgets that fit after an out-of-memory error, per (operation, GPU name).

    A budget is in the operation's own unit: items, or bytes for an operation that weighs its
    items by size. With a place it lives in `BATCH_SIZES_KEY` under it (result storage), so every
    worker and every later job on the same GPU model starts from it; without one, only in this
    object. Two workers writing at the same moment may lose one update, which costs one more backoff.
    """

    place: Place | None = None
    _local: _BatchSizes = field(default_factory=_BatchSizes)

    def _load(self) -> _BatchSizes:
        if self.place is None:
            return self._local
        return read_record(self.place, BATCH_SIZES_KEY, _BatchSizes) or _BatchSizes()

    def recall(self, operation: str, gpu_name: str) -> int | None:
        """The remembered budget for this operation on this GPU model, if any."""
        return self._load().sizes.get(operation, {}).get(gpu_name)

    def remember(self, operation: str, gpu_name: str, size: int) -> None:
        """Record the budget that fits, merged into what other workers recorded."""
        sizes = self._load()
        sizes.sizes.setdefault(operation, {})[gpu_name] = size
        if self.place is None:
            self._local = sizes
        else:
            write_record(self.place, BATCH_SIZES_KEY, sizes)


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


def _next_part(items: Sequence[T], start: int, budget: int, minimum: int, weigh: Callable[[T], int]) -> list[T]:
    """Items from `start` while their weight fits `budget`; never fewer than `minimum` (or what is left)."""
    end, total = start, 0
    while end < len(items) and (end - start < minimum or total + weigh(items[end]) <= budget):
        total += weigh(items[end])
        end += 1
    return list(items[start:end])


def _one(_: object) -> int:
    return 1


def run_with_oom_backoff(
    operation: str,
    items: Sequence[T],
    run: Callable[[list[T]], list[R]],
    gpu_name: str,
    memory: BatchSizeMemory,
    minimum: int = 1,
    free_memory: Callable[[], None] = free_device_cache,
    weigh: Callable[[T], int] = _one,
) -> list[R]:
    """Run `run` over `items` in sub-batches that fit on the GPU; results come back in item order.

    A sub-batch holds as many items as fit its budget of weight (`weigh`, one per item by
    default). The budget starts at the remembered one (or all items), halves on each
    out-of-memory error (never below `minimum` items), and stays for the rest of the items. After
    an out-of-memory error the budget that finally worked is remembered for the next call. It
    never grows back by itself: growing would mean provoking another out-of-memory error.
    """
    if minimum < 1:
        raise ValueError(f"minimum must be at least 1, got {minimum}")
    budget = memory.recall(operation, gpu_name) or sum(map(weigh, items))
    results: list[R] = []
    backed_off = False
    while len(results) < len(items):
        part = _next_part(items, len(results), budget, minimum, weigh)
        produced = _attempt(run, part)
        if produced is not None:
            results.extend(produced)
            continue
        if len(part) <= minimum:
            raise GpuOutOfMemoryError(
                f"{operation} on {gpu_name} ran out of GPU memory even with {len(part)} item(s) per sub-batch "
                f"(the minimum); free GPU memory held by other processes (see nvidia-smi), use smaller "
                f"items, or run this work on the CPU"
            )
        free_memory()
        budget, backed_off = max(1, sum(map(weigh, part)) // 2), True
    if backed_off:
        memory.remember(operation, gpu_name, budget)
    return results
