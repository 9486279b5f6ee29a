"""Flow `compress-chunks`: fetch -> compress -> upload -> manifest -> callback. Wiring only."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow
from prefect.client.schemas.objects import State

from tasks.artifacts import ProgressArtifact, publish_report
from tasks.attempts import abandoned_state
from tasks.callback import send_callback
from tasks.compress import prepare_job_task, run_batch
from tasks.fetch import plan_job_task
from tasks.job_record import quarantine_task, record_job_task
from tasks.manifest import write_manifest_task
from tasks.models import JobReport
from tasks.parameters import CompressJob
from tasks.report import finished_recipes, summarize_job
from tasks.unwalked import unwalked


@flow(name="compress-chunks", log_prints=False)
def compress_chunks(request: CompressJob) -> JobReport | State[None]:
    """Compress every chunk of `request.source` into standard gzip members, resumably."""
    abandoned = abandoned_state()
    if abandoned is not None:
        return abandoned
    settings = prepare_job_task(
        request.destination, request.job, request.codec, request.level, request.access, request.results
    )
    plan = plan_job_task(request.source, request.batch_size, request.batch_bytes, request.access)
    record_job_task(settings, unwalked(plan))
    progress = ProgressArtifact(request.job, len(plan.batches))
    outcomes = []
    for finished, batch in enumerate(plan.batches, start=1):
        outcomes.append(run_batch(batch, settings, request.refresh_checkpoints))
        progress.advance(finished)
    manifest = write_manifest_task(settings, unwalked(finished_recipes(outcomes)))
    report = summarize_job(settings, plan, outcomes, manifest, datetime.now(timezone.utc))
    quarantine_task(settings, unwalked(report.failed))
    publish_report(report)
    if request.callback is not None:
        send_callback(request.callback, report, settings)
    return report


if __name__ == "__main__":
    print(compress_chunks(CompressJob(source=["tests/data/sample"], job="sample")).model_dump_json(indent=2))
