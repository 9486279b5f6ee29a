"""The engine's count of a run: what it did, reused and could not do, for every kind."""

from __future__ import annotations

from datetime import datetime

from tasks.engine.ledger import LedgerEntry
from tasks.engine.models import (
    BatchOutcome,
    ItemFailure,
    JobPlan,
    JobSettings,
    ManifestSummary,
    RunSummary,
)


def summarize_run(
    settings: JobSettings,
    plan: JobPlan,
    outcomes: list[BatchOutcome],
    manifest: ManifestSummary,
    finished_at: datetime,
    spent: LedgerEntry,
    stopped_reason: str | None = None,
) -> RunSummary:
    """Count what happened. An item counts as reused when a checkpoint or the job folder had it.

    An item fails on its own (its reason says why and how often it was tried); a whole batch
    fails only when even its salvage could not tell which of its items are in the job folder.

    `spent` is the run's ledger line; `stopped_reason` says why the run took no more batches. The
    source entries the plan left out are carried into every kind's report as they are.
    """
    done = reused = bytes_in = bytes_out = 0
    failed: list[ItemFailure] = list(plan.failures)
    missing = {failure.item_id for failure in manifest.missing}
    for outcome in outcomes:
        if outcome.result is None:
            failed.extend(
                ItemFailure(item_id=item_id, reason=f"item {item_id!r}: its batch failed: {outcome.error}")
                for item_id in outcome.item_ids
            )
            continue
        failed.extend(outcome.result.failures)
        found = set(outcome.result.found_at_destination)
        for output in outcome.result.outputs:
            if output.item_id in missing:
                continue
            if outcome.from_checkpoint or output.item_id in found:
                reused += 1
            else:
                done += 1
            bytes_in += output.input_size
            bytes_out += output.output_size
    failed.extend(manifest.missing)
    return RunSummary(
        job=settings.job, failed=failed, seconds=round((finished_at - settings.started_at).total_seconds(), 3),
        manifest_sha256=manifest.sha256, device=settings.device, gpu_class=spent.gpu_class,
        compute_units=spent.compute_units, stopped_reason=stopped_reason, skipped=plan.skipped,
        items_total=plan.items_total, items_done=done, items_reused=reused, items_read=plan.items_read,
        bytes_in=bytes_in, bytes_out=bytes_out, batches_total=len(outcomes),
        batches_run=sum(not outcome.from_checkpoint for outcome in outcomes),
        batches_reused=sum(outcome.from_checkpoint for outcome in outcomes),
    )
