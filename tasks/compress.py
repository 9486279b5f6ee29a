"""Compress stage: fetch, compress and upload every chunk of a batch, on every core.

The batch is the checkpoint unit. Its result (the recipes) is persisted under a content key,
so a rerun loads it instead of doing the work. Inside a batch, a chunk whose recipe is already
at the destination with the same sha256 is not compressed again, so a killed batch resumes
where it stopped.

Chunks up to `STREAM_THRESHOLD` bytes are compressed in memory; larger ones are streamed from
the source through the codec into a temporary file and uploaded from there, so memory stays
bounded whatever the chunk's size.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from tasks.checkpoint import BATCH_RUN_PREFIX, batch_checkpoint_key, batch_run_name, checkpoint_storage
from tasks.codecs import Codec, CodecChoice, resolve_codec
from tasks.destinations import Destination, normalize_location, open_destination
from tasks.errors import ChunkChangedError, InvalidChunkError, SourceNotFoundError
from tasks.fetch import io_thread_count
from tasks.models import BatchOutcome, BatchResult, BatchSettings, ChunkFailure, ChunkFingerprint, Recipe
from tasks.oom_backoff import BatchSizeMemory
from tasks.retries import IO_RETRY_DELAYS, retry_if_transient
from tasks.sources import open_chunk, read_chunk
from tasks.stores import StorageAccess, file_digests, open_place
from tasks.telemetry import batch_telemetry, read_device_telemetry, record_batch_telemetry
from tasks.unwalked import unwalked

COLABFLOW_VERSION = version("colabflow")
STREAM_THRESHOLD = 64 * 1024 * 1024


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


def finished_recipe(destination: Destination, job: str, chunk: ChunkFingerprint, codec: Codec) -> Recipe | None:
    """Return the chunk's recipe if the destination already holds this exact output."""
    recipe = destination.read_recipe(job, chunk.chunk_id)
    if (
        recipe is None
        or recipe.original_sha256 != chunk.sha256
        or (recipe.codec, recipe.codec_version, recipe.level) != (codec.name, codec.version, codec.level)
        or destination.chunk_size(job, chunk.chunk_id) != recipe.compressed_size
    ):
        return None
    return recipe


def describe_chunk(
    chunk: ChunkFingerprint, codec: Codec, member_size: int, member_sha256: str, seconds: float
) -> Recipe:
    """The recipe of a chunk compressed by `codec` into a member of the given size and hash."""
    return Recipe(
        chunk_id=chunk.chunk_id,
        source_uri=chunk.uri,
        original_sha256=chunk.sha256,
        original_size=chunk.size,
        codec=codec.name,
        codec_version=codec.version,
        level=codec.level,
        compressed_size=member_size,
        compressed_sha256=member_sha256,
        ratio=round(chunk.size / member_size, 4),
        seconds=round(seconds, 6),
        device=codec.device_for(chunk.size),
        created_at=datetime.now(timezone.utc),
        colabflow_version=COLABFLOW_VERSION,
    )


def _changed(chunk: ChunkFingerprint, actual_sha256: str) -> ChunkChangedError:
    return ChunkChangedError(
        f"chunk {chunk.chunk_id!r} changed while the job ran (sha256 {chunk.sha256[:12]}… "
        f"when listed, {actual_sha256[:12]}… now); rerun the job once the source is stable"
    )


def compress_chunk(chunk: ChunkFingerprint, data: bytes, codec: Codec) -> tuple[bytes, Recipe]:
    """Compress one chunk's bytes and describe the result in a recipe."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != chunk.sha256 or len(data) != chunk.size:
        raise _changed(chunk, actual)
    started = time.perf_counter()
    member = codec.compress(data)
    seconds = time.perf_counter() - started
    return member, describe_chunk(chunk, codec, len(member), hashlib.sha256(member).hexdigest(), seconds)


class HashingReader:
    """A reader that hashes what passes through it; rewinding to 0 restarts the hash."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        block = self.stream.read(size)
        self.digest.update(block)
        self.size += len(block)
        return block

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if (offset, whence) != (0, os.SEEK_SET):
            raise ValueError("a HashingReader can only rewind to the start")
        self.digest, self.size = hashlib.sha256(), 0
        return self.stream.seek(0)


def compress_chunk_stream(chunk: ChunkFingerprint, source: BinaryIO, codec: Codec, member_path: Path) -> Recipe:
    """Stream a chunk through the codec into `member_path`; memory stays bounded by the codec's block."""
    reader = HashingReader(source)
    started = time.perf_counter()
    with member_path.open("w+b") as member:
        codec.compress_stream(reader, member, chunk.size)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    if reader.digest.hexdigest() != chunk.sha256 or reader.size != chunk.size:
        raise _changed(chunk, reader.digest.hexdigest())
    member_sha256, _ = file_digests(member_path)
    return describe_chunk(chunk, codec, member_path.stat().st_size, member_sha256, seconds)


def compress_and_store(
    chunk: ChunkFingerprint, codec: Codec, destination: Destination, job: str, access: StorageAccess
) -> Recipe:
    """Compress one chunk and put it at the destination, in memory or streamed by its size."""
    if chunk.size <= STREAM_THRESHOLD:
        member, recipe = compress_chunk(chunk, read_chunk(chunk.uri, access), codec)
        destination.put_chunk(job, chunk.chunk_id, member, recipe)
        return recipe
    with tempfile.TemporaryDirectory(prefix="colabflow-") as scratch:
        member_path = Path(scratch, "member.gz")
        with open_chunk(chunk.uri, access) as source:
            recipe = compress_chunk_stream(chunk, source, codec, member_path)
        destination.put_chunk(job, chunk.chunk_id, member_path, recipe)
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
    """Fetch, compress and upload a batch. Bad chunks become failures; I/O errors propagate."""
    codec = batch_codec(settings)
    destination = open_destination(settings.destination, settings.access)

    def process(chunk: ChunkFingerprint) -> tuple[Recipe, bool] | ChunkFailure:
        try:
            existing = finished_recipe(destination, settings.job, chunk, codec)
            if existing is not None:
                return existing, True
            return compress_and_store(chunk, codec, destination, settings.job, settings.access), False
        except (InvalidChunkError, SourceNotFoundError) as error:
            return ChunkFailure(chunk_id=chunk.chunk_id, reason=str(error))

    with ThreadPoolExecutor(min(io_thread_count(), len(batch))) as pool:
        outcomes = list(pool.map(process, batch))
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


def run_batch(batch: list[ChunkFingerprint], settings: BatchSettings, refresh: bool, batch_index: int) -> BatchOutcome:
    """Run the batch task and record whether it came from a checkpoint or failed for good, and its time."""
    started = time.perf_counter()
    runner = compress_batch_task.with_options(
        result_storage=checkpoint_storage(settings), refresh_cache=refresh,
        task_run_name=batch_run_name(batch_checkpoint_key(batch, settings)),
    )
    state = runner(unwalked(batch), settings, batch_index, return_state=True)
    chunk_ids = [chunk.chunk_id for chunk in batch]
    seconds = time.perf_counter() - started
    if state.is_completed():
        return BatchOutcome(
            chunk_ids=chunk_ids, result=state.result(), from_checkpoint=state.name == "Cached", seconds=seconds
        )
    error = state.result(raise_on_failure=False)
    message = str(error) if isinstance(error, BaseException) else state.message
    return BatchOutcome(chunk_ids=chunk_ids, error=message, seconds=seconds)
