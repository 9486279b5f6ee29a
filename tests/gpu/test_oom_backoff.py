"""OOM backoff, on the CPU, with the real `torch.cuda.OutOfMemoryError` raised above a threshold."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.errors import ColabflowError, GpuOutOfMemoryError
from tasks.gpu.oom_backoff import (
    BATCH_SIZES_KEY,
    BatchSizeMemory,
    is_out_of_memory,
    run_with_oom_backoff,
)
from tasks.storage.places import local_place

torch = pytest.importorskip("torch", reason="these tests raise the real torch.cuda.OutOfMemoryError")

GPU = "Tesla T4"


def operation_that_fits(limit: int, tried: list[int]) -> Callable[[list[int]], list[int]]:
    """Squares its items, like a GPU kernel that runs out of memory above `limit` items."""

    def run(items: list[int]) -> list[int]:
        tried.append(len(items))
        if len(items) > limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(items)} GiB")
        return [item * item for item in items]

    return run


def test_halves_until_it_fits_and_keeps_that_size() -> None:
    """20 items with room for 5: tries 20, 10, then 5 four times; results complete and in order."""
    tried: list[int] = []
    freed: list[bool] = []
    memory = BatchSizeMemory()
    results = run_with_oom_backoff(
        "encode", list(range(20)), operation_that_fits(5, tried), GPU, memory, free_memory=lambda: freed.append(True)
    )
    assert tried == [20, 10, 5, 5, 5, 5]
    assert results == [item * item for item in range(20)]
    assert memory.recall("encode", GPU) == 5
    assert len(freed) == 2


def test_the_next_call_starts_at_the_remembered_size(tmp_path: Path) -> None:
    """The size lands in .colabflow/batch-sizes.json on result storage, and a new memory starts there."""
    run_with_oom_backoff("encode", list(range(12)), operation_that_fits(3, []), GPU, BatchSizeMemory(local_place(str(tmp_path))))
    stored = json.loads((tmp_path / BATCH_SIZES_KEY).read_text())
    assert stored["sizes"] == {"encode": {GPU: 3}}
    tried: list[int] = []
    run_with_oom_backoff("encode", list(range(7)), operation_that_fits(3, tried), GPU, BatchSizeMemory(local_place(str(tmp_path))))
    assert tried == [3, 3, 1]


def test_sizes_are_kept_per_operation_and_gpu(tmp_path: Path) -> None:
    """Another GPU model or another operation starts from the whole batch."""
    memory = BatchSizeMemory(local_place(str(tmp_path)))
    run_with_oom_backoff("encode", list(range(8)), operation_that_fits(2, []), GPU, memory)
    run_with_oom_backoff("latents", list(range(8)), operation_that_fits(4, []), "NVIDIA L4", memory)
    assert (memory.recall("encode", GPU), memory.recall("latents", "NVIDIA L4")) == (2, 4)
    assert memory.recall("encode", "NVIDIA L4") is None


def test_no_backoff_writes_nothing(tmp_path: Path) -> None:
    """A batch that fits at once leaves result storage untouched."""
    tried: list[int] = []
    run_with_oom_backoff("encode", list(range(6)), operation_that_fits(6, tried), GPU, BatchSizeMemory(local_place(str(tmp_path))))
    assert tried == [6]
    assert not (tmp_path / BATCH_SIZES_KEY).exists()


def test_below_the_minimum_raises_a_clear_error() -> None:
    """When even the minimum does not fit, the error names the operation, the GPU and the size."""
    tried: list[int] = []
    with pytest.raises(GpuOutOfMemoryError) as caught:
        run_with_oom_backoff("encode", list(range(20)), operation_that_fits(1, tried), GPU, BatchSizeMemory(), minimum=2)
    assert tried == [20, 10, 5, 2]
    assert str(caught.value).startswith("encode on Tesla T4 ran out of GPU memory even with 2 item(s) per sub-batch")
    assert isinstance(caught.value, ColabflowError) and isinstance(caught.value, MemoryError)


def test_other_errors_are_not_retried() -> None:
    """A bug in the operation propagates at once instead of being halved away."""
    tried: list[int] = []

    def broken(items: list[int]) -> list[int]:
        tried.append(len(items))
        raise ValueError("bad item")

    with pytest.raises(ValueError, match="bad item"):
        run_with_oom_backoff("encode", list(range(8)), broken, GPU, BatchSizeMemory())
    assert tried == [8]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory"), True),
        (MemoryError("std::bad_alloc"), True),
        (RuntimeError("CUDA Runtime API failure: out of memory"), True),
        (RuntimeError("illegal memory access"), False),
        (GpuOutOfMemoryError("already handled"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_what_counts_as_out_of_memory(error: BaseException, expected: bool) -> None:
    """torch's OOM, MemoryError and CUDA's 'out of memory' text count; our own error and others do not."""
    assert is_out_of_memory(error) is expected


def test_a_corrupt_size_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    """A damaged batch-sizes file costs one backoff, not the job."""
    (tmp_path / ".colabflow").mkdir()
    (tmp_path / BATCH_SIZES_KEY).write_text("{not json")
    memory = BatchSizeMemory(local_place(str(tmp_path)))
    assert memory.recall("encode", GPU) is None
    run_with_oom_backoff("encode", list(range(4)), operation_that_fits(2, []), GPU, memory)
    assert memory.recall("encode", GPU) == 2


def test_an_operation_that_drops_results_is_an_error() -> None:
    """Results must match items one to one, or order could not be kept."""
    with pytest.raises(ValueError, match="returned 1 results for 3 items"):
        run_with_oom_backoff("encode", [1, 2, 3], lambda items: items[:1], GPU, BatchSizeMemory())


def test_a_weighted_budget_halves_by_weight_and_is_remembered_in_that_unit(tmp_path: Path) -> None:
    """Items weighed in bytes: the budget halves from the failed sub-batch's weight, and a later call packs by it."""
    tried: list[list[int]] = []

    def fits_47(items: list[int]) -> list[int]:
        tried.append(items)
        if sum(items) > 47:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return items

    memory = BatchSizeMemory(local_place(str(tmp_path)))
    weights = [30, 30, 10, 10, 10, 5]
    assert run_with_oom_backoff("bytes", weights, fits_47, GPU, memory, weigh=lambda item: item) == weights
    assert tried == [weights, [30], [30, 10], [10, 10, 5]]
    assert memory.recall("bytes", GPU) == 47
    tried.clear()
    run_with_oom_backoff("bytes", [20, 20, 5, 1, 30], fits_47, GPU, memory, weigh=lambda item: item)
    assert tried == [[20, 20, 5, 1], [30]]
