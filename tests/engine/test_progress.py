"""A job's progress: items done, this attempt's rate and the time left, each batch counted once."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter, LogFilterFlowRunId

from flows.map_items import map_items
from tasks.batch_map.parameters import MapJob
from tests.servers import wait_until
from tasks.engine.models import BatchOutcome, BatchResult, ItemOutput
from tasks.engine.progress import JobProgress, duration_text

DIGEST = "0" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outcome(items: int, from_checkpoint: bool = False) -> BatchOutcome:
    outputs = [ItemOutput(item_id=f"item-{index}", input_sha256=DIGEST, input_size=1, output="out", output_size=1,
                          output_sha256=DIGEST, created_at=datetime.now(timezone.utc)) for index in range(items)]
    return BatchOutcome(item_ids=[output.item_id for output in outputs], result=BatchResult(outputs=outputs),
                        from_checkpoint=from_checkpoint)


def test_the_rate_counts_only_what_this_attempt_computed() -> None:
    """Two batches loaded from done markers, then two computed in 10 s: 1.6 items/s, 6 items left, about 4 s."""
    clock = Clock()
    progress = JobProgress(items_total=38, batches_total=5, clock=clock)
    progress.record(0, outcome(8, from_checkpoint=True))
    progress.record(1, outcome(8, from_checkpoint=True))
    clock.now += 10
    progress.record(2, outcome(8))
    progress.record(3, outcome(8))
    assert progress.items_per_second() == 1.6
    assert progress.seconds_left() == 6 / 1.6
    assert progress.percent() == 80.0
    assert progress.describe() == "32 of 38 items, 1.6 items/s, about 4 s left"


def test_a_batch_reported_twice_counts_once() -> None:
    """The unit reports a batch as it ends and the flow again when the unit returns."""
    progress = JobProgress(items_total=8, batches_total=1, clock=Clock())
    assert progress.record(0, outcome(8)) is True
    assert progress.record(0, outcome(8)) is False
    assert progress.items_done == 8


def test_before_anything_is_computed_there_is_no_rate_and_no_eta() -> None:
    progress = JobProgress(items_total=8, batches_total=1, clock=Clock())
    progress.record(0, outcome(8, from_checkpoint=True))
    assert progress.describe() == "8 of 8 items"


def test_time_left_reads_in_seconds_minutes_or_hours() -> None:
    assert [duration_text(seconds) for seconds in (42, 1020, 122_400)] == ["42 s", "17 min", "34.0 h"]


@pytest.mark.usefixtures("prefect_api")
def test_a_run_logs_one_line_per_batch_and_its_progress_bar_shows_items_and_rate(tmp_path: Path) -> None:
    """12 records in batches of 4: three batch lines in the run's log; the bar ends at 100 % with 12 of 12 items."""
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"r{index}", "text": "a b"}) + "\n" for index in range(12)))
    request = MapJob(items=str(items), destination=str(tmp_path / "out"), job="progress-job",
                     function="tasks.batch_map.examples.text:measure", batch_size=4, device="cpu")
    state = map_items(request, return_state=True)
    with get_client(sync_client=True) as client:

        def batch_lines() -> list[str] | None:  # logs reach the server in the background
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
            lines = sorted(log.message for log in logs if log.message.startswith("batch "))
            return lines if len(lines) >= 3 else None

        lines = wait_until(batch_lines, 30, 0.2, "the batch lines to reach the server")
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["colabflow-progress-job"])))
    assert [line.split(":")[0] for line in lines] == ["batch 1 of 3", "batch 2 of 3", "batch 3 of 3"]
    assert all("items/s, about" in line for line in lines)
    assert artifact.data == 100.0
    assert artifact.description is not None and artifact.description.startswith("progress-job: 12 of 12 items, ")
