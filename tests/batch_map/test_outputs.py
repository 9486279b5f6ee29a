"""A batch's output file, read back by numpy, safetensors and json, never by pickle."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy
import pytest
import torch
from safetensors.numpy import load_file

from tasks.batch_map.outputs import ResultError, decode_ids, encode_batch

IDS = ["a", "b", "c"]


def test_jsonl_holds_one_line_per_item_in_order() -> None:
    """Each line is {"id", "result"}; json reads it back."""
    content = encode_batch(IDS, [{"n": 1}, [2, 3], "é"], "jsonl")
    assert [json.loads(line) for line in content.splitlines()] == [
        {"id": "a", "result": {"n": 1}}, {"id": "b", "result": [2, 3]}, {"id": "c", "result": "é"}]
    assert decode_ids(content, "jsonl") == IDS


def test_npz_stacks_each_key_in_item_order_with_the_ids_alongside() -> None:
    """numpy reads the arrays with allow_pickle=False; tensors and numbers are stacked per key."""
    results = [{"vector": torch.full((4,), float(index)), "label": index} for index in range(3)]
    content = encode_batch(IDS, results, "npz")
    with numpy.load(io.BytesIO(content), allow_pickle=False) as archive:
        assert archive["vector"].shape == (3, 4) and archive["vector"][2].tolist() == [2.0] * 4
        assert archive["label"].tolist() == [0, 1, 2]
        assert archive["ids"].tolist() == IDS
    assert decode_ids(content, "npz") == IDS


def test_safetensors_holds_the_arrays_and_the_ids_in_its_metadata(tmp_path: Path) -> None:
    """safetensors reads the stacked arrays; a bare array result is stored under 'result'; bf16 becomes float32."""
    content = encode_batch(IDS, [torch.ones(2, 2, dtype=torch.bfloat16) * index for index in range(3)], "safetensors")
    path = tmp_path / "batch.safetensors"
    path.write_bytes(content)
    arrays = load_file(str(path))
    assert arrays["result"].shape == (3, 2, 2) and arrays["result"].dtype == numpy.float32
    assert decode_ids(content, "safetensors") == IDS


@pytest.mark.parametrize(("results", "output", "message"), [
    ([1, 2], "jsonl", r"returned 2 results for a batch of 3 items \(first item 'a'\)"),
    ([1, {1, 2}, 3], "jsonl", r"item 'b': its result, a set, is not JSON"),
    ([numpy.zeros(2), numpy.zeros(3), numpy.zeros(2)], "npz", r"item 'b': result 'result' has shape \(3,\) .* item 'a' has \(2,\)"),
    ([{"x": 1}, {"y": 1}, {"x": 1}], "safetensors", r"item 'b': its result has the keys \['y'\], but the batch's first item has \['x'\]"),
    (["text", "more", "words"], "npz", r"item 'a': result 'result' holds str\d* values, not numbers"),
    ([{"ids": 1}] * 3, "npz", r"item 'a': its result has a key 'ids', which holds the item ids; rename it"),
])
def test_results_that_do_not_fit_the_format_fail_naming_the_item(results: list[object], output: str, message: str) -> None:
    """A wrong count, a non-JSON value, ragged shapes, mismatched keys and text arrays each name the item."""
    with pytest.raises(ResultError, match=message):
        encode_batch(IDS, results, output)  # type: ignore[arg-type]
