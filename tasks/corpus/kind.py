"""Corpus analysis as a job kind: each batch holds documents of one language and yields their counts.

The engine plans, batches, commits and reports; this module contributes what is the corpus's
own: the tokenisers' identity as part of every checkpoint key, counting a batch (each document
tokenised, counted with torch and merged into the batch's counts file), the manifest line, the
batch's figures and the verify check. A document's counts are also kept among the destination's
shared results (tasks/engine/shared_results.py), keyed by its content, its language and the
tokenisers, never the job: next week's job counts only the documents that changed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from functools import partial, reduce
from importlib.metadata import version
from typing import BinaryIO, cast

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field, JsonValue

from tasks.corpus.counting import PartialCounts, count_batch, merge_counts
from tasks.corpus.documents import SkippedDocument, text_pieces
from tasks.corpus.models import CorpusManifestEntry, CorpusOptions
from tasks.corpus.parameters import AnalyzeJob
from tasks.corpus.tokenizers import Tokenizer, tokenizer_for
from tasks.corpus.verify import check_corpus_folder
from tasks.engine.item_attempts import attempt_item, item_retry_policy
from tasks.engine.item_hashes import HashingReader
from tasks.engine.job_folder import (
    JobFolder,
    job_folder,
    normalize_location,
    open_job_folder,
)
from tasks.engine.kinds import BatchFigures, shared_file_figures
from tasks.engine.models import (
    BatchResult,
    ItemFailure,
    ItemFingerprint,
    ItemOutput,
    JobSettings,
)
from tasks.engine.shared_results import SharedResults, shared_key
from tasks.engine.sources import open_chunk
from tasks.engine.verify import JobCheck
from tasks.errors import ChunkChangedError, InvalidParameterError
from tasks.storage.stores import StorageAccess

KIND_NAME = "corpus"
COUNTS_FORMAT = "corpus-counts-1"
COUNTS_DIR = "counts"
TOKENIZER_LIBRARIES = ("regex", "jieba", "indic-transliteration")


class DocumentCounts(BaseModel):
    """A document's shared record: its counts, or why it cannot be counted."""

    counts: PartialCounts | None = None
    skipped: str | None = None
    reused: bool = Field(default=False, exclude=True, description="Read from the shared results, not counted now.")


def counting_identity() -> list[str]:
    """The counts' format and the versions of the libraries that tokenise: a new one recounts."""
    return [COUNTS_FORMAT, *(f"{name} {version(name)}" for name in TOKENIZER_LIBRARIES)]


