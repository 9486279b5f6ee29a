"""The iterate report: its figures, and the markdown with the metrics plot for the artifact and the folder."""

from __future__ import annotations

import base64

from tasks.engine.ledger import LedgerEntry
from tasks.engine.models import JobSettings
from tasks.gpu.devices import gpu_class_of
from tasks.iterations.job import IterationRun
from tasks.iterations.models import IterateReport
from tasks.iterations.parameters import IterateJob
from tasks.iterations.plot import PLOT_NAME

REPORT_NAME = "report.md"


def iterate_report(request: IterateJob, settings: JobSettings, run: IterationRun, spent: LedgerEntry) -> IterateReport:
    """The run's report; `manifest_sha256` is the sha256 of `metrics.jsonl` (what the job produced)."""
    return IterateReport(
        job=request.job, failed=[], seconds=round(spent.seconds, 3), manifest_sha256=run.metrics_sha256,
        device=settings.device, gpu_class="cpu" if settings.device == "cpu" else gpu_class_of(settings.device),
        compute_units=spent.compute_units, stopped_reason=run.stopped_reason, iterations_total=request.iterations,
        iterations_done=run.loop.iterations_done, resumed_from=run.resumed_from,
        checkpoints_written=len(run.checkpoints_written), final_state_sha256=run.final_state_sha256,
        best=run.loop.best, metrics_path=run.metrics_path, warnings=run.warnings,
    )


def report_markdown(report: IterateReport, image: str) -> str:
    """The report as markdown, the plot shown from `image` (a file name, or a data URI for the artifact)."""
    best = f"{report.best.metric} = {report.best.value:.6g} at iteration {report.best.iteration}" if report.best else "—"
    rows = [
        ("iterations", f"{report.iterations_done} of {report.iterations_total}"),
        ("stopped", report.stopped_reason or "—"),
        ("resumed from", "—" if report.resumed_from is None else str(report.resumed_from)),
        ("checkpoints written", str(report.checkpoints_written)),
        ("best", best),
        ("final state sha256", f"`{report.final_state_sha256}`"),
        ("seconds", f"{report.seconds:.1f}"),
        ("device", report.device),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    warnings = "".join(f"\n- {warning}" for warning in report.warnings)
    return (f"# {report.job}\n\n| | |\n|---|---|\n{table}\n\n![metrics by iteration]({image})\n"
            + (f"\n## Warnings\n{warnings}\n" if warnings else ""))


def artifact_markdown(report: IterateReport, plot: bytes) -> str:
    """The markdown for the Prefect artifact: the PNG inline, as the UI shows `data:image/` sources."""
    return report_markdown(report, "data:image/png;base64," + base64.b64encode(plot).decode("ascii"))


def folder_markdown(report: IterateReport) -> str:
    """`report.md` in the job folder, next to `metrics.png`."""
    return report_markdown(report, PLOT_NAME)
