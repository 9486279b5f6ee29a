"""The iterate flow's tasks: prepare (before any work), run the loop, publish the report.

The loop runs in one task, since a step may take 100 microseconds and a task run costs
milliseconds; its checkpoints, not Prefect's results, are what a resumed run loads. A transient
storage error fails the task and its retry resumes from the checkpoint in force.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from blocks.compute_budget import ComputeBudget
from tasks.engine.artifacts import artifact_key
from tasks.engine.job_folder import job_folder, normalize_location, open_job_folder
from tasks.engine.ledger import estimate_units, projected_over_quota
from tasks.engine.models import JobPlan, JobSettings
from tasks.engine.spend import device_class, record_spend_task, runtime_device
from tasks.gpu.devices import detect_gpu_name
from tasks.iterations.drain import StopRequests, stop_requests
from tasks.iterations.job import IterationRun, identity_of, run_iterations
from tasks.iterations.kind import KIND_NAME
from tasks.iterations.metrics_file import parse_metrics
from tasks.iterations.models import IterateReport, StopReason
from tasks.iterations.parameters import IterateJob
from tasks.iterations.plot import PLOT_NAME, metrics_plot
from tasks.iterations.program import load_program_class
from tasks.iterations.progress import IterationProgress
from tasks.iterations.report import REPORT_NAME, artifact_markdown, folder_markdown
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient

QUOTA_CHECK_SECONDS = 30.0


def prepare_iterate(request: IterateJob) -> JobSettings:
    """Refuse a program that may not run here or breaks the contract, and an unwritable destination."""
    load_program_class(request.program)
    open_job_folder(request.destination, request.job, request.access).prepare()
    destination = normalize_location(request.destination)
    return JobSettings(kind=KIND_NAME, options=identity_of(request), destination=destination, results=destination,
                       access=request.access, job=request.job, device=detect_gpu_name() or "cpu",
                       started_at=datetime.now(timezone.utc))


@task(name="prepare-iterate", cache_policy=NO_CACHE, persist_result=False)
def prepare_iterate_task(request: IterateJob) -> JobSettings:
    """Fail fast, before any step, on a program or destination that cannot work."""
    return prepare_iterate(request)


def iteration_plan(request: IterateJob) -> JobPlan:
    """The job record's plan: the iterations asked for, as its items."""
    return JobPlan(batches=[], failures=[], items_total=request.iterations, items_read=0)


class StopChecks:
    """Why the loop should stop now: a drain or Ctrl-C, or the compute-unit quota (checked twice a minute)."""

    def __init__(self, settings: JobSettings, budget: ComputeBudget, spent_before: float,
                 requests: StopRequests) -> None:
        self.settings, self.budget, self.spent_before, self.requests = settings, budget, spent_before, requests
        self.started = self.checked_at = time.monotonic()
        self.gpu_class = device_class(runtime_device(settings.device))

    def __call__(self) -> StopReason | None:
        if self.requests.received is not None:
            return "drain"
        now = time.monotonic()
        if self.budget.quota_units is None or now - self.checked_at < QUOTA_CHECK_SECONDS:
            return None
        self.checked_at = now
        spent = self.spent_before + estimate_units(self.gpu_class, now - self.started, self.budget)
        over = projected_over_quota(spent, [QUOTA_CHECK_SECONDS], 1, self.budget, self.gpu_class)
        if over is None:
            return None
        get_run_logger().warning("%s: %s", self.settings.job, over)
        return "quota"


class LedgerUpdates:
    """Keeps the attempt's ledger line current at checkpoints, at most twice a minute."""

    def __init__(self, settings: JobSettings, budget: ComputeBudget) -> None:
        self.settings, self.budget, self.written_at = settings, budget, float("-inf")

    def __call__(self) -> None:
        if time.monotonic() - self.written_at >= QUOTA_CHECK_SECONDS:
            record_spend_task.fn(self.settings, self.budget)
            self.written_at = time.monotonic()


@task(name="iterate", cache_policy=NO_CACHE, persist_result=False, retries=len(IO_RETRY_DELAYS),
      retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_if_transient)
def iterate_task(request: IterateJob, settings: JobSettings, budget: ComputeBudget, spent_before: float) -> IterationRun:
    """Step the program to the end or a stop. A drain under a worker checkpoints, then has the run rescheduled."""
    logger = get_run_logger()
    folder = job_folder(settings)
    with stop_requests() as requests:
        if not requests.installed:
            logger.warning("not on the main thread: a drain will not checkpoint first")
        observer = IterationProgress(request.job, request.iterations, logger, LedgerUpdates(settings, budget))
        run = run_iterations(request, folder, StopChecks(settings, budget, spent_before, requests), observer,
                             logger.warning)
        observer.show()
        if run.stopped_reason == "drain":
            logger.info("%s: stopped by %s at iteration %d, checkpoint durable", request.job,
                        requests.received.name if requests.received else "a signal", run.loop.iterations_done)
            requests.hand_over()
    return run


@task(name="publish-iterate-report", cache_policy=NO_CACHE, persist_result=False, retries=len(IO_RETRY_DELAYS),
      retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_if_transient)
def publish_iterate_report_task(settings: JobSettings, report: IterateReport, metrics: bytes) -> None:
    """Write `metrics.png` and `report.md` next to the checkpoints, and the same as a markdown artifact."""
    plot = metrics_plot(report.job, parse_metrics(metrics))
    folder = job_folder(settings)
    folder.write(PLOT_NAME, plot)
    folder.write(REPORT_NAME, folder_markdown(report).encode())
    create_markdown_artifact(artifact_markdown(report, plot), key=artifact_key(report.job) + "-metrics",
                             description=f"{report.job}: metrics by iteration")
