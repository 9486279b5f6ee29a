"""The GPU path wired into the compress flow: device, telemetry, ledger, quota.

Each test states the machine it assumes and makes it so (tests/machines.py), so each holds on a
CPU-only machine and on a GPU host alike.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocks.compute_budget import ComputeBudget
from flows.compress_chunks import compress_chunks
from tasks.compression.models import JobReport
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
from tests.machines import gpu_hidden, with_gpu_named, without_gpu
from tests.pool import recipes_at
from tests.servers import server_environment

ROOT = Path(__file__).parents[2]


def costly(quota_units: float | None = None) -> ComputeBudget:
    """One compute unit a second on every class, so that any batch passes a quota of a thousandth of a
    unit, whichever class this machine is billed as."""
    rate = 3600.0
    return ComputeBudget(t4_units_per_hour=rate, l4_units_per_hour=rate, a100_units_per_hour=rate,
                         other_gpu_units_per_hour=rate, cpu_units_per_hour=rate, quota_units=quota_units)


@pytest.fixture
def no_gpu(tmp_path: Path) -> Iterator[None]:
    """This process finds no GPU during the test, whatever the host has."""
    with gpu_hidden(tmp_path / "no-gpu"):
        yield


def run(source: Path, destination: Path, **fields: object) -> JobReport:
    request = CompressJob(source=[str(source)], destination=str(destination), job="job", batch_size=3, **fields)  # type: ignore[arg-type]
    return compress_chunks(request)  # type: ignore[return-value]


def test_gpu_out_of_memory_is_in_the_error_tree_and_never_retried() -> None:
    """GpuOutOfMemoryError narrows MemoryError under ColabflowError, so no retry repeats it."""
    error = GpuOutOfMemoryError("too big")
    assert isinstance(error, ColabflowError) and isinstance(error, MemoryError)
    assert not is_retryable(error)


def test_quota_stop_is_silent_without_a_quota_and_speaks_past_it() -> None:
    """No quota never stops; a spend projected past the quota returns the reason, on any machine."""
    outcomes = [BatchOutcome(item_ids=["a"], seconds=2.0)]
    assert quota_stop(costly(), 1e6, outcomes, 5, "cpu") is None
    tight = costly(quota_units=10)
    assert quota_stop(tight, 0.0, outcomes, 4, "cpu") is None
    assert "stopping before the compute-unit quota" in str(quota_stop(tight, 0.0, outcomes, 5, "cpu"))


@pytest.mark.usefixtures("prefect_api", "no_gpu")
def test_auto_on_a_cpu_leaves_cpu_recipes_telemetry_per_batch_and_a_ledger_line_per_run(
    sample_source: Path, tmp_path: Path
) -> None:
    """With no GPU (hidden on a GPU host), codec auto runs on the CPU and the run is billed as cpu; a
    rerun from checkpoints adds a ledger line but no telemetry."""
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
    """The stopped run checkpoints one verifiable batch; the rerun reuses it and does the rest.

    Every class costs the same, so this holds whichever class (cpu or a GPU) the machine is billed as.
    """
    costly(quota_units=0.001).save("colabflow-test-tiny", overwrite=True)
    costly(quota_units=1e6).save("colabflow-test-roomy", overwrite=True)
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


def test_a_gpu_runtime_is_charged_as_a_gpu_even_when_the_codec_ran_on_the_cpu(
    prefect_api: str, sample_source: Path, tmp_path: Path
) -> None:
    """`--codec cpu` where torch sees no CUDA and nvidia-smi reports a T4 (a stand-in, on any host): the
    ledger charges T4 units."""
    env = with_gpu_named(server_environment(tmp_path / "client-home", prefect_api), tmp_path / "bin", "Tesla T4")
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
    """`--codec gpu` where no GPU is found (hidden on a GPU host) stops before any flow run, with the
    probe's reason and no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "compress", str(sample_source), str(tmp_path / "out"), "--job", "j",
         "--codec", "gpu"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env=without_gpu(server_environment(tmp_path / "client-home", prefect_api), tmp_path / "bin"),
    )
    assert result.returncode == 2
    assert re.search(r"error: codec 'gpu' cannot run: no CUDA GPU: torch \S+ .+; use --codec cpu or --codec auto\n",
                     result.stderr)
    assert "Traceback" not in result.stderr and "Flow run" not in result.stderr
    assert not (tmp_path / "out").exists()