def resolve_device(choice: str) -> str:
    """'cuda' or 'cpu' for the device asked for; CUDA asked for where torch sees none is refused."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("device 'cuda' cannot count here: torch sees no CUDA GPU; use --device auto or cpu")
    return "cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu"


def prepare_corpus(request: AnalyzeJob, job: str) -> JobSettings:
    """Choose the device and prove the destination writable, before any work."""
    device = resolve_device(request.device)
    options = CorpusOptions(
        languages=request.languages, language_from=request.language_from, script_languages=request.script_languages,
        top=request.top, counting=counting_identity(), device=device,
    )
    open_job_folder(request.destination, job, request.access).prepare()
    if request.results is not None:
        open_job_folder(request.results, job, request.access).prepare()
    return JobSettings(
        kind=KIND_NAME, options=options.model_dump(), destination=normalize_location(request.destination),
        results=normalize_location(request.results or request.destination), access=request.access, job=job,
        device=device, started_at=datetime.now(timezone.utc),
    )


@task(name="prepare-corpus", cache_policy=NO_CACHE, persist_result=False)
def prepare_corpus_task(request: AnalyzeJob) -> JobSettings:
    """Name the job (from the run's scheduled date unless given), choose the device, check the destination."""
    return prepare_corpus(request, request.job or scheduled_job_name(flow_run.scheduled_start_time))


def scheduled_job_name(scheduled: datetime | None) -> str:
    """`corpus-YYYY-MM-DD` from a run's scheduled date (UTC), so each week's job has its own folder."""
    return f"corpus-{(scheduled or datetime.now(timezone.utc)).astimezone(timezone.utc):%Y-%m-%d}"


def count_document(item: ItemFingerprint, tokenizer: Tokenizer, device: str, access: StorageAccess) -> PartialCounts:
    """A document's counts, read and counted piece by piece (SkippedDocument for binary or non-UTF-8 bytes).

    The bytes counted must be those the plan hashed: the counts are shared under that hash.
    """
    counts: PartialCounts | None = None
    with open_chunk(item.uri, access) as stream:
        hashing = HashingReader(stream)
        for piece in text_pieces(cast(BinaryIO, hashing), item.item_id):
            counted = count_batch([[tokenizer.words(sentence) for sentence in tokenizer.sentences(piece)]], device)
            counts = counted if counts is None else merge_counts(counts, counted)  # most documents are one piece
    if hashing.digest.hexdigest() != item.sha256:
        raise ChunkChangedError(f"document {item.item_id!r} changed while the job ran; rerun the job once it is stable")
    return (counts or PartialCounts()).model_copy(update={"documents": 1})


def document_counts(item: ItemFingerprint, language: str, options: CorpusOptions, shared: SharedResults,
                    access: StorageAccess) -> DocumentCounts:
    """The document's counts from the shared results (`reused`), else counted now and shared.

    A document that is not text is remembered as such too, and raises SkippedDocument each time.
    """
    key = shared_key(*options.counting, language, item.sha256)
    stored = shared.read(key)
    if stored is not None:
        record = DocumentCounts.model_validate_json(stored)
        if record.skipped is not None:
            raise SkippedDocument(record.skipped)
        return record.model_copy(update={"reused": True})
    try:
        found = DocumentCounts(counts=count_document(item, tokenizer_for(language), options.device, access))
    except SkippedDocument as skipped:
        shared.write(key, DocumentCounts(skipped=str(skipped)).model_dump_json(exclude_none=True).encode())
        raise
    shared.write(key, found.model_dump_json(exclude_none=True).encode())
    return found


def counts_file_name(language: str, batch: list[ItemFingerprint]) -> str:
    """A batch's counts file below the job folder, named by its items and their contents."""
    content = "\n".join(f"{item.item_id}\0{item.sha256}" for item in batch)
    return f"{COUNTS_DIR}/{language}/batch-{hashlib.sha256(content.encode()).hexdigest()[:24]}.json"


def count_corpus_batch(batch: list[ItemFingerprint], settings: JobSettings) -> BatchResult:
    """Count a batch of one language's documents and write the batch's merged counts."""
    options = CorpusOptions.of(settings)
    language = batch[0].group or ""
    shared = SharedResults(settings.destination, settings.access, KIND_NAME)
    policy = item_retry_policy()
    found = [(item, attempt_item(item.item_id, partial(document_counts, item, language, options, shared, settings.access),
                                 policy)) for item in batch]
    failures = [record for _, record in found if isinstance(record, ItemFailure)]
    done = [(item, record) for item, record in found if isinstance(record, DocumentCounts)]
    if not done:
        return BatchResult(outputs=[], failures=failures)
    merged = reduce(merge_counts, [record.counts for _, record in done if record.counts is not None], PartialCounts())
    content = merged.model_dump_json().encode()
    name = counts_file_name(language, [item for item, _ in done])
    job_folder(settings).write(name, content)
    digest, created_at = hashlib.sha256(content).hexdigest(), datetime.now(timezone.utc)
    return BatchResult(
        outputs=[
            ItemOutput(item_id=item.item_id, input_sha256=item.sha256, input_size=item.size, output=name,
                       output_size=len(content), output_sha256=digest, created_at=created_at,
                       details={"language": language})
            for item, _ in done
        ],
        failures=failures,
        found_at_destination=[item.item_id for item, record in done if record.reused],
    )


class CorpusKind:
    """The corpus-analysis job kind, as the engine sees it (tasks/engine/kinds.py)."""

    name = KIND_NAME

    def identity(self, settings: JobSettings) -> list[JsonValue]:
        options = CorpusOptions.of(settings)
        scripts: list[JsonValue] = [[script, code] for script, code in sorted(options.script_languages.items())]
        return [*options.counting, options.language_from, scripts]

    def run_batch(self, batch: list[ItemFingerprint], settings: JobSettings) -> BatchResult:
        return count_corpus_batch(batch, settings)

    def find_finished(self, item: ItemFingerprint, settings: JobSettings) -> ItemOutput | None:
        return None

    def manifest_entry(self, output: ItemOutput) -> BaseModel:
        return CorpusManifestEntry(item_id=output.item_id, language=str(output.details["language"]), output=output.output,
                                   output_sha256=output.output_sha256)

    def batch_figures(self, outputs: list[ItemOutput]) -> BatchFigures:
        return shared_file_figures(outputs)

    def verify(self, folder: JobFolder, access: StorageAccess) -> JobCheck:
        return check_corpus_folder(folder)


JOB_KIND = CorpusKind()
