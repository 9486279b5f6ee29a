"""Compression as a job kind: each chunk becomes a standard gzip member and its recipe.

The engine plans, batches, commits and reports; this module contributes what is compression's
own: the codec as the identity of every checkpoint key, compressing a batch (on every core, or
on the GPU in one call), finding a chunk whose member and recipe are already in the job folder,
the manifest line, the batch's figures and the verify check.

Every error of one chunk is that chunk's: it is retried on its own when it may pass, then becomes
an ItemFailure, and the rest of the batch completes. How one chunk is compressed (in memory,
streamed, or with its batch) is in tasks/compression/chunk_codec.py.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import lru_cache, partial

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, JsonValue

from tasks.compression.chunk_codec import (
    STREAM_THRESHOLD,
    Pending,
    compress_and_store,
    compress_together,
    read_verified,
)
from tasks.compression.codecs import Codec, CodecChoice, resolve_codec
from tasks.compression.models import (
    CodecOptions,
    ManifestEntry,
    Recipe,
    recipe_of,
    recipe_output,
)
from tasks.compression.on_cores import BatchOnCores, StartedAhead, hand_to_cores
from tasks.compression.outputs import (
    Outcome,
    RecipeIndex,
    finished_recipe,
    load_recipe_index,
    member_name,
    put_member,
    read_journal,
    write_journal,
)
from tasks.compression.restore import check_folder
from tasks.engine.cores import worth_spreading
from tasks.engine.item_attempts import attempt_item, io_thread_count, item_retry_policy
from tasks.engine.job_folder import (
    JobFolder,
    job_folder,
    normalize_location,
    open_job_folder,
)
from tasks.engine.kinds import BatchFigures
from tasks.engine.models import (
    BatchResult,
    ItemFailure,
    ItemFingerprint,
    ItemOutput,
    JobSettings,
)
from tasks.engine.verify import JobCheck
from tasks.errors import CoreWorkerError
from tasks.gpu.oom_backoff import BatchSizeMemory
from tasks.storage.local import LocalStore
from tasks.storage.locations import is_local
from tasks.storage.places import open_place
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import StorageAccess

KIND_NAME = "compression"

logger = logging.getLogger("colabflow.compression")


def prepare_job(
    destination: str, job: str, codec_choice: CodecChoice, level: int,
    access: StorageAccess = StorageAccess(), results: str | None = None,
) -> JobSettings:
    """Choose the codec and prove the destination (and result storage) writable, before any work."""
    codec = resolve_codec(codec_choice, level)
    open_job_folder(destination, job, access).prepare()
    if results is not None:
        open_job_folder(results, job, access).prepare()
    options = CodecOptions(codec_choice=codec_choice, codec=codec.name, codec_version=codec.version, level=level)
    return JobSettings(
        kind=KIND_NAME, options=options.model_dump(), destination=normalize_location(destination),
        results=normalize_location(results or destination), access=access, job=job, device=codec.device,
        started_at=datetime.now(timezone.utc),
    )


@task(name="prepare-job", cache_policy=NO_CACHE, persist_result=False)
def prepare_job_task(
    destination: str, job: str, codec_choice: CodecChoice, level: int, access: StorageAccess, results: str | None,
) -> JobSettings:
    """Fail fast on a codec, destination or result storage that cannot work."""
    return prepare_job(destination, job, codec_choice, level, access, results)


def batch_codec(settings: JobSettings) -> Codec:
    """The job's codec; a GPU codec remembers its out-of-memory backoff on result storage.

    A CPU job skips that memory, so it neither builds nor touches anything for it.
    """
    options = CodecOptions.of(settings)
    if options.codec_choice == "cpu":
        return resolve_codec("cpu", options.level)
    memory = BatchSizeMemory(open_place(settings.results, settings.access))
    return resolve_codec(options.codec_choice, options.level, batch_sizes=memory)


def compress_batch(batch: list[ItemFingerprint], settings: JobSettings) -> BatchResult:
    """Fetch, compress and upload a batch. A chunk that keeps failing becomes a failure; the rest complete.

    A batch the cores took ahead (`CompressionKind.read_ahead`) is collected from them; when a
    worker died meanwhile, the batch is compressed again now, by new workers.
    """
    folder = job_folder(settings)
    ahead = STARTED_AHEAD.take(batch, settings)
    if ahead is not None:
        try:
            return batch_result(folder, batch, ahead.outcomes())
        except CoreWorkerError as error:
            logger.warning("compressing the batch again: %s", error)
    return compress_batch_with(batch, settings, batch_codec(settings), folder)


def compress_batch_with(
    batch: list[ItemFingerprint], settings: JobSettings, codec: Codec, folder: JobFolder,
    policy: RetryPolicy | None = None,
) -> BatchResult:
    """`compress_batch` with its codec, job folder and per-chunk retry policy given.

    A batch of local chunks for a CPU codec into a local folder is shared among worker processes,
    one per core (tasks/engine/cores.py). Otherwise each chunk gets a thread, which hides a
    remote store's latency, and a GPU codec gets every in-memory chunk of the batch in one call,
    so the GPU sees a batch, not one chunk at a time.
    """
    chunk_policy = policy or item_retry_policy()
    index = batch_recipes(folder, settings, batch)
    if spreads_on_cores(batch, codec, folder):
        outcomes = hand_to_cores(batch, codec, folder, index, settings.access, chunk_policy).outcomes()
    else:
        outcomes = compress_in_threads(batch, codec, folder, index, settings.access, chunk_policy)
    return batch_result(folder, batch, outcomes)


def batch_result(folder: JobFolder, batch: list[ItemFingerprint], outcomes: list[Outcome]) -> BatchResult:
    """Write the journal of the batch's finished chunks, which marks them done, and describe the batch."""
    write_journal(folder, batch, [item[0] for item in outcomes if isinstance(item, tuple)])
    return BatchResult(
        outputs=[recipe_output(item[0], member_name(item[0].chunk_id)) for item in outcomes if isinstance(item, tuple)],
        failures=[item for item in outcomes if isinstance(item, ItemFailure)],
        found_at_destination=[item[0].chunk_id for item in outcomes if isinstance(item, tuple) and item[1]],
    )


