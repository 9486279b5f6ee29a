"""The reduce step's input: each group's batch outputs, once each, in plan order."""

from __future__ import annotations

from datetime import datetime, timezone

from tasks.engine.models import BatchOutcome, BatchResult, ItemFingerprint, ItemOutput, JobPlan
from tasks.engine.reduce import outputs_by_group

DIGEST = "0" * 64


def item(name: str, group: str | None) -> ItemFingerprint:
    return ItemFingerprint(item_id=name, uri=f"/c/{name}", size=1, sha256=DIGEST, group=group)


def outcome(names: list[str], output: str | None) -> BatchOutcome:
    outputs = [ItemOutput(item_id=name, input_sha256=DIGEST, input_size=1, output=output, output_size=1,
                          output_sha256=DIGEST, created_at=datetime.now(timezone.utc)) for name in names] if output else []
    return BatchOutcome(item_ids=names, result=BatchResult(outputs=outputs) if output else None, error=None if output else "x")


def test_outputs_are_gathered_by_group_once_each_in_plan_order() -> None:
    """Two German batches, one French, one failed French batch; the files of each group in order."""
    plan = JobPlan(batches=[[item("a", "de"), item("b", "de")], [item("c", "de")], [item("d", "fr")], [item("e", "fr")]],
                   failures=[], items_total=5, items_read=5)
    outcomes = [outcome(["a", "b"], "counts/de/1.json"), outcome(["c"], "counts/de/2.json"),
                outcome(["d"], "counts/fr/1.json"), outcome(["e"], None)]
    assert outputs_by_group(plan, outcomes) == {"de": ["counts/de/1.json", "counts/de/2.json"], "fr": ["counts/fr/1.json"]}


def test_a_run_stopped_early_gives_what_it_finished() -> None:
    plan = JobPlan(batches=[[item("a", None)], [item("b", None)]], failures=[], items_total=2, items_read=2)
    assert outputs_by_group(plan, [outcome(["a"], "out/1")]) == {"": ["out/1"]}
