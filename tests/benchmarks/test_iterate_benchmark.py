"""Tests of the iterate benchmark: a 2 MiB run without the pool as a subprocess, plus its program and resume timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.iterate_pool import phases, resumed_events
from benchmarks.iterate_program import StateProgram, expected_level
from tasks.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[2]
TOP_KEYS = {
    "state_mib", "scale_s_per_minute", "overhead", "load", "load_average_before_pool", "targets", "cpu", "cpu_count",
    "python", "commit", "dirty_files", "load_average",
}
RUN_KEYS = {"wall_s", "checkpoints", "held_ms_median", "held_ms_max", "final_checkpoint_s"}
COST_KEYS = {"overhead_s", "overhead_share", "overhead_s_per_checkpoint", "share_at_one_a_minute"}
LOAD_KEYS = {
    "checkpoint", "bytes", "rounds", "load_mb_s", "read_mb_s", "load_vs_disk", "resident_after_evict",
    "warm_load_mb_s", "warm_read_mb_s", "warm_load_vs_read", "warm_cpu",
}


def test_iterate_benchmark_prints_overhead_and_load_figures() -> None:
    """A 2 MiB run ends with one JSON line: three loop runs, their costs against the baseline, and the load."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.iterate", "--state-mib", "2", "--no-pool", "--scale", "0.5",
         "--checkpoints", "3", "--step-ms", "10", "--rounds", "2", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures.keys() == TOP_KEYS
    overhead = figures["overhead"]
    assert (overhead["steps"], overhead["step_ms"], overhead["interval_s"]) == (175, 10.0, 0.5)
    assert overhead["baseline"].keys() == RUN_KEYS and overhead["baseline"]["checkpoints"] == 0
    baseline = overhead["baseline"]["wall_s"]
    assert baseline >= 175 * 0.010 and overhead["baseline"]["final_checkpoint_s"] > 0
    for mode in ("sync", "async"):
        run = overhead[mode]
        assert run.keys() == RUN_KEYS | COST_KEYS
        assert run["checkpoints"] >= 2 and 0 <= run["held_ms_median"] <= run["held_ms_max"]
        assert run["overhead_share"] == pytest.approx((run["wall_s"] - baseline) / run["wall_s"], abs=2e-3)
        assert abs(run["share_at_one_a_minute"]) < 1
    load = figures["load"]
    assert load.keys() == LOAD_KEYS
    assert load["bytes"] > 2 * 1024 * 1024 and load["checkpoint"] == "0000000175" and load["rounds"] == 2
    assert all(load[key] > 0 for key in ("load_mb_s", "read_mb_s", "warm_load_mb_s", "warm_read_mb_s"))
    assert load["load_vs_disk"] == pytest.approx(load["load_mb_s"] / load["read_mb_s"], rel=0.02)
    assert 0 <= load["resident_after_evict"] <= 1
    assert load["warm_cpu"].keys() == {"sha256_ms", "read_hashed_ms", "tensor_views_ms", "decode_ms"}
    assert all(isinstance(value, bool) for value in figures["targets"].values()) and len(figures["targets"]) == 3
    assert "overhead.async.share_at_one_a_minute" in completed.stdout


def test_iterate_benchmark_rejects_a_scale_shorter_than_two_steps() -> None:
    """--scale 0.05 with 50 ms steps fails at once and says why."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.iterate", "--scale", "0.05"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 2
    assert "--scale 0.05 s is shorter than two steps of --step-ms 50.0" in completed.stderr


def test_program_steps_report_the_level_of_an_unbroken_run_and_resume_from_its_state(tmp_path: Path) -> None:
    """A program loaded with another's state goes on with the same levels, and the marker notes each event."""
    marker = tmp_path / "marker.jsonl"
    first = StateProgram({"state_mib": "1", "step_ms": "0", "regions": "4"}, 0)
    levels = [first.step(iteration)["level"] for iteration in range(6)]
    assert levels == [expected_level(iteration, 4) for iteration in range(6)] == [1, 1, 1, 1, 2, 2]
    second = StateProgram({"state_mib": "1", "step_ms": "0", "regions": "4", "marker": str(marker)}, 0)
    second.load_state_dict({"state": first.state_dict()["state"].clone()})
    assert second.step(6)["level"] == expected_level(6, 4) == 2.0
    events = [json.loads(line) for line in marker.read_text().splitlines()]
    assert [(event["event"], event["iteration"]) for event in events] == [("built", None), ("loaded", None),
                                                                         ("first_step", 6)]


def test_program_refuses_a_state_of_another_size_and_regions_that_do_not_divide_it() -> None:
    """Both errors name what was expected and what arrived."""
    program = StateProgram({"state_mib": "1", "step_ms": "0"}, 0)
    with pytest.raises(InvalidParameterError, match=r"the saved state has shape torch.Size\(\[8\]\), expected \(262144,\)"):
        program.load_state_dict({"state": torch.zeros(8)})
    with pytest.raises(InvalidParameterError, match="param 'regions' must divide the state's 262144 float32 values; got 3"):
        StateProgram({"state_mib": "1", "regions": "3"}, 0)


def test_resume_phases_come_from_the_other_process_markers_and_the_state_history(tmp_path: Path) -> None:
    """Only the resumed process's three events count, and each phase is the gap between its two moments."""
    marker = tmp_path / "marker.jsonl"
    lines = [{"event": "built", "pid": 1, "at": 100.0, "iteration": None},
             {"event": "first_step", "pid": 1, "at": 101.0, "iteration": 0},
             {"event": "built", "pid": 2, "at": 165.0, "iteration": None},
             {"event": "loaded", "pid": 2, "at": 165.5, "iteration": None}]
    marker.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert resumed_events(marker, 1) is None
    with marker.open("a") as handle:
        handle.write(json.dumps({"event": "first_step", "pid": 2, "at": 165.625, "iteration": 40}) + "\n")
    events = resumed_events(marker, 1)
    assert events is not None and events["first_step"]["iteration"] == 40
    moments = {"crashed": 150.0, "scheduled": 160.0, "scheduled_for": 160.0, "pending": 162.0, "running": 164.0}
    assert phases(moments, 110.0, events) == {
        "detect_s": 40.0, "reschedule_s": 10.0, "scheduled_ahead_s": 0.0, "pickup_s": 4.0, "pickup_poll_s": 2.0,
        "pickup_start_s": 2.0, "start_to_build_s": 1.0, "state_load_s": 0.5, "first_step_s": 0.125,
        "kill_to_first_step_s": 55.625,
    }
