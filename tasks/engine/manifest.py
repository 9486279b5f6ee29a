"""Manifest stage: one JSON line per chunk, derived from this run's recipes."""

from __future__ import annotations

import hashlib

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.compression.models import BatchSettings, ManifestEntry, Recipe
from tasks.engine.job_folder import open_destination
from tasks.engine.models import ChunkFailure, ManifestSummary
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient


def manifest_lines(recipes: list[Recipe]) -> bytes:
    """Render the manifest: one line per chunk, sorted by chunk id, so equal jobs give equal bytes."""
    entries = sorted(
        (ManifestEntry.model_validate(recipe.model_dump(include=set(ManifestEntry.model_fields))) for recipe in recipes),
        key=lambda entry: entry.chunk_id,
    )
    return b"".join(entry.model_dump_json().encode() + b"\n" for entry in entries)


def write_manifest(settings: BatchSettings, recipes: list[Recipe]) -> ManifestSummary:
    """Write the manifest of the chunks whose output is present at the destination.

    A checkpoint can outlive the file it describes (someone deleted a .gz). Such chunks are
    left out of the manifest and reported, so the user knows to rerun with refreshed
    checkpoints.
    """
    destination = open_destination(settings.destination, settings.access)
    present: list[Recipe] = []
    missing: list[ChunkFailure] = []
    for recipe in recipes:
        if destination.chunk_size(settings.job, recipe.chunk_id) == recipe.compressed_size:
            present.append(recipe)
        else:
            missing.append(ChunkFailure(
                chunk_id=recipe.chunk_id,
                reason=f"a checkpoint says chunk {recipe.chunk_id!r} is done, but its .gz is missing "
                "or has the wrong size at the destination; rerun with --refresh-checkpoints",
            ))
    content = manifest_lines(present)
    path = destination.put_manifest(settings.job, content)
    return ManifestSummary(
        path=path, sha256=hashlib.sha256(content).hexdigest(), entries=len(present), missing=missing
    )


@task(
    name="write-manifest",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
)
def write_manifest_task(settings: BatchSettings, recipes: list[Recipe]) -> ManifestSummary:
    """Write `<job>/manifest.jsonl` from this run's recipes."""
    return write_manifest(settings, recipes)
