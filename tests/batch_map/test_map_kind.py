"""The map kind's batch, called as a plain function: results, poison items, bad results, identity."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.batch_map import functions
from tasks.engine import user_code
from tasks.batch_map.kind import JOB_KIND, map_batch, prepare_map
from tasks.batch_map.outputs import ResultError
from tasks.batch_map.parameters import MapJob
from tasks.engine.checkpoints import batch_checkpoint_key
from tasks.engine.planning import plan_job
from tasks.engine.records import read_records
from tasks.errors import InvalidParameterError
from tests.machines import gpu_hidden, needs_cuda

MEASURE = "tasks.batch_map.examples.text:measure"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user package `labfns` on the path, trusted as the command line trusts its caller."""
    monkeypatch.setattr(user_code, "_caller_trusted", True)
    package = tmp_path / "labfns"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(
        "BUILT = []\n"
        "class Scaler:\n"
        "    def __init__(self, factor, device='cpu'):\n"
        "        BUILT.append((factor, device))\n"
        "        self.factor = int(factor)\n"
        "    def __call__(self, batch):\n"
        "        return [{'scaled': len(item['text']) * self.factor} for item in batch]\n"
        "def too_few(batch):\n"
        "    return batch[1:]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    functions.load_function.cache_clear()
    yield package / "model.py"
    functions.load_function.cache_clear()
    for name in ("labfns", "labfns.model", "labfns.memory"):
        sys.modules.pop(name, None)


def records(tmp_path: Path, *objects: dict[str, object]) -> str:
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in objects))
    return str(path)


def test_a_poison_item_fails_alone_with_its_exception_and_the_rest_are_written(tmp_path: Path) -> None:
    """The batch is called twice, then item by item; only the item that raises fails, with its type and message."""
    items = read_records(records(tmp_path, {"id": "a", "text": "x y"}, {"id": "b", "fail": True}, {"id": "c", "text": "z"}), "id")
    settings = prepare_map(MapJob(items="x.jsonl", destination=str(tmp_path / "out"), job="j", function=MEASURE, device="cpu"))
    result = map_batch(items, settings)
    assert [failure.item_id for failure in result.failures] == ["b"]
    assert result.failures[0].reason == "item 'b': the function raised 2 times; last: ValueError: item 'b' asked to fail"
    [name] = {output.output for output in result.outputs}
    lines = [json.loads(line) for line in (tmp_path / "out" / "j" / name).read_text().splitlines()]
    assert lines == [{"id": "a", "result": {"characters": 3, "words": 2}}, {"id": "c", "result": {"characters": 1, "words": 1}}]


def test_a_class_is_built_once_with_its_params_and_the_device(lab: Path, tmp_path: Path) -> None:
    """`Name(**params, device=...)` is built once per process, then called for every batch."""
    import labfns.model as model

    request = MapJob(items="x.jsonl", destination=str(tmp_path / "out"), job="j", function="labfns.model:Scaler",
                     params={"factor": "3"}, device="cpu", output="npz")
    settings = prepare_map(request)
    items = read_records(records(tmp_path, *({"id": str(index), "text": "ab"} for index in range(4))), "id")
    map_batch(items[:2], settings)
    map_batch(items[2:], settings)
    assert model.BUILT == [("3", "cpu")]


def test_a_function_that_returns_too_few_results_fails_the_batch_naming_the_first_item(lab: Path, tmp_path: Path) -> None:
    """One result per item is the contract; anything else fails the whole batch with the counts."""
    settings = prepare_map(MapJob(items="x.jsonl", destination=str(tmp_path / "out"), job="j",
                                  function="labfns.model:too_few", device="cpu"))
    items = read_records(records(tmp_path, {"id": "a"}, {"id": "b"}), "id")
    with pytest.raises(ResultError, match=r"returned 1 results for a batch of 2 items \(first item 'a'\)"):
        map_batch(items, settings)


def test_a_file_changed_after_planning_fails_alone(sample_source: Path, tmp_path: Path) -> None:
    """Items read from files are checked against their planned sha256."""
    settings = prepare_map(MapJob(items=str(sample_source), destination=str(tmp_path / "out"), job="j",
                                  function=MEASURE, device="cpu"))
    [batch] = plan_job([str(sample_source)], 100, 10**9).batches
    (sample_source / "empty.txt").write_text("no longer empty")
    result = map_batch(batch, settings)
    assert [failure.item_id for failure in result.failures] == ["empty.txt"]
    assert "changed while the job ran" in result.failures[0].reason
    assert len(result.outputs) == len(batch) - 1


