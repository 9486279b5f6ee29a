"""The GPU path wired into the compress flow, on a CPU machine: device, telemetry, ledger, quota."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blocks.compute_budget import ComputeBudget
from flows.compress_chunks import compress_chunks
from tasks.compression.models import JobReport
from tasks.compression.nvcomp_codec import local_gpu_probe
from tasks.compression.parameters import CompressJob
from tasks.compression.restore import check_job
from tasks.engine.ledger import read_ledger
from tasks.engine.models import BatchOutcome
from tasks.engine.spend import load_budget, quota_stop
from tasks.engine.status import job_status
from tasks.engine.telemetry import read_telemetry
from tasks.errors import (
    ColabflowError,
    GpuOutOfMemoryError,
    InvalidParameterError,
    is_retryable,
)
from tasks.storage.stores import StorageAccess
from tests.pool import recipes_at
from tests.servers import server_environment

ROOT = Path(__file__).parents[2]
# One compute unit a second, so that any batch passes a quota of a thousandth of a unit.
COSTLY_CPU = 3600.0


def run(source: Path, destination: Path, **fields: object) -> JobReport:
    request = CompressJob(source=[str(source)], destination=str(destination), job="job", batch_size=3, **fields)  # type: ignore[arg-type]
    return compress_chunks(request)  # type: ignore[return-value]


def test_gpu_out_of_memory_is_in_the_error_tree_and_never_retried() -> None:
    """GpuOutOfMemoryError narrows MemoryError under ColabflowError, so no retry repeats it."""
    error = GpuOutOfMemoryError("too big")
    assert isinstance(error, ColabflowError) and isinstance(error, MemoryError)
    assert not is_retryable(error)


def test_quota_stop_is_silent_without_a_quota_and_speaks_past_it() -> None:
    """No quota never stops; a spend projected past the quota returns the reason."""
    outcomes = [BatchOutcome(item_ids=["a"], seconds=2.0)]
    assert quota_stop(ComputeBudget(cpu_units_per_hour=COSTLY_CPU), 1e6, outcomes, 5, "cpu") is None
    tight = ComputeBudget(cpu_units_per_hour=COSTLY_CPU, quota_units=10)
    assert quota_stop(tight, 0.0, outcomes, 4, "cpu") is None
    assert "stopping before the compute-unit quota" in str(quota_stop(tight, 0.0, outcomes, 5, "cpu"))


@pytest.mark.usefixtures("prefect_api")
def test_auto_on_a_cpu_leaves_cpu_recipes_telemetry_per_batch_and_a_ledger_line_per_run(
    sample_source: Path, tmp_path: Path
) -> None:
    """codec auto runs on the CPU; a rerun from checkpoints adds a ledger line but no telemetry."""
    out = tmp_path / "out"
    first = run(sample_source, out, codec="auto")
    assert (first.device, first.gpu_class, first.batches_total) == ("cpu", "cpu", 3)
    recipes = recipes_at(out / "job")
    assert len(recipes) == 8 and {json.loads(line)["device"] for line in recipes.values()} == {"cpu"}
    telemetry = read_telemetry(str(out), StorageAccess(), "job")
    assert [(line.batch_index, line.device_name) for line in telemetry] == [(0, "cpu"), (1, "cpu"), (2, "cpu")]
    assert sum(line.items for line in telemetry) == 8
    second = run(sample_source, out, codec="auto")
    assert second.batches_reused == 3
    assert len(read_telemetry(str(out), StorageAccess(), "job")) == 3
    ledger = read_ledger(str(out), StorageAccess())
    assert len(ledger) == 2 and len({entry.flow_run_id for entry in ledger}) == 2
    assert ledger[0].compute_units == first.compute_units and ledger[1].compute_units == second.compute_units


@pytest.mark.usefixtures("prefect_api")
def test_a_tiny_quota_stops_early_and_a_larger_one_finishes_the_rest(sample_source: Path, tmp_path: Path) -> None:
    """The stopped run checkpoints one verifiable batch; the rerun reuses it and does the rest."""
    ComputeBudget(cpu_units_per_hour=COSTLY_CPU, quota_units=0.001).save("colabflow-test-tiny", overwrite=True)
    ComputeBudget(cpu_units_per_hour=COSTLY_CPU, quota_units=1e6).save("colabflow-test-roomy", overwrite=True)
    out = tmp_path / "out"
    stopped = run(sample_source, out, compute_budget="colabflow-test-tiny")
    assert stopped.stopped_reason is not None and "compute-unit quota" in stopped.stopped_reason
    assert (stopped.compressed, stopped.batches_total, stopped.failed) == (3, 1, [])
    check = check_job(out / "job")
    assert (check.items, check.problems) == (3, [])
    status = job_status(str(out / "job"), None, budget=load_budget("colabflow-test-tiny"))
    assert status.quota_units == 0.001 and status.compute_units_spent == stopped.compute_units > 0
    finished = run(sample_source, out, compute_budget="colabflow-test-roomy")
    assert finished.stopped_reason is None
    assert (finished.compressed, finished.reused, finished.batches_reused) == (5, 3, 1)
    assert (check_job(out / "job").items, check_job(out / "job").problems) == (8, [])


@pytest.mark.usefixtures("prefect_api")
def test_an_unknown_budget_name_says_how_to_make_one() -> None:
    """A budget name with no block fails with the save call to run."""
    with pytest.raises(InvalidParameterError, match=r"ComputeBudget\(quota_units=\.\.\.\)\.save\('no-such-budget'\)"):
        load_budget("no-such-budget")


@pytest.mark.skipif(local_gpu_probe().usable, reason="this machine has a usable GPU")
def test_a_gpu_runtime_is_charged_as_a_gpu_even_when_the_codec_ran_on_the_cpu(
    prefect_api: str, sample_source: Path, tmp_path: Path
) -> None:
    """`--codec cpu` on a machine whose nvidia-smi reports a T4: the ledger charges T4 units."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text("#!/bin/sh\necho 'Tesla T4'\n")
    (tools / "nvidia-smi").chmod(0o755)
    env = server_environment(tmp_path / "client-home", prefect_api)
    env["PATH"] = f"{tools}:{env['PATH']}"
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "compress", str(sample_source), str(tmp_path / "out"), "--job", "j",
         "--codec", "cpu", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    [entry] = read_ledger(str(tmp_path / "out"), StorageAccess())
    assert (entry.gpu_class, entry.device, report["gpu_class"], report["device"]) == ("t4", "Tesla T4", "t4", "cpu")
    assert entry.compute_units == report["compute_units"] > 0


def test_codec_gpu_on_the_cli_exits_2_naming_what_is_missing(
    prefect_api: str, sample_source: Path, tmp_path: Path
) -> None:
    """`--codec gpu` on a CPU machine stops before any flow run, with the probe's reason and no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "compress", str(sample_source), str(tmp_path / "out"), "--job", "j",
         "--codec", "gpu"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env=server_environment(tmp_path / "client-home", prefect_api),
    )
    assert result.returncode == 2
    assert f"error: codec 'gpu' cannot run: {local_gpu_probe().reason}; use --codec cpu" in result.stderr
    assert "Traceback" not in result.stderr and "Flow run" not in result.stderr
    assert not (tmp_path / "out").exists()
