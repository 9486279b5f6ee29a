"""Compute-unit ledger: what each job cost, in `<destination>/ledger.jsonl`, across all jobs there.

There is one line per (job, flow run, attempt). Recording the same key again replaces its line, so
a retried task never counts twice, while a crashed run that starts again (a new attempt) adds the
units it spends again. Units are estimates: seconds times the `ComputeBudget` rate of the GPU class.

Every job at a destination writes the ledger, so a store that guards a read-modify-write against
other writers (local disk, GCS) keeps it in `ledger.jsonl`. Drive has no such guard: there each
process writes its own segment, `.colabflow/ledger/<process>.jsonl`, which no other process
touches. A reader merges the file and every segment; where a key appears twice, the line recorded
last counts.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field

from blocks.compute_budget import ComputeBudget
from tasks.engine.models import parse_json_lines
from tasks.gpu.devices import gpu_class_of
from tasks.storage.places import open_place
from tasks.storage.shared_files import guards_writers, update_object
from tasks.storage.stores import ObjectStore, StorageAccess, read_optional

LEDGER_NAME = "ledger.jsonl"
SEGMENTS_DIR = ".colabflow/ledger"  # one segment per process, where the store cannot guard ledger.jsonl
_PROCESS = uuid.uuid4().hex[:12]
_FILE_LOCKS: dict[str, threading.Lock] = {}
_SEGMENTS: dict[str, dict[tuple[str, str, int], LedgerEntry]] = {}  # segment URI -> this process's entries


class LedgerEntry(BaseModel):
    """One attempt of one job: where it ran, for how long, and its estimated compute units."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: str
    flow_run_id: str
    attempt: int = Field(ge=1, description="The flow run's run count: a rescheduled crash is a new attempt.")
    gpu_class: str = Field(description="a100, l4, t4, any or cpu.")
    device: str = Field(description="The GPU's name, or 'cpu'.")
    seconds: float = Field(ge=0)
    compute_units: float = Field(ge=0)
    recorded_at: datetime

    @property
    def key(self) -> tuple[str, str, int]:
        return self.job, self.flow_run_id, self.attempt


def estimate_units(gpu_class: str, seconds: float, budget: ComputeBudget) -> float:
    """Compute units for `seconds` on a GPU class, at the budget's rate."""
    return round(budget.units_per_hour(gpu_class) * seconds / 3600, 6)


def ledger_entry(job: str, flow_run_id: str, attempt: int, device: str, seconds: float, budget: ComputeBudget) -> LedgerEntry:
    """The entry for an attempt that ran `seconds` on `device` (a GPU name, or 'cpu')."""
    gpu_class = "cpu" if device == "cpu" else gpu_class_of(device)
    return LedgerEntry(
        job=job, flow_run_id=flow_run_id, attempt=attempt, gpu_class=gpu_class, device=device,
        seconds=round(seconds, 3), compute_units=estimate_units(gpu_class, seconds, budget),
        recorded_at=datetime.now(timezone.utc),
    )


def parse_ledger(content: bytes, where: str) -> list[LedgerEntry]:
    """The entries of a ledger file; `where` names it in errors."""
    return parse_json_lines(content, LedgerEntry, where, "ledger entry", "fix or remove that line")


def read_ledger(destination: str, access: StorageAccess) -> list[LedgerEntry]:
    """Every entry at the destination (none before the first job): `ledger.jsonl`'s in order, then each segment's."""
    place = open_place(destination, access)
    key = place.key(LEDGER_NAME)
    entries = parse_ledger(read_optional(place.store, key) or b"", place.uri(key))
    for info in place.store.list(place.key(SEGMENTS_DIR)):
        entries += parse_ledger(read_optional(place.store, info.key) or b"", place.uri(info.key))
    latest: dict[tuple[str, str, int], LedgerEntry] = {}
    for entry in entries:
        if entry.key not in latest or entry.recorded_at >= latest[entry.key].recorded_at:
            latest[entry.key] = entry
    return list(latest.values())


def _with_entry(entries: list[LedgerEntry], entry: LedgerEntry) -> list[LedgerEntry]:
    replaced = [entry if old.key == entry.key else old for old in entries]
    return replaced if entry.key in {old.key for old in entries} else [*entries, entry]


def _lines(entries: Iterable[LedgerEntry]) -> bytes:
    return b"".join(entry.model_dump_json().encode() + b"\n" for entry in entries)


def append_ledger(destination: str, access: StorageAccess, entry: LedgerEntry) -> None:
    """Record the entry, replacing an earlier one with the same (job, flow run, attempt).

    The ledger is shared by every job at the destination: where the store guards a
    read-modify-write (tasks/storage/shared_files.py), the change goes to `ledger.jsonl` under
    that guard; elsewhere to this process's own segment. Either way no other job's line is lost.
    """
    place = open_place(destination, access)
    store, key = place.writable("destination"), place.key(LEDGER_NAME)
    with _FILE_LOCKS.setdefault(place.uri(key), threading.Lock()):
        if guards_writers(store):
            _update_file(store, key, place.uri(key), entry)
            return
        segment = place.key(SEGMENTS_DIR, f"{_PROCESS}-{os.getpid()}.jsonl")  # a forked child has its own
        entries = _SEGMENTS.setdefault(place.uri(segment), {})
        entries[entry.key] = entry
        store.write_bytes(segment, _lines(entries.values()))


def _update_file(store: ObjectStore, key: str, uri: str, entry: LedgerEntry) -> None:
    def with_entry(content: bytes | None) -> bytes | None:
        entries = parse_ledger(content or b"", uri)
        return None if entry in entries else _lines(_with_entry(entries, entry))

    update_object(store, key, with_entry)


def spend(entries: Iterable[LedgerEntry]) -> float:
    """Compute units the entries add up to."""
    return round(sum(entry.compute_units for entry in entries), 6)


def projected_over_quota(
    spent: float, batch_seconds_so_far: Sequence[float], batches_left: int, budget: ComputeBudget, gpu_class: str
) -> str | None:
    """Why the job should stop taking batches, or None while its projected spend fits the quota.

    `spent` counts every unit spent at the destination, this job's so far included; the rest
    is projected from the mean batch so far. Pass batches_left=1 to stop only at the edge.
    """
    quota = budget.quota_units
    if quota is None:
        return None
    seconds = sum(batch_seconds_so_far) / len(batch_seconds_so_far) if batch_seconds_so_far else 0.0
    per_batch = estimate_units(gpu_class, seconds, budget)
    projected = spent + per_batch * batches_left
    if projected <= quota and spent < quota:
        return None
    fit = int((quota - spent) // per_batch) if per_batch > 0 and spent < quota else 0
    return (
        f"stopping before the compute-unit quota: {spent:.2f} of {quota:.2f} units are spent and the {batches_left} "
        f"batches left would take about {per_batch * batches_left:.2f} more ({seconds:.0f} s a batch on {gpu_class} at "
        f"{budget.units_per_hour(gpu_class)} units/h), {projected:.2f} in all; about {fit} more batches fit. Finished "
        "batches are checkpointed: raise quota_units in the ComputeBudget block, or run the rest on a cheaper GPU class"
    )
