"""Flow `iterate`: prepare -> record the job -> step with checkpoints -> ledger -> report -> callback. Wiring only."""

from __future__ import annotations

from prefect import flow

from tasks.engine.artifacts import publish_report
from tasks.engine.callback import send_callback
from tasks.engine.job_record import record_job_task
from tasks.engine.spend import load_budget_task, read_spend_task, record_spend_task
from tasks.iterations.models import IterateReport
from tasks.iterations.parameters import IterateJob
from tasks.iterations.report import iterate_report
from tasks.iterations.stages import (
    iterate_task,
    iteration_plan,
    prepare_iterate_task,
    publish_iterate_report_task,
)


@flow(name="iterate", log_prints=False)
def iterate(request: IterateJob) -> IterateReport:
    """Run an iterative program to `request.iterations`, resuming exactly from the job's last checkpoint."""
    settings = prepare_iterate_task(request)
    budget = load_budget_task(request.compute_budget)
    spent_before = read_spend_task(settings)
    record_job_task(settings, iteration_plan(request))
    run = iterate_task(request, settings, budget, spent_before)
    report = iterate_report(request, settings, run, record_spend_task(settings, budget, final=True))
    publish_report(report)
    publish_iterate_report_task(settings, report, run.metrics)
    if request.callback is not None:
        send_callback(request.callback, report, settings)
    return report


if __name__ == "__main__":
    example = IterateJob(job="sample-hill-climb", program="tasks.iterations.examples.hill_climb:HillClimb",
                         iterations=2000, checkpoint_every_iterations=500)
    print(iterate(example).model_dump_json(indent=2))
