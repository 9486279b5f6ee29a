"""The reduce step: a finished job's batch outputs gathered by group, for a kind to merge.

Batches never mix groups (a language, say), so each group's outputs come from its own batches.
A kind whose batches yield partial results (counts) merges them here in plan order, each output
once, whether the batch ran in this attempt or was loaded from its done marker.
"""

from __future__ import annotations

from tasks.engine.models import BatchOutcome, JobPlan


def outputs_by_group(plan: JobPlan, outcomes: list[BatchOutcome]) -> dict[str, list[str]]:
    """Each group's output keys (below the job folder), once each, in plan order; groups in plan order.

    `outcomes` are the plan's batches in order (fewer when the run stopped early). A batch whose
    items all failed contributes nothing; items without a group are under ''.
    """
    grouped: dict[str, list[str]] = {}
    for batch, outcome in zip(plan.batches, outcomes):
        keys = grouped.setdefault(batch[0].group or "", [])
        for output in outcome.result.outputs if outcome.result is not None else []:
            if output.output not in keys:
                keys.append(output.output)
    return grouped
