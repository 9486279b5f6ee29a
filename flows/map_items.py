"""Flow `map-items`: plan -> batches (call the function, write the batch's file) -> manifest -> ledger -> callback. Wiring only."""

from __future__ import annotations

from prefect import flow

from tasks.batch_map.kind import prepare_map_task
from tasks.batch_map.models import MapOptions, MapReport, map_report
from tasks.batch_map.parameters import MapJob
from tasks.engine.artifacts import publish_report, publish_telemetry_task
from tasks.engine.callback import send_callback
from tasks.engine.job_record import quarantine_task, record_job_task
from tasks.engine.manifest import finished_outputs, write_manifest_task
from tasks.engine.planning import plan_items_task
from tasks.engine.report import summarize_run
from tasks.engine.spend import SpendRecorder, load_budget_task, read_spend_task
from tasks.engine.task_units import run_batches
from tasks.engine.unwalked import unwalked

BATCH_BYTES = 2**62  # a map batch is closed by its item count alone


@flow(name="map-items", log_prints=False)
def map_items(request: MapJob) -> MapReport:
    """Call `request.function` on every item in batches, resumably; one output file per batch."""
    settings = prepare_map_task(request)
    spend = SpendRecorder(settings, load_budget_task(request.compute_budget))
    spent_before = read_spend_task(settings)
    plan = plan_items_task(request.items, request.id_field, request.batch_size, BATCH_BYTES, settings,
                           request.refresh_checkpoints, request.limit, request.follow_symlinks)
    record_job_task(settings, unwalked(plan))
    outcomes, stopped = run_batches(plan, settings, request.refresh_checkpoints, spend, spent_before, request.task_runs)
    manifest = write_manifest_task(settings, unwalked(finished_outputs(outcomes)))
    spent = spend.final()
    report = map_report(summarize_run(settings, plan, outcomes, manifest, spent.recorded_at, spent, stopped),
                        MapOptions.of(settings))
    quarantine_task(settings, unwalked(report.failed))
    publish_report(report)
    publish_telemetry_task(settings)
    if request.callback is not None:
        send_callback(request.callback, report, settings)
    return report


if __name__ == "__main__":
    example = MapJob(items="tests/data/sample", job="sample-map", function="tasks.batch_map.examples.text:measure")
    print(map_items(example).model_dump_json(indent=2))
