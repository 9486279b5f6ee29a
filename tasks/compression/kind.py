"""Compress stage: fetch, compress and upload every chunk of a batch, on every core.

The batch is the checkpoint unit. Its result (the recipes) is persisted under a content key,
so a rerun loads it instead of doing the work. Inside a batch, a chunk whose recipe is already
at the destination with the same sha256 is not compressed again, so a killed batch resumes
where it stopped.

Every error of one chunk is that chunk's: it is retried on its own when it may pass, then becomes
a ChunkFailure, and the rest of the batch completes. The batch task's retries cover what fails
the whole batch (the codec, the telemetry record). A checkpoint holding failures is run again on
the next run, so a rerun retries quarantined chunks.

How one chunk is compressed (in memory, streamed, or with its batch) is in tasks/compression/chunk_codec.py.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from types import ModuleType
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from tasks.compression.chunk_codec import (
    STREAM_THRESHOLD,
    Pending,
    compress_and_store,
    compress_together,
    read_verified,
)
from tasks.compression.codecs import Codec, CodecChoice, resolve_codec
from tasks.compression.models import BatchOutcome, BatchResult, BatchSettings, Recipe
from tasks.engine.checkpoints import (
    BATCH_RUN_PREFIX,
    batch_checkpoint_key,
    batch_run_name,
    checkpoint_storage,
)
from tasks.engine.item_attempts import (
    attempt_chunk,
    chunk_retry_policy,
    io_thread_count,
)
from tasks.engine.job_folder import Destination, normalize_location, open_destination
from tasks.engine.models import ChunkFailure, ChunkFingerprint
from tasks.engine.telemetry import batch_telemetry, record_batch_telemetry
from tasks.engine.unwalked import unwalked
from tasks.gpu.oom_backoff import BatchSizeMemory
from tasks.gpu.readings import read_device_telemetry
from tasks.storage.places import open_place
from tasks.storage.retries import IO_RETRY_DELAYS, RetryPolicy, retry_if_transient
from tasks.storage.stores import StorageAccess


def prepare_job(
    destination: str, job: str, codec_choice: CodecChoice, level: int,
    access: StorageAccess = StorageAccess(), results: str | None = None,
) -> BatchSettings:
    """Choose the codec and prove the destination (and result storage) writable, before any work."""
    codec = resolve_codec(codec_choice, level)
    open_destination(destination, access).prepare(job)
    if results is not None:
        open_destination(results, access).prepare(job)
    return BatchSettings(
        destination=normalize_location(destination),
        results=normalize_location(results or destination),
        access=access,
        job=job,
        codec_choice=codec_choice,
        codec=codec.name,
        codec_version=codec.version,
        level=level,
        device=codec.device,
        started_at=datetime.now(timezone.utc),
    )


def finished_recipe(
    destination: Destination, job: str, chunk: ChunkFingerprint, output: tuple[str, str, int]
) -> Recipe | None:
    """Return the chunk's recipe if the destination already holds this exact output.

    `output` is the codec name, codec version and level the recipe must name.
    """
    recipe = destination.read_recipe(job, chunk.chunk_id)
    if (
        recipe is None
        or recipe.original_sha256 != chunk.sha256
        or (recipe.codec, recipe.codec_version, recipe.level) != output
        or destination.chunk_size(job, chunk.chunk_id) != recipe.compressed_size
    ):
        return None
    return recipe


def batch_codec(settings: BatchSettings) -> Codec:
    """The job's codec; a GPU codec remembers its out-of-memory backoff on result storage.

    A CPU job skips that memory, so it neither builds nor touches anything for it.
    """
    if settings.codec_choice == "cpu":
        return resolve_codec("cpu", settings.level)
    memory = BatchSizeMemory(open_place(settings.results, settings.access))
    return resolve_codec(settings.codec_choice, settings.level, batch_sizes=memory)


def compress_batch(batch: list[ChunkFingerprint], settings: BatchSettings) -> BatchResult:
    """Fetch, compress and upload a batch. A chunk that keeps failing becomes a failure; the rest complete."""
    return compress_batch_with(batch, settings, batch_codec(settings), open_destination(settings.destination, settings.access))


def compress_batch_with(
    batch: list[ChunkFingerprint], settings: BatchSettings, codec: Codec, destination: Destination,
    policy: RetryPolicy | None = None,
) -> BatchResult:
    """`compress_batch` with its codec, destination and per-chunk retry policy given.

    A CPU codec compresses each chunk in its own thread. A GPU codec gets every in-memory chunk
    of the batch in one call, so the GPU sees a batch, not one chunk at a time.
    """
    together = codec.device != "cpu"
    chunk_policy = policy or chunk_retry_policy()
    output = (codec.name, codec.version, codec.level)

    def work(chunk: ChunkFingerprint) -> tuple[Recipe, bool] | Pending:
        existing = finished_recipe(destination, settings.job, chunk, output)
        if existing is not None:
            return existing, True
        if together and chunk.size <= STREAM_THRESHOLD:
            return Pending(chunk, read_verified(chunk, settings.access))
        return compress_and_store(chunk, codec, destination, settings.job, settings.access), False

    def process(chunk: ChunkFingerprint) -> tuple[Recipe, bool] | ChunkFailure | Pending:
        return attempt_chunk(chunk.chunk_id, lambda: work(chunk), chunk_policy)

    def store(compressed: tuple[bytes, Recipe]) -> tuple[Recipe, bool] | ChunkFailure:
        member, recipe = compressed

        def put() -> tuple[Recipe, bool]:
            destination.put_chunk(settings.job, recipe.chunk_id, member, recipe)
            return recipe, False

        return attempt_chunk(recipe.chunk_id, put, chunk_policy)

    with ThreadPoolExecutor(min(io_thread_count(), len(batch))) as pool:
        outcomes = list(pool.map(process, batch))
        pending = [item for item in outcomes if isinstance(item, Pending)]
        if pending:
            stored = iter(list(pool.map(store, compress_together(pending, codec))))
            outcomes = [next(stored) if isinstance(item, Pending) else item for item in outcomes]
    return BatchResult(
        recipes=[item[0] for item in outcomes if isinstance(item, tuple)],
        failures=[item for item in outcomes if isinstance(item, ChunkFailure)],
        found_at_destination=[item[0].chunk_id for item in outcomes if isinstance(item, tuple) and item[1]],
    )


def _without_gpu_modules(name: str) -> ModuleType:
    raise ImportError(f"{name} is not read for a job that runs on the CPU")


def record_telemetry(settings: BatchSettings, batch_index: int, result: BatchResult, seconds: float) -> None:
    """Append the device reading after a batch to `<job>/telemetry.jsonl` and emit its event.

    The batch's figures count the chunks it compressed, not those already at the destination.
    A CPU job reads the CPU host without importing torch, which would cost it seconds.
    """
    found = set(result.found_at_destination)
    done = [recipe for recipe in result.recipes if recipe.chunk_id not in found]
    reading = read_device_telemetry() if settings.device != "cpu" else read_device_telemetry(_without_gpu_modules)
    telemetry = batch_telemetry(
        reading, settings.job, batch_index, len(done),
        sum(recipe.original_size for recipe in done), sum(recipe.compressed_size for recipe in done), seconds,
    )
    record_batch_telemetry(settings.destination, settings.access, telemetry)


def _checkpoint_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return batch_checkpoint_key(parameters["batch"], parameters["settings"])


@task(
    name=BATCH_RUN_PREFIX,
    cache_key_fn=_checkpoint_key,
    persist_result=True,
    result_serializer="json",
    retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
)
def compress_batch_task(batch: list[ChunkFingerprint], settings: BatchSettings, batch_index: int) -> BatchResult:
    """Compress one batch, then record its device telemetry; the result is the batch's checkpoint.

    `batch_index` is not part of the checkpoint key. A batch loaded from its checkpoint does not
    run this body, so it records no telemetry.
    """
    started = time.perf_counter()
    result = compress_batch(batch, settings)
    record_telemetry(settings, batch_index, result, time.perf_counter() - started)
    get_run_logger().info(
        "batch of %d chunks: %d compressed, %d already at destination, %d failed",
        len(batch), len(result.recipes) - len(result.found_at_destination),
        len(result.found_at_destination), len(result.failures),
    )
    return result


@task(name="prepare-job", cache_policy=NO_CACHE, persist_result=False)
def prepare_job_task(
    destination: str, job: str, codec_choice: CodecChoice, level: int,
    access: StorageAccess, results: str | None,
) -> BatchSettings:
    """Fail fast on a codec, destination or result storage that cannot work."""
    return prepare_job(destination, job, codec_choice, level, access, results)


def salvage_batch(batch: list[ChunkFingerprint], settings: BatchSettings, error: str) -> BatchResult:
    """After a batch failed for good, keep the chunks that reached the destination; only the rest fail.

    The chunks kept reach the manifest. Those written in this run count as compressed, older
    ones as found at the destination.
    """
    output = (settings.codec, settings.codec_version, settings.level)
    once = RetryPolicy(attempts=1)

    def check(chunk: ChunkFingerprint) -> Recipe | None | ChunkFailure:
        destination = open_destination(settings.destination, settings.access)
        return attempt_chunk(chunk.chunk_id, lambda: finished_recipe(destination, settings.job, chunk, output), once)

    with ThreadPoolExecutor(min(io_thread_count(), len(batch))) as pool:
        found = list(pool.map(check, batch))
    recipes = [item for item in found if isinstance(item, Recipe)]
    return BatchResult(
        recipes=recipes,
        failures=[
            ChunkFailure(chunk_id=chunk.chunk_id, reason=f"chunk {chunk.chunk_id!r}: its batch failed: {error}")
            for chunk, item in zip(batch, found) if not isinstance(item, Recipe)
        ],
        found_at_destination=[recipe.chunk_id for recipe in recipes if recipe.created_at < settings.started_at],
    )


@task(name="salvage-batch", cache_policy=NO_CACHE, persist_result=False)
def salvage_batch_task(batch: list[ChunkFingerprint], settings: BatchSettings, error: str) -> BatchResult:
    """Find which chunks of a failed batch are at the destination anyway."""
    return salvage_batch(batch, settings, error)


def run_batch(batch: list[ChunkFingerprint], settings: BatchSettings, refresh: bool, batch_index: int) -> BatchOutcome:
    """Run the batch task and record whether it came from a checkpoint or failed for good, and its time.

    A checkpoint that holds failures is not trusted as done: the batch runs again, its finished
    chunks come from the destination and its failed ones are tried again. A batch that fails
    for good keeps the chunks that reached the destination.
    """
    started = time.perf_counter()
    state = _batch_state(batch, settings, refresh, batch_index)
    result = state.result() if state.is_completed() else None
    if result is not None and result.failures and state.name == "Cached":
        state = _batch_state(batch, settings, True, batch_index)
        result = state.result() if state.is_completed() else None
    chunk_ids = [chunk.chunk_id for chunk in batch]
    if result is not None:
        return BatchOutcome(
            chunk_ids=chunk_ids, result=result, from_checkpoint=state.name == "Cached",
            seconds=time.perf_counter() - started,
        )
    error = state.result(raise_on_failure=False)
    message = str(error) if isinstance(error, BaseException) else state.message or state.name
    salvaged = salvage_batch_task(unwalked(batch), settings, message, return_state=True)
    return BatchOutcome(
        chunk_ids=chunk_ids, result=salvaged.result() if salvaged.is_completed() else None, error=message,
        seconds=time.perf_counter() - started,
    )


def _batch_state(batch: list[ChunkFingerprint], settings: BatchSettings, refresh: bool, batch_index: int) -> State[BatchResult]:
    """The final state of the batch task: loaded from its checkpoint unless `refresh`, else run."""
    runner = compress_batch_task.with_options(
        result_storage=checkpoint_storage(settings), refresh_cache=refresh,
        task_run_name=batch_run_name(batch_checkpoint_key(batch, settings)),
    )
    return runner(unwalked(batch), settings, batch_index, return_state=True)
