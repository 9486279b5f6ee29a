"""The batch-map kind's own models: its options (part of every checkpoint key), manifest line and report."""

from __future__ import annotations

from pydantic import Field

from tasks.batch_map.outputs import OutputFormat
from tasks.engine.models import Frozen, JobReportBase, JobSettings, RunSummary


class MapOptions(Frozen):
    """What makes a map job's outputs what they are: the function, its source and parameters, the format."""

    function: str
    function_sha256: str = Field(description="sha256 of the function's source file: editing it makes old results stale.")
    params: dict[str, str]
    output: OutputFormat
    precision: str
    device: str = Field(description="The device the function is given: 'cpu' or 'cuda'.")

    @classmethod
    def of(cls, settings: JobSettings) -> MapOptions:
        return cls.model_validate(settings.options)


class MapManifestEntry(Frozen):
    """One line of a map job's `manifest.jsonl`."""

    item_id: str
    batch: str = Field(description="The batch file that holds the item's result, below outputs/.")
    output: str
    output_sha256: str


class MapReport(JobReportBase):
    """What a map job did. The flow returns it and the callback carries it."""

    items_total: int
    items_done: int
    items_reused: int
    batches_total: int
    batches_run: int
    batches_reused: int
    output_format: str
    function: str
    function_sha256: str


def map_report(summary: RunSummary, options: MapOptions) -> MapReport:
    """The engine's count of a run, in the map kind's words."""
    return MapReport(
        **summary.model_dump(include=set(JobReportBase.model_fields)),
        items_total=summary.items_total, items_done=summary.items_done, items_reused=summary.items_reused,
        batches_total=summary.batches_total, batches_run=summary.batches_run,
        batches_reused=summary.batches_reused, output_format=options.output, function=options.function,
        function_sha256=options.function_sha256,
    )
