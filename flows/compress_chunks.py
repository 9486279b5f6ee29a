"""Flow `compress-chunks`: fetch -> compress -> upload -> manifest -> ledger -> callback. Wiring only."""

from __future__ import annotations

from prefect import flow
from prefect.logging import get_run_logger

from tasks.compression.kind import prepare_job_task, run_batch
from tasks.compression.models import BatchOutcome, JobReport
from tasks.compression.parameters import CompressJob
from tasks.engine.artifacts import (
    ProgressArtifact,
    publish_report,
    publish_telemetry_task,
)
from tasks.engine.callback import send_callback
from tasks.engine.job_record import quarantine_task, record_job_task
from tasks.engine.manifest import write_manifest_task
from tasks.engine.planning import plan_job_task
from tasks.engine.report import finished_recipes, summarize_job
from tasks.engine.spend import (
    SpendRecorder,
    load_budget_task,
    quota_stop,
    read_spend_task,
)
from tasks.engine.unwalked import unwalked


@flow(name="compress-chunks", log_prints=False)
def compress_chunks(request: CompressJob) -> JobReport:
    """Compress every chunk of `request.source` into standard gzip members, resumably.

    When the compute-unit quota would be passed, the run takes no more batches, writes the
    manifest of what finished and ends Completed with `stopped_reason` in its report.
    """
    settings = prepare_job_task(
        request.destination, request.job, request.codec, request.level, request.access, request.results
    )
    budget = load_budget_task(request.compute_budget)
    spent_before = read_spend_task(settings)
    plan = plan_job_task(request.source, request.batch_size, request.batch_bytes, settings, request.refresh_checkpoints)
    record_job_task(settings, unwalked(plan))
    progress = ProgressArtifact(request.job, len(plan.batches))
    spend = SpendRecorder(settings, budget)
    outcomes: list[BatchOutcome] = []
    stopped: str | None = None
    for index, batch in enumerate(plan.batches):
        stopped = quota_stop(budget, spent_before, outcomes, len(plan.batches) - index, settings.device)
        if stopped is not None:
            get_run_logger().warning("job %s: %s", request.job, stopped)
            break
        outcomes.append(run_batch(batch, settings, request.refresh_checkpoints, index))
        spend.after_batch(outcomes[-1])
        progress.advance(index + 1)
    manifest = write_manifest_task(settings, unwalked(finished_recipes(outcomes)))
    spent = spend.final()
    report = summarize_job(settings, plan, outcomes, manifest, spent.recorded_at, spent, stopped)
    quarantine_task(settings, unwalked(report.failed))
    publish_report(report)
    publish_telemetry_task(settings)
    if request.callback is not None:
        send_callback(request.callback, report, settings)
    return report


if __name__ == "__main__":
    print(compress_chunks(CompressJob(source=["tests/data/sample"], job="sample")).model_dump_json(indent=2))
