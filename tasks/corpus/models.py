"""The corpus kind's own models: its options (part of every checkpoint key), manifest line and summary."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tasks.engine.models import Frozen, ItemFailure, JobReportBase, JobSettings


class CorpusOptions(Frozen):
    """What makes a corpus job's counts what they are: the languages, how a document gets one, the tokenisers."""

    languages: list[str]
    language_from: str
    script_languages: dict[str, str]
    top: int
    counting: list[str] = Field(description="The counts' format and the tokeniser libraries' versions.")
    device: str = Field(description="Where counting runs: 'cpu' or 'cuda'.")

    @classmethod
    def of(cls, settings: JobSettings) -> CorpusOptions:
        return cls.model_validate(settings.options)


class CorpusManifestEntry(Frozen):
    """One line of a corpus job's `manifest.jsonl`: a document, its language and the batch counts holding it."""

    item_id: str
    language: str
    output: str = Field(description="The batch's counts file, below the job folder.")
    output_sha256: str


class LanguageFigures(BaseModel):
    """A language's headline figures in the command's summary."""

    documents: int
    tokens: int
    types: int


class CorpusSummary(JobReportBase):
    """What an analysis did: the flow returns it, `--json` prints it and the callback carries it."""

    documents_total: int
    documents_counted: int = Field(description="Documents tokenised and counted in this run.")
    documents_reused: int = Field(
        description="Documents whose counts an earlier run had kept (any week's job: they are keyed by content)."
    )
    languages: dict[str, LanguageFigures]
    unassigned: list[ItemFailure] = Field(description="Documents no language could be given, with the reason.")
    batches_total: int
    batches_run: int
    batches_reused: int
    report: str = Field(description="The path or URI of report.json.")
