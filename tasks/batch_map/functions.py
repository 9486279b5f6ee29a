"""The user's function, loaded once per worker process and called on a batch.

`function` names either a function `f(batch) -> results` or a class: the class is built once per
process, as `Name(**params)` plus `device=` when its constructor takes one (so a model is loaded
once), and its instance is called with each batch. A batch is a list of dicts: a JSONL record as
it is, or `{"id": relative path, "bytes": content}` for a file.

A batch whose call raises is called again; if it raises again, each item is called alone, twice,
so one poison item fails alone with its exception's type and message, and the others complete.
A batch that runs out of device memory is not a failure: it is called in halves, down to single
items, and the size that fits is remembered per (function, GPU) for the next batches
(tasks/gpu/oom_backoff.py).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tasks.batch_map.outputs import ResultError
from tasks.engine.user_code import import_code, parse_code_path
from tasks.engine.models import ItemFailure
from tasks.errors import GpuOutOfMemoryError, InvalidParameterError
from tasks.gpu.oom_backoff import BatchSizeMemory, run_with_oom_backoff

CALLS_PER_ITEM = 2

logger = logging.getLogger("colabflow.map")

BatchFunction = Callable[[list[dict[str, Any]]], list[Any]]


@lru_cache(maxsize=4)
def load_function(function: str, params: tuple[tuple[str, str], ...], device: str) -> BatchFunction:
    """The callable that `function` names: a function as it is, a class built once with `params` (and `device`)."""
    target = import_code(parse_code_path(function))
    if inspect.isclass(target):
        arguments: dict[str, Any] = dict(params)
        if "device" in inspect.signature(target).parameters:
            arguments["device"] = device
        try:
            instance = target(**arguments)
        except TypeError as error:
            raise InvalidParameterError(
                f"function {function!r}: the class could not be built with params {dict(params)} ({error}); "
                "pass its constructor's arguments with --param KEY=VALUE"
            ) from None
        if not callable(instance):
            raise InvalidParameterError(f"function {function!r}: its instances cannot be called with a batch; define __call__")
        return instance
    if params:
        raise InvalidParameterError(f"function {function!r} is a function, so it takes no params (got {dict(params)})")
    if not callable(target):
        raise InvalidParameterError(f"function {function!r} names a {type(target).__name__}, not a function or a class")
    return target


@contextlib.contextmanager
def precision_context(precision: str, device: str) -> Iterator[None]:
    """`torch.autocast` for fp16 and bf16; nothing for fp32."""
    if precision == "fp32":
        yield
        return
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    with torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=dtype):
        yield


@dataclass(frozen=True)
class CallSettings:
    """How a batch is called: precision and device, and the memory of sizes that fit per (function, GPU)."""

    precision: str
    device: str
    operation: str  # the function and its params: what the remembered sizes belong to
    gpu_name: str
    sizes: BatchSizeMemory


def _call_in_parts(function: BatchFunction, ids: list[str], batch: list[dict[str, Any]], call: CallSettings) -> list[Any]:
    """The batch's results, from sub-batches that fit in device memory; one result per item, in order."""

    def run(positions: list[int]) -> list[Any]:
        with precision_context(call.precision, call.device):
            results = list(function([batch[position] for position in positions]))
        if len(results) != len(positions):
            raise ResultError(f"the function returned {len(results)} results for a batch of {len(positions)} items "
                              f"(first item {ids[positions[0]]!r}); it must return one result per item, in order")
        return results

    return run_with_oom_backoff(call.operation, list(range(len(batch))), run, call.gpu_name, call.sizes)


def call_batch(
    function: BatchFunction, ids: list[str], batch: list[dict[str, Any]], call: CallSettings
) -> tuple[list[Any], list[ItemFailure]]:
    """Each item's result (None where it failed) and the failures; a poison item fails alone."""
    for attempt in range(CALLS_PER_ITEM):
        try:
            return _call_in_parts(function, ids, batch, call), []
        except (InvalidParameterError, GpuOutOfMemoryError):
            raise
        except Exception as error:  # noqa: BLE001 - the user's function may raise anything
            logger.warning("batch of %d items from %r: call %d raised %s: %s", len(batch), ids[0], attempt + 1,
                           type(error).__name__, error)
    results = []
    failures: list[ItemFailure] = []
    for item_id, item in zip(ids, batch):
        result, failure = _call_alone(function, item_id, item, call.precision, call.device)
        results.append(result)
        if failure is not None:
            failures.append(failure)
    return results, failures


def _call_alone(
    function: BatchFunction, item_id: str, item: dict[str, Any], precision: str, device: str
) -> tuple[Any, ItemFailure | None]:
    errors: list[str] = []
    for _ in range(CALLS_PER_ITEM):
        try:
            with precision_context(precision, device):
                returned = list(function([item]))
        except Exception as error:  # noqa: BLE001 - the item's failure, with its type and message
            errors.append(f"{type(error).__name__}: {error}")
            continue
        if len(returned) != 1:
            return None, ItemFailure(item_id=item_id, reason=f"item {item_id!r}: the function returned "
                                     f"{len(returned)} results for 1 item")
        return returned[0], None
    return None, ItemFailure(item_id=item_id, reason=f"item {item_id!r}: the function raised {CALLS_PER_ITEM} times; "
                             f"last: {errors[-1]}")
