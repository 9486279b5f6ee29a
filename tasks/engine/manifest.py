"""Manifest stage: one JSON line per finished item, in the kind's words, from this run's outputs."""

from __future__ import annotations

import hashlib

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.job_folder import MANIFEST_NAME, job_folder
from tasks.engine.kinds import BatchKind, batch_kind
from tasks.engine.models import (
    BatchOutcome,
    ItemFailure,
    ItemOutput,
    JobSettings,
    ManifestSummary,
)
from tasks.storage.retries import IO_RETRY_DELAYS, retry_if_transient


def finished_outputs(outcomes: list[BatchOutcome]) -> list[ItemOutput]:
    """Every output produced or reused in this run."""
    return [output for outcome in outcomes if outcome.result for output in outcome.result.outputs]


def manifest_lines(kind: BatchKind, outputs: list[ItemOutput]) -> bytes:
    """Render the manifest: one line per item, sorted by item id, so equal jobs give equal bytes."""
    ordered = sorted(outputs, key=lambda output: output.item_id)
    return b"".join(kind.manifest_entry(output).model_dump_json().encode() + b"\n" for output in ordered)


def write_manifest(settings: JobSettings, outputs: list[ItemOutput]) -> ManifestSummary:
    """Write the manifest of the items whose output is present in the job folder.

    A checkpoint can outlive the file it describes (someone deleted an output). Such items are
    left out of the manifest and reported, so the user knows to rerun with refreshed checkpoints.
    One listing of the folder answers for every item.
    """
    folder = job_folder(settings)
    sizes = folder.sizes()
    present: list[ItemOutput] = []
    missing: list[ItemFailure] = []
    for output in outputs:
        if sizes.get(output.output) == output.output_size:
            present.append(output)
        else:
            missing.append(ItemFailure(
                item_id=output.item_id,
                reason=f"a checkpoint says item {output.item_id!r} is done, but its output {output.output!r} is "
                "missing or has the wrong size in the job folder; rerun with --refresh-checkpoints",
            ))
    content = manifest_lines(batch_kind(settings.kind), present)
    path = folder.write(MANIFEST_NAME, content)
    folder.sync()
    return ManifestSummary(path=path, sha256=hashlib.sha256(content).hexdigest(), entries=len(present), missing=missing)


@task(
    name="write-manifest",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=len(IO_RETRY_DELAYS),
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_condition_fn=retry_if_transient,
)
def write_manifest_task(settings: JobSettings, outputs: list[ItemOutput]) -> ManifestSummary:
    """Write `<job>/manifest.jsonl` from this run's outputs."""
    return write_manifest(settings, outputs)
