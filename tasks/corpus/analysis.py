"""The corpus job's reduce step: each language's batch counts merged, then the report written.

The engine gathers every finished batch's counts file by language (tasks/engine/reduce.py);
they are merged in plan order, so the result is the same whether batches ran now or were loaded.
The report (report.json, report.md and four PNG plots) goes into the job folder, and a copy of
report.json into `<destination>/.colabflow/corpus-reports/<job>.json`, the index the next week's
job reads to find the report before it without listing every job folder.
"""

from __future__ import annotations

from functools import reduce
from typing import cast

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.corpus.comparison import compare, find_previous_report
from tasks.corpus.counting import PartialCounts, merge_counts
from tasks.corpus.languages import LanguageCode
from tasks.corpus.models import CorpusOptions, CorpusSummary, LanguageFigures
from tasks.corpus.plots import write_plots
from tasks.corpus.report import (
    CorpusReport,
    build_report,
    render_artifact_markdown,
    render_markdown,
)
from tasks.engine.artifacts import artifact_key
from tasks.engine.job_folder import JobFolder, job_folder
from tasks.engine.models import (
    BatchOutcome,
    ItemFailure,
    JobPlan,
    JobSettings,
    RunSummary,
)
from tasks.engine.reduce import outputs_by_group
from tasks.errors import CorruptOutputError
from tasks.storage.places import open_place
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient
from tasks.storage.stores import read_optional

REPORT_NAME = "report.json"
REPORT_INDEX = ".colabflow/corpus-reports"


def merged_counts(folder: JobFolder, plan: JobPlan, outcomes: list[BatchOutcome]) -> dict[LanguageCode, PartialCounts]:
    """Each language's counts: its batches' counts files merged in plan order."""
    merged: dict[LanguageCode, PartialCounts] = {}
    for language, keys in outputs_by_group(plan, outcomes).items():
        parts = []
        for key in keys:
            content = folder.read(key)
            if content is None:
                raise CorruptOutputError(f"{folder.uri(folder.key(key))} is gone since its batch was committed; "
                                         "run the job again with refresh_checkpoints")
            parts.append(PartialCounts.model_validate_json(content))
        merged[cast(LanguageCode, language)] = reduce(merge_counts, parts, PartialCounts())
    return merged


def previous_reports(settings: JobSettings, compare_with: str | None) -> dict[str, bytes]:
    """The reports to compare with: `compare_with`'s own report.json, else every report in the index."""
    place = open_place(settings.destination, settings.access)
    if compare_with is not None:
        found = read_optional(place.store, place.key(compare_with, REPORT_NAME))
        return {compare_with: found} if found is not None else {}
    index = place.key(REPORT_INDEX)
    reports = {}
    for info in place.store.list(index):
        if info.key.endswith(".json"):
            content = read_optional(place.store, info.key)
            if content is not None:
                reports[info.key.rpartition("/")[2].removesuffix(".json")] = content
    return reports


def write_report(settings: JobSettings, plan: JobPlan, outcomes: list[BatchOutcome], unassigned: list[ItemFailure],
                 run: RunSummary, compare_with: str | None) -> tuple[CorpusSummary, str]:
    """Merge, compute, compare, plot; write the report's files. Returns the summary and the artifact's markdown."""
    options = CorpusOptions.of(settings)
    folder = job_folder(settings)
    counts = merged_counts(folder, plan, outcomes)
    languages = [cast(LanguageCode, code) for code in options.languages]
    report = build_report(settings.job, languages, counts, unassigned, run.failed, run.batches_run, run.batches_reused,
                          top=options.top)
    plots = write_plots({code: counts.get(code, PartialCounts()) for code in languages}, report.languages)
    previous = find_previous_report(previous_reports(settings, compare_with), settings.job, compare_with)
    report = report.model_copy(update={"plots": list(plots), "comparison": compare(report, previous) if previous else None})
    for name, image in plots.items():
        folder.write(name, image)
    folder.write("report.md", render_markdown(report).encode())
    content = report.model_dump_json(indent=2).encode()
    folder.write(REPORT_NAME, content)
    place = open_place(settings.destination, settings.access)
    place.writable("destination").write_bytes(place.key(REPORT_INDEX, f"{settings.job}.json"), content)
    summary = CorpusSummary(
        **run.model_dump(include=set(CorpusSummary.model_fields) & set(run.model_fields)),
        documents_total=report.documents_total, documents_counted=run.items_done, documents_reused=run.items_reused,
        languages={code: LanguageFigures(documents=statistics.documents, tokens=statistics.tokens, types=statistics.types)
                   for code, statistics in report.languages.items()},
        unassigned=report.unassigned,
        report=folder.uri(folder.key(REPORT_NAME)),
    )
    return summary, render_artifact_markdown(report, plots)


@task(
    name="write-report", cache_policy=NO_CACHE, persist_result=False,
    retries=len(IO_RETRY_DELAYS), retry_delay_seconds=IO_RETRY_DELAYS, retry_condition_fn=retry_if_transient,
)
def write_report_task(settings: JobSettings, plan: JobPlan, outcomes: list[BatchOutcome], unassigned: list[ItemFailure],
                      run: RunSummary, compare_with: str | None) -> CorpusSummary:
    """The report, its plots and the summary; the report also as a markdown artifact with the plots inside."""
    summary, markdown = write_report(settings, plan, outcomes, unassigned, run, compare_with)
    create_markdown_artifact(markdown, key=artifact_key(settings.job) + "-analysis", description=f"{settings.job}: corpus report")
    return summary
