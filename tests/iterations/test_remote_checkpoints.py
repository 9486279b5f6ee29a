"""Checkpoints on GCS (the emulator) and Google Drive (the fake Drive v3 server): written, pruned, verified,
resumed exactly, and a broken one skipped, as on local disk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tasks.engine.job_folder import JobFolder
from tasks.iterations.checkpoints import (
    TENSORS_NAME,
    checkpoint_key,
    checkpoint_name,
    checkpoint_names,
)
from tasks.iterations.verify import verify_iterations
from tests.iterations.support import hill_climb_job, prepared_folder, run_job
from tests.storage.test_store_contract import Backend, drive_store, gcs_store


@pytest.fixture(params=[gcs_store, drive_store], ids=["gcs", "drive"])
def remote_folder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobFolder]:
    """A job folder `runs/job` on a remote store."""
    factory: Callable[[ExitStack, Path], Backend] = request.param
    with ExitStack() as stack:
        store = factory(stack, tmp_path).store
        folder = JobFolder(destination=f"{store.location}/runs", job="job", store=store, path="runs/job")
        folder.prepare()
        yield folder


def test_a_job_resumed_on_a_remote_store_ends_as_a_straight_local_run(remote_folder: JobFolder, tmp_path: Path) -> None:
    """30 iterations, then a rerun to 60: the same final state and metrics as 60 on local disk; two checkpoints
    kept; the folder verifies."""
    straight = run_job(hill_climb_job(60, keep_last=2), prepared_folder(tmp_path / "local"))
    run_job(hill_climb_job(30, keep_last=2), remote_folder)
    resumed = run_job(hill_climb_job(60, keep_last=2), remote_folder)
    assert resumed.resumed_from == 30
    assert (resumed.final_state_sha256, resumed.metrics) == (straight.final_state_sha256, straight.metrics)
    assert checkpoint_names(remote_folder) == [checkpoint_name(60), checkpoint_name(55)]
    assert verify_iterations(remote_folder).problems == []


def test_a_broken_remote_checkpoint_is_skipped_with_a_warning(remote_folder: JobFolder, tmp_path: Path) -> None:
    """The newest checkpoint's tensors replaced: the run resumes from the one before, says so, and ends exactly."""
    straight = run_job(hill_climb_job(40), prepared_folder(tmp_path / "local"))
    run_job(hill_climb_job(20), remote_folder)
    remote_folder.write(checkpoint_key(checkpoint_name(20), TENSORS_NAME), b"not the tensors")
    warnings: list[str] = []
    resumed = run_job(hill_climb_job(40), remote_folder, warnings=warnings)
    assert resumed.resumed_from == 15
    assert any("checkpoints/0000000020 is broken and skipped" in warning for warning in warnings), warnings
    assert resumed.final_state_sha256 == straight.final_state_sha256 and resumed.metrics == straight.metrics
