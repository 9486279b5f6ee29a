"""The job report: what a run compressed, reused and could not do."""

from __future__ import annotations

from datetime import datetime

from tasks.compression.models import BatchOutcome, BatchSettings, JobReport, Recipe
from tasks.engine.ledger import LedgerEntry
from tasks.engine.models import ChunkFailure, JobPlan, ManifestSummary


def finished_recipes(outcomes: list[BatchOutcome]) -> list[Recipe]:
    """Every recipe produced or reused in this run."""
    return [recipe for outcome in outcomes if outcome.result for recipe in outcome.result.recipes]


def summarize_job(
    settings: BatchSettings,
    plan: JobPlan,
    outcomes: list[BatchOutcome],
    manifest: ManifestSummary,
    finished_at: datetime,
    spent: LedgerEntry,
    stopped_reason: str | None = None,
) -> JobReport:
    """Count what happened. A chunk counts as reused when a checkpoint or the destination had it.

    A chunk fails on its own (its reason says why and how often it was tried); a whole batch
    fails only when even its salvage could not tell which of its chunks reached the destination.

    `spent` is the run's ledger line; `stopped_reason` says why the run took no more batches.
    """
    compressed = reused = bytes_in = bytes_out = 0
    failed: list[ChunkFailure] = list(plan.failures)
    missing = {failure.chunk_id for failure in manifest.missing}
    for outcome in outcomes:
        if outcome.result is None:
            failed.extend(
                ChunkFailure(chunk_id=chunk_id, reason=f"chunk {chunk_id!r}: its batch failed: {outcome.error}")
                for chunk_id in outcome.chunk_ids
            )
            continue
        failed.extend(outcome.result.failures)
        found = set(outcome.result.found_at_destination)
        for recipe in outcome.result.recipes:
            if recipe.chunk_id in missing:
                continue
            if outcome.from_checkpoint or recipe.chunk_id in found:
                reused += 1
            else:
                compressed += 1
            bytes_in += recipe.original_size
            bytes_out += recipe.compressed_size
    failed.extend(manifest.missing)
    return JobReport(
        job=settings.job,
        chunks_total=plan.chunks_total,
        compressed=compressed,
        reused=reused,
        failed=failed,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        seconds=round((finished_at - settings.started_at).total_seconds(), 3),
        batches_total=len(outcomes),
        batches_reused=sum(outcome.from_checkpoint for outcome in outcomes),
        chunks_read=plan.chunks_read,
        manifest_sha256=manifest.sha256,
        device=settings.device,
        gpu_class=spent.gpu_class,
        compute_units=spent.compute_units,
        stopped_reason=stopped_reason,
    )
