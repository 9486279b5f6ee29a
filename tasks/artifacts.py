"""Prefect artifacts of a job: a progress bar while it runs and a table when it ends."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from tasks.models import JobReport


def _artifact_key(job: str) -> str:
    return "colabflow-" + "".join(c if c.isalnum() else "-" for c in job.lower())


def start_progress(job: str, batches: int) -> UUID:
    """Create the job's progress artifact at 0 %."""
    artifact_id = create_progress_artifact(
        progress=0.0 if batches else 100.0, key=_artifact_key(job), description=f"{job}: batches finished"
    )
    return cast(UUID, artifact_id)


def advance_progress(artifact_id: UUID, finished: int, batches: int) -> None:
    """Move the progress artifact to `finished` of `batches`."""
    update_progress_artifact(artifact_id, progress=100.0 * finished / batches)


def publish_report(report: JobReport) -> None:
    """Publish the job report as a table artifact (failures listed one per row)."""
    rows: list[dict[str, object]] = [
        {"field": name, "value": value}
        for name, value in report.model_dump(exclude={"failed"}).items()
    ]
    rows.append({"field": "failed", "value": len(report.failed)})
    rows.extend({"field": f"failed: {failure.chunk_id}", "value": failure.reason} for failure in report.failed[:100])
    create_table_artifact(rows, key=_artifact_key(report.job) + "-report", description=f"{report.job}: job report")
