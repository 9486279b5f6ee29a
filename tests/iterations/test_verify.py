"""`colabflow verify` and `status` of an iterative job's folder (verify.py and kind.py)."""

from __future__ import annotations

import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tasks.engine import user_code
from tasks.engine.job_folder import JobFolder
from tasks.engine.job_record import JOB_RECORD_NAME, JobRecord
from tasks.iterations.checkpoints import LATEST_NAME, TENSORS_NAME, checkpoint_name
from tasks.iterations.kind import IterationsKind
from tasks.iterations.metrics_file import METRICS_NAME
from tasks.iterations.verify import verify_iterations
from tasks.storage.stores import StorageAccess
from tests.iterations.support import (
    checkpoint_path,
    flip_byte,
    hill_climb_job,
    prepared_folder,
    run_job,
)


class Quiet:
    """A program whose steps report no metrics at all, which the contract allows."""

    def __init__(self, params: dict[str, str], seed: int) -> None:
        self.count = 0

    def step(self, iteration: int) -> dict[str, float]:
        self.count += 1
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = state["count"]


def finished_job(root: Path, iterations: int = 10) -> JobFolder:
    """A hill climb of `iterations` run to the end, checkpointed every 5."""
    folder = prepared_folder(root)
    run_job(hill_climb_job(iterations), folder)
    return folder


def reasons(folder: JobFolder) -> dict[str, str]:
    """Each problem verify finds, by the item it names."""
    return {problem.item_id: problem.reason for problem in verify_iterations(folder).problems}


def test_a_finished_job_verifies(tmp_path: Path) -> None:
    """Every checkpoint and the metrics file check out; the checkpoints kept are counted."""
    check = verify_iterations(finished_job(tmp_path, 12))
    assert (check.problems, check.items) == ([], 3)
    assert check.bytes_checked > 0


def test_a_job_whose_steps_report_no_metrics_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines such as {"iteration":3} still number the iterations."""
    monkeypatch.setattr(user_code, "_caller_trusted", True)
    folder = prepared_folder(tmp_path)
    run_job(hill_climb_job(7, program=f"{__name__}:Quiet", params={}), folder)
    assert verify_iterations(folder).problems == []


def test_a_changed_tensors_file_is_reported_naming_the_checkpoint(tmp_path: Path) -> None:
    """One flipped byte in the checkpoint in force fails its digest."""
    folder = finished_job(tmp_path)
    flip_byte(checkpoint_path(tmp_path, checkpoint_name(10), TENSORS_NAME))
    found = reasons(folder)
    assert list(found) == ["checkpoints/0000000010"]
    assert f"{TENSORS_NAME} does not match its sha256" in found["checkpoints/0000000010"]


def test_a_duplicated_metrics_line_is_reported(tmp_path: Path) -> None:
    """metrics.jsonl with an iteration twice no longer matches the checkpoints' segments."""
    folder = finished_job(tmp_path)
    lines = (tmp_path / "job" / METRICS_NAME).read_bytes().splitlines(keepends=True)
    (tmp_path / "job" / METRICS_NAME).write_bytes(b"".join(lines[:4] + lines[3:]))
    assert reasons(folder) == {METRICS_NAME: "differs from the checkpoints' metrics segments"}


def test_a_duplicated_line_in_a_segment_and_the_file_is_reported(tmp_path: Path) -> None:
    """Even consistent with its segments, a metrics file must number 0 .. N-1 once each."""
    folder = finished_job(tmp_path)
    for path in (tmp_path / "job" / "metrics" / "0000000005.jsonl", tmp_path / "job" / METRICS_NAME):
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(lines[:2] + lines[1:]))
    assert reasons(folder) == {METRICS_NAME: "does not list iterations 0 to 9 once each"}


def test_a_missing_metrics_file_is_reported(tmp_path: Path) -> None:
    """A run killed before its end leaves no metrics.jsonl: rerun the job."""
    folder = finished_job(tmp_path)
    (tmp_path / "job" / METRICS_NAME).unlink()
    assert reasons(folder) == {METRICS_NAME: "absent; rerun the job to write it"}


def test_a_missing_pointer_is_reported(tmp_path: Path) -> None:
    """Without latest.json no checkpoint is in force."""
    folder = finished_job(tmp_path)
    (tmp_path / "job" / LATEST_NAME).unlink()
    assert reasons(folder) == {LATEST_NAME: "absent or not a checkpoint pointer; rerun the job"}


def test_job_progress_reports_the_iteration_and_checkpoint_in_force(tmp_path: Path) -> None:
    """Status shows the checkpoint's iteration, its key and its age; no job record, no total."""
    progress = IterationsKind().job_progress(finished_job(tmp_path), StorageAccess())
    age = progress.pop("last_checkpoint_age_s")
    assert progress == {"iteration": 10, "iterations_total": None, "last_checkpoint": "checkpoints/0000000010"}
    assert isinstance(age, float) and 0.0 <= age < 600.0


def test_job_progress_takes_the_total_from_the_job_record(tmp_path: Path) -> None:
    """The iterations asked for come from job.json."""
    folder = finished_job(tmp_path)
    record = JobRecord(job="job", kind="iterations", items_total=40, batches_total=1, flow_run_id=None, attempt=1,
                       host=socket.gethostname(), updated_at=datetime.now(timezone.utc))
    folder.write(JOB_RECORD_NAME, record.model_dump_json().encode())
    assert IterationsKind().job_progress(folder, StorageAccess())["iterations_total"] == 40


def test_job_progress_of_a_new_job_is_at_zero(tmp_path: Path) -> None:
    """Before the first checkpoint: iteration 0, no checkpoint and no age."""
    progress = IterationsKind().job_progress(prepared_folder(tmp_path), StorageAccess())
    assert progress == {"iteration": 0, "iterations_total": None, "last_checkpoint": None, "last_checkpoint_age_s": None}
