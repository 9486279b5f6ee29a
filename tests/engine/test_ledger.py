"""The compute-unit ledger: estimates, the idempotent JSONL at the destination, spend and the quota check."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from blocks.compute_budget import ComputeBudget
from tasks.compression.kind import prepare_job
from tasks.engine.ledger import (
    LEDGER_NAME,
    append_ledger,
    estimate_units,
    ledger_entry,
    parse_ledger,
    projected_over_quota,
    read_ledger,
    spend,
)
from tasks.engine.models import BatchOutcome
from tasks.engine.spend import SpendRecorder
from tasks.errors import CorruptOutputError
from tasks.storage.stores import StorageAccess

ACCESS = StorageAccess()
BUDGET = ComputeBudget()


def test_units_are_seconds_times_the_hourly_rate() -> None:
    """Half an hour on a T4 at 1.96 units/h is 0.98 units; an hour of CPU is 0.08."""
    assert estimate_units("t4", 1800, BUDGET) == 0.98
    assert estimate_units("cpu", 3600, BUDGET) == 0.08


def test_an_entry_takes_its_class_from_the_device_name() -> None:
    """The GPU name maps through the work-queue classes; 'cpu' stays cpu."""
    entry = ledger_entry("job-1", "run-1", 1, "NVIDIA A100-SXM4-40GB", 360, BUDGET)
    assert (entry.gpu_class, entry.compute_units) == ("a100", 1.177)
    assert ledger_entry("job-1", "run-1", 1, "cpu", 3600, BUDGET).gpu_class == "cpu"
    assert ledger_entry("job-1", "run-1", 1, "Quadro RTX 6000", 3600, BUDGET).gpu_class == "any"


def test_the_ledger_accumulates_across_jobs(tmp_path: Path) -> None:
    """Entries of different jobs and attempts pile up in <destination>/ledger.jsonl, in order."""
    entries = [
        ledger_entry("job-1", "run-1", 1, "Tesla T4", 3600, BUDGET),
        ledger_entry("job-1", "run-1", 2, "Tesla T4", 1800, BUDGET),
        ledger_entry("job-2", "run-2", 1, "NVIDIA L4", 3600, BUDGET),
    ]
    for entry in entries:
        append_ledger(str(tmp_path), ACCESS, entry)
    assert read_ledger(str(tmp_path), ACCESS) == entries
    assert len((tmp_path / LEDGER_NAME).read_text().splitlines()) == 3
    assert spend(entries) == 1.96 + 0.98 + 4.82


def test_recording_the_same_attempt_again_does_not_double_count(tmp_path: Path) -> None:
    """A retried task records (job, run, attempt) again: same entry is a no-op, a newer one replaces it."""
    first = ledger_entry("job-1", "run-1", 1, "Tesla T4", 600, BUDGET)
    other = ledger_entry("job-2", "run-2", 1, "Tesla T4", 60, BUDGET)
    append_ledger(str(tmp_path), ACCESS, first)
    append_ledger(str(tmp_path), ACCESS, other)
    before = (tmp_path / LEDGER_NAME).stat().st_mtime_ns
    append_ledger(str(tmp_path), ACCESS, first)
    assert (tmp_path / LEDGER_NAME).stat().st_mtime_ns == before
    longer = ledger_entry("job-1", "run-1", 1, "Tesla T4", 900, BUDGET)
    append_ledger(str(tmp_path), ACCESS, longer)
    assert read_ledger(str(tmp_path), ACCESS) == [longer, other]


def test_concurrent_jobs_in_one_process_lose_no_entry(tmp_path: Path) -> None:
    """Twenty threads recording at once leave twenty lines."""
    entries = [ledger_entry(f"job-{index}", f"run-{index}", 1, "cpu", 60, BUDGET) for index in range(20)]
    threads = [threading.Thread(target=append_ledger, args=(str(tmp_path), ACCESS, entry)) for entry in entries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(entry.job for entry in read_ledger(str(tmp_path), ACCESS)) == sorted(entry.job for entry in entries)


def test_no_ledger_yet_is_no_spend(tmp_path: Path) -> None:
    """Before the first job there is nothing to read and nothing spent."""
    assert spend(read_ledger(str(tmp_path), ACCESS)) == 0


def test_a_damaged_line_is_reported_with_its_number() -> None:
    """A line that is not an entry names the file and its line."""
    good = ledger_entry("job-1", "run-1", 1, "cpu", 60, BUDGET).model_dump_json()
    with pytest.raises(CorruptOutputError, match=r"^/out/ledger.jsonl line 2 is not a ledger entry"):
        parse_ledger(f"{good}\n{json.dumps({'job': 'x'})}\n".encode(), "/out/ledger.jsonl")


def test_without_a_quota_nothing_stops() -> None:
    """No quota_units: no projection can pass it."""
    assert projected_over_quota(1e6, [3600.0], 1000, BUDGET, "a100") is None


def test_a_projection_within_the_quota_lets_the_job_go_on() -> None:
    """40 spent, 10 batches of 6 minutes on a T4 left (about 1.96 units): 41.96 of 50 fits."""
    assert projected_over_quota(40.0, [300.0, 420.0], 10, ComputeBudget(quota_units=50.0), "t4") is None


def test_a_projection_past_the_quota_says_why_and_what_to_do() -> None:
    """45 spent and 100 A100 batches of an hour left: the message has the figures and the way out."""
    message = projected_over_quota(45.0, [3600.0], 100, ComputeBudget(quota_units=50.0), "a100")
    assert message == (
        "stopping before the compute-unit quota: 45.00 of 50.00 units are spent and the 100 batches left would "
        "take about 1177.00 more (3600 s a batch on a100 at 11.77 units/h), 1222.00 in all; about 0 more batches "
        "fit. Finished batches are checkpointed: raise quota_units in the ComputeBudget block, or run the rest on "
        "a cheaper GPU class"
    )


def test_one_batch_left_stops_only_at_the_edge() -> None:
    """With batches_left=1 the check passes until the next batch itself would cross the quota."""
    budget = ComputeBudget(quota_units=10.0)
    assert projected_over_quota(8.0, [1800.0], 1, budget, "t4") is None
    assert "about 2 more batches fit" in (projected_over_quota(8.0, [1800.0], 3, budget, "t4") or "")
    assert projected_over_quota(9.5, [1800.0], 1, budget, "t4") is not None


def test_a_quota_already_spent_stops_before_the_first_batch() -> None:
    """With no batch timed yet, a spent quota still stops the job."""
    assert "50.00 of 50.00 units are spent" in (projected_over_quota(50.0, [], 10, ComputeBudget(quota_units=50.0), "t4") or "")
    assert projected_over_quota(49.0, [], 10, ComputeBudget(quota_units=50.0), "t4") is None


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.filterwarnings("ignore:Logger 'prefect.task_runs' attempted to send logs")
def test_the_spend_recorder_writes_after_work_at_most_once_per_interval(tmp_path: Path) -> None:
    """First working batch: a line; again within the interval or from a checkpoint: no write; final: rewritten."""
    settings = prepare_job(str(tmp_path / "out"), "job", "cpu", 6)
    recorder = SpendRecorder(settings, ComputeBudget(), every=3600)
    ledger = tmp_path / "out" / "ledger.jsonl"
    recorder.after_batch(BatchOutcome(item_ids=["a"], from_checkpoint=True))
    assert not ledger.exists()
    recorder.after_batch(BatchOutcome(item_ids=["a"]))
    first = ledger.read_bytes()
    recorder.after_batch(BatchOutcome(item_ids=["b"]))
    assert ledger.read_bytes() == first
    final = recorder.final()
    assert ledger.read_bytes() != first and len(ledger.read_bytes().splitlines()) == 1
    assert read_ledger(str(tmp_path / "out"), StorageAccess()) == [final]
