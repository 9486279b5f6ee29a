"""A map job's outputs: one file per batch below `outputs/`, each item's result in item order.

- `jsonl`: one line per item, `{"id": …, "result": …}`; a result must be JSON.
- `npz` and `safetensors`: one array per result key, the items' values stacked along a first
  axis in item order; a result that is one array (or number) is stored under `result`. The ids
  go alongside: an `ids` array of strings in `.npz`, and `ids` (a JSON list) in the safetensors
  header's metadata. Arrays of one key must share a shape and a dtype.

Torch tensors are moved to the CPU first. Nothing here is ever read back with pickle: `.npz`
files are opened with `allow_pickle=False`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any, Literal

from tasks.errors import InvalidParameterError

OutputFormat = Literal["jsonl", "npz", "safetensors"]
RESULT_KEY = "result"
IDS_KEY = "ids"


class ResultError(InvalidParameterError):
    """A function's results that cannot be stored in the chosen format."""


def encode_batch(ids: Sequence[str], results: Sequence[Any], output: OutputFormat) -> bytes:
    """The bytes of one batch's output file."""
    if len(results) != len(ids):
        raise ResultError(
            f"the function returned {len(results)} results for a batch of {len(ids)} items (first item "
            f"{ids[0]!r}); it must return one result per item, in order"
        )
    if output == "jsonl":
        return _encode_jsonl(ids, results)
    arrays = stack_results(ids, results)
    if output == "npz":
        import numpy

        buffer = io.BytesIO()
        named: dict[str, Any] = {IDS_KEY: numpy.array(list(ids), dtype=str), **arrays}
        numpy.savez(buffer, **named)
        return buffer.getvalue()
    from safetensors.numpy import save

    return save(arrays, metadata={IDS_KEY: json.dumps(list(ids), ensure_ascii=False)})


def _encode_jsonl(ids: Sequence[str], results: Sequence[Any]) -> bytes:
    lines = []
    for item_id, result in zip(ids, results):
        try:
            lines.append(json.dumps({"id": item_id, "result": result}, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as error:
            raise ResultError(
                f"item {item_id!r}: its result, a {type(result).__name__}, is not JSON ({error}); return "
                "numbers, strings, lists and dicts, or choose --output npz or safetensors for arrays"
            ) from None
    return "".join(line + "\n" for line in lines).encode()


def as_array(value: Any, item_id: str, key: str) -> Any:
    """A result value as a numpy array: tensors moved to the CPU, numbers and lists converted."""
    import numpy

    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    try:
        array = numpy.asarray(value)
    except (TypeError, ValueError) as error:
        raise ResultError(f"item {item_id!r}: result {key!r} is a {type(value).__name__}, not an array ({error})") from None
    if array.dtype == object or array.dtype.kind in "USV":
        raise ResultError(
            f"item {item_id!r}: result {key!r} holds {array.dtype.name} values, not numbers; arrays "
            "must be numeric (use --output jsonl for text)"
        )
    return array


def stack_results(ids: Sequence[str], results: Sequence[Any]) -> dict[str, Any]:
    """One array per result key, stacked in item order; ragged shapes are refused naming the item."""
    import numpy

    per_item = [result if isinstance(result, dict) else {RESULT_KEY: result} for result in results]
    keys = list(per_item[0])
    if IDS_KEY in keys:
        raise ResultError(f"item {ids[0]!r}: its result has a key {IDS_KEY!r}, which holds the item ids; rename it")
    stacked: dict[str, Any] = {}
    for key in keys:
        arrays = []
        for item_id, values in zip(ids, per_item):
            if key not in values or set(values) != set(keys):
                raise ResultError(
                    f"item {item_id!r}: its result has the keys {sorted(values)}, but the batch's first item has "
                    f"{sorted(keys)}; every result must have the same keys"
                )
            arrays.append(as_array(values[key], item_id, key))
        first = arrays[0]
        for item_id, array in zip(ids, arrays):
            if array.shape != first.shape or array.dtype != first.dtype:
                raise ResultError(
                    f"item {item_id!r}: result {key!r} has shape {array.shape} and dtype {array.dtype}, but item "
                    f"{ids[0]!r} has {first.shape} and {first.dtype}; arrays of one key must match to be stacked"
                )
        stacked[key] = numpy.ascontiguousarray(numpy.stack(arrays))
    return stacked


def decode_ids(content: bytes, output: OutputFormat) -> list[str]:
    """The item ids an output file holds, in order (for verify), read without pickle."""
    if output == "jsonl":
        return [str(json.loads(line)["id"]) for line in content.splitlines() if line.strip()]
    if output == "npz":
        import numpy

        with numpy.load(io.BytesIO(content), allow_pickle=False) as archive:
            return [str(item_id) for item_id in archive[IDS_KEY]]
    from safetensors import safe_open
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as scratch:
        scratch.write(content)
        scratch.flush()
        with safe_open(scratch.name, framework="numpy") as opened:
            metadata = opened.metadata() or {}
    ids: list[str] = json.loads(metadata.get(IDS_KEY, "[]"))
    return ids
