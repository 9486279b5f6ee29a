"""Tests of the map benchmark: a 400-record, 160-file run as a subprocess, plus its map functions and bare loop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.map_functions import compute_20ms, noop
from benchmarks.map_items import bare_batches, run_bare, write_records

ROOT = Path(__file__).resolve().parents[2]
TOP_KEYS = {
    "items", "batch_size", "batches", "startup_s", "noop", "compute_20ms", "overlap", "outputs_verified",
    "cpu", "cpu_count", "python", "commit", "dirty_files", "load_average",
}
FUNCTION_KEYS = {
    "wall_s", "bare_s", "overhead_ratio", "overhead_ms_per_batch", "task_runs", "rerun_s", "rerun_vs_first",
    "rerun_batches_run", "task_seconds",
}
OVERLAP_KEYS = {
    "items", "batches", "read_delay_ms", "compute_ms_per_batch", "wall_s", "compute_s", "fetch_s", "fetch_threads",
    "fetch_serial_s", "overlap_ratio", "task_runs", "task_seconds",
}


@pytest.mark.slow
def test_map_benchmark_prints_every_figure_and_checks_its_outputs() -> None:
    """A small run ends with one JSON line: every figure, typed, outputs verified, reruns that ran no batch."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.map_items", "--items", "400", "--overlap-items", "160", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=540, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures.keys() == TOP_KEYS
    assert (figures["items"], figures["batch_size"], figures["batches"]) == (400, 8, 50)
    assert figures["outputs_verified"] is True and figures["cpu_count"] >= 1
    assert isinstance(figures["commit"], str) and isinstance(figures["dirty_files"], list)
    for name in ("noop", "compute_20ms"):
        case = figures[name]
        assert case.keys() == FUNCTION_KEYS
        assert all(isinstance(case[key], float) and case[key] > 0 for key in ("wall_s", "bare_s", "rerun_s", "overhead_ratio"))
        assert case["overhead_ratio"] == pytest.approx(case["wall_s"] / case["bare_s"], rel=0.02)
        assert case["rerun_batches_run"] == 0
        assert isinstance(case["task_runs"], int) and 0 < case["task_runs"] <= 100
        assert "batches" in case["task_seconds"]
    overlap = figures["overlap"]
    assert overlap.keys() == OVERLAP_KEYS
    assert (overlap["items"], overlap["batches"], overlap["read_delay_ms"]) == (160, 20, 20)
    assert 1 <= overlap["fetch_threads"] <= 8
    assert all(isinstance(overlap[key], float) and overlap[key] > 0
               for key in ("wall_s", "compute_s", "fetch_s", "fetch_serial_s", "overlap_ratio"))
    assert overlap["overlap_ratio"] == pytest.approx(overlap["wall_s"] / max(overlap["compute_s"], overlap["fetch_s"]), rel=0.02)
    assert 0 < overlap["task_runs"] <= 100


def test_map_benchmark_rejects_an_empty_batch() -> None:
    """--batch-size 0 fails at once and says what each option got."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.map_items", "--batch-size", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 2
    assert "need --items, --batch-size and --overlap-items >= 1, got 21456, 0 and 2000" in completed.stderr


def test_map_functions_return_one_result_per_item() -> None:
    """Both functions give each item its byte count (0 for a record), in order."""
    batch = [{"id": "a", "bytes": b"xyz"}, {"id": "b", "text": "record"}]
    assert noop(batch) == compute_20ms(batch) == [3, 0]


def test_bare_loop_writes_each_batch_with_a_done_marker(tmp_path: Path) -> None:
    """Ten records in batches of 4: three JSONL files in order, each with its marker, no temporary left."""
    records = write_records(tmp_path / "items.jsonl", 10)
    assert run_bare(tmp_path / "items.jsonl", tmp_path / "bare", noop, 4) == 3
    batches = bare_batches(tmp_path / "bare")
    assert [ids for ids, _ in batches] == [[str(record["id"]) for record in records[start:start + 4]] for start in (0, 4, 8)]
    assert batches[0][1].splitlines()[0] == b'{"id": "item-000000", "result": 0}'
    assert sorted(path.name for path in (tmp_path / "bare" / "done").iterdir()) == [
        "batch-000000.json", "batch-000001.json", "batch-000002.json"]
    assert not list((tmp_path / "bare").rglob(".partial-*"))