def test_editing_the_function_changes_every_batch_key(lab: Path, tmp_path: Path) -> None:
    """The source file's sha256 is part of the identity, so edited code does not reuse old results."""
    request = MapJob(items="x.jsonl", destination=str(tmp_path / "out"), job="j", function="labfns.model:Scaler",
                     params={"factor": "2"}, device="cpu")
    items = read_records(records(tmp_path, {"id": "a", "text": "q"}), "id")
    before = batch_checkpoint_key(items, prepare_map(request))
    lab.write_text(lab.read_text() + "\n# a comment changes the source\n")
    after_settings = prepare_map(request)
    assert batch_checkpoint_key(items, after_settings) != before
    assert JOB_KIND.identity(after_settings)[1] == hashlib.sha256(lab.read_bytes()).hexdigest()


def test_fp16_on_a_machine_without_cuda_is_refused_with_the_reason(tmp_path: Path) -> None:
    """A precision the device cannot run is refused before any work: fp16 on the CPU, or on auto where
    torch sees no CUDA (hidden on a GPU host)."""
    with pytest.raises(ValueError, match="precision 'fp16' cannot run with device 'cpu'"):
        MapJob(items="x.jsonl", job="j", function=MEASURE, device="cpu", precision="fp16")
    with gpu_hidden(tmp_path / "no-gpu"), pytest.raises(
        InvalidParameterError, match="precision 'fp16' needs a CUDA GPU and this worker has none"
    ):
        prepare_map(MapJob(items="x.jsonl", destination=str(tmp_path / "out"), job="j", function=MEASURE,
                           precision="fp16"))


@pytest.mark.gpu
@needs_cuda
def test_auto_on_a_real_gpu_takes_cuda_and_names_the_gpu(lab: Path, tmp_path: Path) -> None:
    """On a real GPU: auto with fp16 runs on CUDA, the class is built for cuda, and the job's device is the GPU's name."""
    import labfns.model as model
    import torch

    settings = prepare_map(MapJob(items="x.jsonl", destination=str(tmp_path / "out"), job="j",
                                  function="labfns.model:Scaler", params={"factor": "2"}, precision="fp16"))
    assert settings.device == torch.cuda.get_device_name(0)
    assert model.BUILT == [("2", "cuda")]


OUT_OF_MEMORY_ABOVE_TWO = '''
import torch
CALLS = []
def fits_two(batch):
    CALLS.append(len(batch))
    if len(batch) > 2:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return [{"n": len(item["text"])} for item in batch]
'''


def test_out_of_device_memory_halves_the_batch_and_the_size_that_fits_is_remembered(lab: Path, tmp_path: Path) -> None:
    """torch's real CUDA OOM error at more than 2 items: 8 -> 4 -> 2, then the next batch starts at 2."""
    (lab.parent / "memory.py").write_text(OUT_OF_MEMORY_ABOVE_TWO)
    import labfns.memory as memory

    settings = prepare_map(MapJob(items="x.jsonl", destination=str(tmp_path / "out"), job="j",
                                  function="labfns.memory:fits_two", device="cpu"))
    items = read_records(records(tmp_path, *({"id": f"i{index}", "text": "ab" * index} for index in range(12))), "id")
    first = map_batch(items[:8], settings)
    assert first.failures == [] and len(first.outputs) == 8
    assert memory.CALLS == [8, 4, 2, 2, 2, 2]
    remembered = json.loads((tmp_path / "out" / ".colabflow" / "batch-sizes.json").read_text())
    assert remembered["sizes"] == {"map labfns.memory:fits_two()": {"cpu": 2}}
    memory.CALLS.clear()
    map_batch(items[8:], settings)
    assert memory.CALLS == [2, 2]
    [name] = {output.output for output in first.outputs}
    lines = [json.loads(line) for line in (tmp_path / "out" / "j" / name).read_text().splitlines()]
    assert lines == [{"id": f"i{index}", "result": {"n": 2 * index}} for index in range(8)]
