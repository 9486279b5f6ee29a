"""Prefect artifacts of a job: a progress bar while it runs, a table and a devices section when it ends."""

from __future__ import annotations

import time
from typing import cast
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from tasks.engine.models import JobReportBase, JobSettings
from tasks.engine.progress import JobProgress
from tasks.engine.telemetry import (
    read_telemetry,
    render_telemetry_markdown,
    summarize_telemetry,
)
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient


def artifact_key(job: str) -> str:
    """The key of a job's artifacts: lowercase letters, digits and dashes, as Prefect requires."""
    return "colabflow-" + "".join(c if c.isalnum() else "-" for c in job.lower())


class ProgressArtifact:
    """The job's progress bar, with items done, items/s and the time left in its description.

    Updates at most every `interval` seconds (and at the end), because each update is an API
    call that costs as much as a cached batch."""

    def __init__(self, job: str, progress: JobProgress, interval: float = 2.0) -> None:
        self.job = job
        self.progress = progress
        self.interval = interval
        self.last_update = time.monotonic()
        artifact_id = create_progress_artifact(
            progress=progress.percent(), key=artifact_key(job), description=f"{job}: {progress.describe()}"
        )
        self.artifact_id = cast(UUID, artifact_id)

    def update(self) -> None:
        """Show the progress so far, unless the last update is too recent and the job is not done."""
        now = time.monotonic()
        if len(self.progress.done) == self.progress.batches_total or now - self.last_update >= self.interval:
            update_progress_artifact(self.artifact_id, progress=self.progress.percent(),
                                     description=f"{self.job}: {self.progress.describe()}")
            self.last_update = now


def publish_report(report: JobReportBase) -> None:
    """Publish the job report as a table artifact (failures and source entries left out listed one per row)."""
    rows: list[dict[str, object]] = [
        {"field": name, "value": value}
        for name, value in report.model_dump(exclude={"failed", "skipped"}).items()
    ]
    rows.append({"field": "failed", "value": len(report.failed)})
    rows.extend({"field": f"failed: {failure.item_id}", "value": failure.reason} for failure in report.failed[:100])
    rows.append({"field": "skipped", "value": len(report.skipped)})
    rows.extend({"field": f"skipped: {entry.item_id}", "value": entry.reason} for entry in report.skipped[:100])
    create_table_artifact(rows, key=artifact_key(report.job) + "-report", description=f"{report.job}: job report")


@task(
    name="publish-telemetry", cache_policy=NO_CACHE, persist_result=False,
    retries=len(IO_RETRY_DELAYS), retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_if_transient,
)
def publish_telemetry_task(settings: JobSettings) -> None:
    """Publish peak memory, mean utilisation and MB/s per device, from `<job>/telemetry.jsonl`."""
    summary = summarize_telemetry(read_telemetry(settings.destination, settings.access, settings.job))
    create_markdown_artifact(
        render_telemetry_markdown(settings.job, summary), key=artifact_key(settings.job) + "-telemetry",
        description=f"{settings.job}: devices",
    )
