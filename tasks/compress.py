"""Compress stage: fetch, compress and upload every chunk of a batch, on every core.

The batch is the checkpoint unit. Its result (the recipes) is persisted under a content key,
so a rerun loads it instead of doing the work. Inside a batch, a chunk whose recipe is already
at the destination with the same sha256 is not compressed again, so a killed batch resumes
where it stopped.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from tasks.checkpoint import batch_checkpoint_key, checkpoint_dir
from tasks.codecs import Codec, CodecChoice, resolve_codec
from tasks.destinations import Destination, open_destination
from tasks.errors import ChunkChangedError, InvalidChunkError, SourceNotFoundError
from tasks.fetch import io_thread_count
from tasks.models import BatchOutcome, BatchResult, BatchSettings, ChunkFailure, ChunkFingerprint, Recipe
from tasks.retries import IO_RETRY_DELAYS, retry_if_transient
from tasks.sources import read_chunk
from tasks.unwalked import unwalked

COLABFLOW_VERSION = version("colabflow")


def prepare_job(destination: str, job: str, codec_choice: CodecChoice, level: int) -> BatchSettings:
    """Choose the codec and prove the destination is writable, before any work starts."""
    codec = resolve_codec(codec_choice, level)
    target = open_destination(destination)
    target.prepare(job)
    return BatchSettings(
        destination=str(Path(target.root).absolute()),
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


def compress_chunk(chunk: ChunkFingerprint, data: bytes, codec: Codec) -> tuple[bytes, Recipe]:
    """Compress one chunk's bytes and describe the result in a recipe."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != chunk.sha256:
        raise ChunkChangedError(
            f"chunk {chunk.chunk_id!r} changed while the job ran (sha256 {chunk.sha256[:12]}… "
            f"when listed, {actual[:12]}… now); rerun the job once the source is stable"
        )
    started = time.perf_counter()
    member = codec.compress(data)
    seconds = time.perf_counter() - started
    recipe = Recipe(
        chunk_id=chunk.chunk_id,
        source_uri=chunk.uri,
        original_sha256=chunk.sha256,
        original_size=len(data),
        codec=codec.name,
        codec_version=codec.version,
        level=codec.level,
        compressed_size=len(member),
        compressed_sha256=hashlib.sha256(member).hexdigest(),
        ratio=round(len(data) / len(member), 4),
        seconds=round(seconds, 6),
        device=codec.device,
        created_at=datetime.now(timezone.utc),
        colabflow_version=COLABFLOW_VERSION,
    )
    return member, recipe


def compress_batch(batch: list[ChunkFingerprint], settings: BatchSettings) -> BatchResult:
    """Fetch, compress and upload a batch. Bad chunks become failures; I/O errors propagate."""
    codec = resolve_codec(settings.codec_choice, settings.level)
    destination = open_destination(settings.destination)

    def process(chunk: ChunkFingerprint) -> tuple[Recipe, bool] | ChunkFailure:
        try:
            existing = finished_recipe(destination, settings.job, chunk, codec)
            if existing is not None:
                return existing, True
            member, recipe = compress_chunk(chunk, read_chunk(chunk.uri), codec)
            destination.put_chunk(settings.job, chunk.chunk_id, member, recipe)
            return recipe, False
        except (InvalidChunkError, SourceNotFoundError) as error:
            return ChunkFailure(chunk_id=chunk.chunk_id, reason=str(error))

    with ThreadPoolExecutor(min(io_thread_count(), len(batch))) as pool:
        outcomes = list(pool.map(process, batch))
    return BatchResult(
        recipes=[item[0] for item in outcomes if isinstance(item, tuple)],
        failures=[item for item in outcomes if isinstance(item, ChunkFailure)],
        found_at_destination=[item[0].chunk_id for item in outcomes if isinstance(item, tuple) and item[1]],
    )


def _checkpoint_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return batch_checkpoint_key(parameters["batch"], parameters["settings"])


@task(
    name="compress-batch",
    cache_key_fn=_checkpoint_key,
    persist_result=True,
    result_serializer="json",
    retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
)
def compress_batch_task(batch: list[ChunkFingerprint], settings: BatchSettings) -> BatchResult:
    """Compress one batch; its result is the checkpoint that later runs reuse."""
    result = compress_batch(batch, settings)
    get_run_logger().info(
        "batch of %d chunks: %d compressed, %d already at destination, %d failed",
        len(batch), len(result.recipes) - len(result.found_at_destination),
        len(result.found_at_destination), len(result.failures),
    )
    return result


@task(name="prepare-job", cache_policy=NO_CACHE, persist_result=False)
def prepare_job_task(destination: str, job: str, codec_choice: CodecChoice, level: int) -> BatchSettings:
    """Fail fast on a codec or destination that cannot work."""
    return prepare_job(destination, job, codec_choice, level)


def run_batch(batch: list[ChunkFingerprint], settings: BatchSettings, refresh: bool) -> BatchOutcome:
    """Run the batch task and record whether it came from a checkpoint or failed for good."""
    runner = compress_batch_task.with_options(
        result_storage=checkpoint_dir(settings), refresh_cache=refresh
    )
    state = runner(unwalked(batch), settings, return_state=True)
    chunk_ids = [chunk.chunk_id for chunk in batch]
    if state.is_completed():
        return BatchOutcome(chunk_ids=chunk_ids, result=state.result(), from_checkpoint=state.name == "Cached")
    error = state.result(raise_on_failure=False)
    return BatchOutcome(chunk_ids=chunk_ids, error=str(error) if isinstance(error, BaseException) else state.message)