def spreads_on_cores(batch: list[ItemFingerprint], codec: Codec, folder: JobFolder) -> bool:
    """Whether the batch goes to worker processes: CPU work on local files, enough of it to pay."""
    return (
        codec.device == "cpu" and isinstance(folder.store, LocalStore) and worth_spreading(len(batch))
        and all(is_local(chunk.uri) for chunk in batch)
    )


def start_ahead(settings: JobSettings, batch: list[ItemFingerprint]) -> BatchOnCores | None:
    """Hand a coming batch to the cores when it is one they would compress; None otherwise."""
    codec, folder = batch_codec(settings), job_folder(settings)
    if not spreads_on_cores(batch, codec, folder):
        return None
    index = batch_recipes(folder, settings, batch)
    try:
        return hand_to_cores(batch, codec, folder, index, settings.access, item_retry_policy())
    except CoreWorkerError as error:
        logger.warning("not compressing ahead, the batch runs in its turn: %s", error)
        return None


def compress_in_threads(
    batch: list[ItemFingerprint], codec: Codec, folder: JobFolder, index: RecipeIndex, access: StorageAccess,
    policy: RetryPolicy,
) -> list[Outcome]:
    """Each chunk in a thread; a GPU codec compresses the batch's in-memory chunks in one call."""
    together = codec.device != "cpu"
    output = (codec.name, codec.version, codec.level)

    def work(chunk: ItemFingerprint) -> tuple[Recipe, bool] | Pending:
        existing = finished_recipe(index, folder, chunk, output)
        if existing is not None:
            return existing, True
        if together and chunk.size <= STREAM_THRESHOLD:
            return Pending(chunk, read_verified(chunk, access))
        return compress_and_store(chunk, codec, folder, access), False

    def process(chunk: ItemFingerprint) -> Outcome | Pending:
        return attempt_item(chunk.item_id, lambda: work(chunk), policy)

    def store(compressed: tuple[bytes, Recipe]) -> Outcome:
        member, recipe = compressed

        def put() -> tuple[Recipe, bool]:
            put_member(folder, recipe.chunk_id, member)
            return recipe, False

        return attempt_item(recipe.chunk_id, put, policy)

    with ThreadPoolExecutor(min(io_thread_count(), len(batch))) as pool:
        outcomes = list(pool.map(process, batch))
        pending = [item for item in outcomes if isinstance(item, Pending)]
        if pending:
            stored = iter(list(pool.map(store, compress_together(pending, codec))))
            outcomes = [next(stored) if isinstance(item, Pending) else item for item in outcomes]
    return [item for item in outcomes if not isinstance(item, Pending)]


class CompressionKind:
    """The compression job kind, as the engine sees it (tasks/engine/kinds.py)."""

    name = KIND_NAME

    def identity(self, settings: JobSettings) -> list[JsonValue]:
        options = CodecOptions.of(settings)
        return [options.codec, options.codec_version, options.level]

    def run_batch(self, batch: list[ItemFingerprint], settings: JobSettings) -> BatchResult:
        return compress_batch(batch, settings)

    def read_ahead(self, batches: list[list[ItemFingerprint]], settings: JobSettings) -> None:
        STARTED_AHEAD.keep(batches, settings, partial(start_ahead, settings))

    def find_finished(self, item: ItemFingerprint, settings: JobSettings) -> ItemOutput | None:
        options = CodecOptions.of(settings)
        folder = job_folder(settings)
        output = (options.codec, options.codec_version, options.level)
        recipe = finished_recipe(load_recipe_index(folder), folder, item, output)
        return None if recipe is None else recipe_output(recipe, member_name(recipe.chunk_id))

    def manifest_entry(self, output: ItemOutput) -> BaseModel:
        recipe = recipe_of(output)
        return ManifestEntry.model_validate(recipe.model_dump(include=set(ManifestEntry.model_fields)))

    def batch_figures(self, outputs: list[ItemOutput]) -> BatchFigures:
        return BatchFigures(
            items=len(outputs), bytes_in=sum(output.input_size for output in outputs),
            bytes_out=sum(output.output_size for output in outputs),
        )

    def verify(self, folder: JobFolder, access: StorageAccess) -> JobCheck:
        return check_folder(folder)


def batch_recipes(folder: JobFolder, settings: JobSettings, batch: list[ItemFingerprint]) -> RecipeIndex:
    """The recipes a batch may reuse: the run's index, with the batch's own journal looked up first."""
    return run_recipe_index(folder, settings.started_at).with_recipes(read_journal(folder, batch))


@lru_cache(maxsize=8)
def run_recipe_index(folder: JobFolder, started_at: datetime) -> RecipeIndex:
    """The recipes the folder held when a run started, read once per run.

    A run's own journals describe chunks no later batch of the run holds (ids are unique in a
    job); a batch run again reads its own journal (`read_journal`) over this.
    """
    return load_recipe_index(folder)


STARTED_AHEAD = StartedAhead()
JOB_KIND = CompressionKind()
