"""The `JobKind` seam: what one kind of job adds to the engine, and the registry that finds it.

A kind contributes its verify check. A batch kind (`BatchKind`) adds its identity (part of every
checkpoint key), running one batch, finding an item already finished (skip and salvage), its
manifest line and its batch figures for telemetry; planning, commit units, checkpoints,
quarantine and the manifest are then the engine's. A kind that is not items in batches (an
iterative job: one state that evolves) keeps its own checkpoints and tells `colabflow status`
its progress (`ReportsProgress`). The job record, report, status, ledger, progress artifact and
callback are the engine's, the same for every kind.

The registry is the package layout: the kind named `NAME` is `JOB_KIND` in `tasks/NAME/kind.py`,
imported on first use, as URI schemes find their stores. So a new kind is a package plus a flow,
and edits neither the engine nor another kind. (Entry points were tried first: a stale
`colabflow.egg-info` in the checkout hides a new one from `importlib.metadata`.)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, JsonValue

from tasks.engine.models import BatchResult, ItemFingerprint, ItemOutput, JobSettings
from tasks.errors import InvalidParameterError

if TYPE_CHECKING:
    from tasks.engine.job_folder import JobFolder
    from tasks.engine.verify import JobCheck
    from tasks.storage.stores import StorageAccess

@dataclass(frozen=True)
class BatchFigures:
    """What a batch did, for telemetry: items done, bytes read and written."""

    items: int
    bytes_in: int
    bytes_out: int


@runtime_checkable
class JobKind(Protocol):
    """One kind of job, as the engine's commands (`verify`, `status`) see it."""

    name: str

    def verify(self, folder: JobFolder, access: StorageAccess) -> JobCheck:
        """Check every output of a finished job folder against its manifest."""
        ...


@runtime_checkable
class BatchKind(JobKind, Protocol):
    """A kind whose work is items in batches: the engine plans, commits and resumes them."""

    def identity(self, settings: JobSettings) -> list[JsonValue]:
        """What, besides the items, makes a batch's output what it is (compression: codec, version, level)."""
        ...

    def run_batch(self, batch: list[ItemFingerprint], settings: JobSettings) -> BatchResult:
        """Do a batch's work and write its outputs; one item's error is that item's failure."""
        ...

    def find_finished(self, item: ItemFingerprint, settings: JobSettings) -> ItemOutput | None:
        """The item's output if the job folder already holds it, exactly as this job would write it."""
        ...

    def manifest_entry(self, output: ItemOutput) -> BaseModel:
        """The item's line in `<job>/manifest.jsonl`."""
        ...

    def batch_figures(self, outputs: list[ItemOutput]) -> BatchFigures:
        """The telemetry figures of the outputs a batch produced."""
        ...


@runtime_checkable
class ReportsProgress(Protocol):
    """A kind whose progress is not items in committed batches (iterations): `colabflow status` asks it."""

    def job_progress(self, folder: JobFolder, access: StorageAccess) -> dict[str, JsonValue]:
        """What the job folder says of the job's progress, as named figures."""
        ...


def shared_file_figures(outputs: list[ItemOutput]) -> BatchFigures:
    """The figures of a batch whose items share its output files: their input bytes, and each file once."""
    files = {output.output: output.output_size for output in outputs}
    return BatchFigures(items=len(outputs), bytes_in=sum(output.input_size for output in outputs),
                        bytes_out=sum(files.values()))


@runtime_checkable
class ReadsAhead(Protocol):
    """A kind that can start reading the items of coming batches while the current one runs."""

    def read_ahead(self, batches: list[list[ItemFingerprint]], settings: JobSettings) -> None:
        """Start (or keep) reading these batches' items, the one about to run first; forget any other."""
        ...


def registered_kinds() -> list[str]:
    """Names of the kinds this installation has: the packages of `tasks` that hold a `kind` module."""
    root = Path(__file__).resolve().parents[1]
    return sorted(path.parent.name for path in root.glob("*/kind.py"))


@lru_cache(maxsize=None)
def job_kind(name: str) -> JobKind:
    """The kind called `name` (`JOB_KIND` of `tasks.NAME.kind`); its module is imported on first use."""
    if name not in registered_kinds():
        raise InvalidParameterError(
            f"job kind {name!r} is not known here (known: {', '.join(registered_kinds())}); a kind is a "
            "package tasks/NAME/ whose kind.py defines JOB_KIND"
        )
    kind: JobKind = importlib.import_module(f"tasks.{name}.kind").JOB_KIND
    return kind


def batch_kind(name: str) -> BatchKind:
    """The kind called `name`, which must run batches (the engine's batch stages call this)."""
    kind = job_kind(name)
    if not isinstance(kind, BatchKind):
        raise InvalidParameterError(f"job kind {name!r} does not run batches of items; use its own flow")
    return kind
