"""Flow `compress-chunks`: plan -> batches (fetch, compress, upload) -> manifest -> ledger -> callback. Wiring only."""

from __future__ import annotations

from prefect import flow

from tasks.compression.kind import prepare_job_task
from tasks.compression.models import JobReport, compression_report
from tasks.compression.parameters import CompressJob
from tasks.engine.artifacts import publish_report, publish_telemetry_task
from tasks.engine.callback import send_callback
from tasks.engine.job_record import quarantine_task, record_job_task
from tasks.engine.manifest import finished_outputs, write_manifest_task
from tasks.engine.planning import plan_job_task
from tasks.engine.report import summarize_run
from tasks.engine.spend import SpendRecorder, load_budget_task, read_spend_task
from tasks.engine.task_units import run_batches
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
    spend = SpendRecorder(settings, load_budget_task(request.compute_budget))
    spent_before = read_spend_task(settings)
    plan = plan_job_task(request.source, request.batch_size, request.batch_bytes, settings, request.refresh_checkpoints,
                         request.follow_symlinks)
    record_job_task(settings, unwalked(plan))
    outcomes, stopped = run_batches(plan, settings, request.refresh_checkpoints, spend, spent_before, request.task_runs)
    manifest = write_manifest_task(settings, unwalked(finished_outputs(outcomes)))
    spent = spend.final()
    report = compression_report(summarize_run(settings, plan, outcomes, manifest, spent.recorded_at, spent, stopped))
    quarantine_task(settings, unwalked(report.failed))
    publish_report(report)
    publish_telemetry_task(settings)
    if request.callback is not None:
        send_callback(request.callback, report, settings)
    return report


if __name__ == "__main__":
    print(compress_chunks(CompressJob(source=["tests/data/sample"], job="sample")).model_dump_json(indent=2))
