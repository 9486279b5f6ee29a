"""Flow `analyze-corpus`: plan -> languages -> batches (count) -> manifest -> merge and report -> callback. Wiring only."""

from __future__ import annotations

from prefect import flow

from tasks.corpus.analysis import write_report_task
from tasks.corpus.assignment import assign_languages_task
from tasks.corpus.kind import prepare_corpus_task
from tasks.corpus.models import CorpusSummary
from tasks.corpus.parameters import AnalyzeJob
from tasks.engine.artifacts import publish_report, publish_telemetry_task
from tasks.engine.callback import send_callback
from tasks.engine.job_record import quarantine_task, record_job_task
from tasks.engine.manifest import finished_outputs, write_manifest_task
from tasks.engine.planning import plan_job_task
from tasks.engine.report import summarize_run
from tasks.engine.spend import SpendRecorder, load_budget_task, read_spend_task
from tasks.engine.task_units import run_batches
from tasks.engine.unwalked import unwalked


@flow(name="analyze-corpus", log_prints=False)
def analyze_corpus(request: AnalyzeJob) -> CorpusSummary:
    """Count every document of `request.sources` per language, merge, and write the report with its plots."""
    settings = prepare_corpus_task(request)
    spend = SpendRecorder(settings, load_budget_task(request.compute_budget))
    spent_before = read_spend_task(settings)
    listed = plan_job_task(request.sources, request.batch_size, request.batch_bytes, settings,
                           request.refresh_checkpoints, request.follow_symlinks)
    plan, unassigned = assign_languages_task(unwalked(listed), settings, request.batch_size, request.batch_bytes)
    record_job_task(settings, unwalked(plan))
    outcomes, stopped = run_batches(plan, settings, request.refresh_checkpoints, spend, spent_before, request.task_runs)
    manifest = write_manifest_task(settings, unwalked(finished_outputs(outcomes)))
    spent = spend.final()
    run = summarize_run(settings, plan, outcomes, manifest, spent.recorded_at, spent, stopped)
    summary = write_report_task(settings, unwalked(plan), unwalked(outcomes), unwalked(unassigned), run,
                                request.compare_with)
    quarantine_task(settings, unwalked(summary.failed))
    publish_report(summary)
    publish_telemetry_task(settings)
    if request.callback is not None:
        send_callback(request.callback, summary, settings)
    return summary


if __name__ == "__main__":
    print(analyze_corpus(AnalyzeJob(sources=["tests/data/corpus"], job="sample-corpus")).model_dump_json(indent=2))
