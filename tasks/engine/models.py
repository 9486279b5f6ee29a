"""Pydantic models every job kind shares: items and their fingerprints, failures, plans, manifests."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
)

from tasks.errors import CorruptOutputError
from tasks.storage.stores import StorageAccess

Line = TypeVar("Line", bound=BaseModel)


def parse_json_lines(content: bytes, model: type[Line], where: str, kind: str, advice: str) -> list[Line]:
    """The lines of a JSON-lines file as `model`s, blank lines skipped; a bad line names `where` and its number."""
    lines: list[Line] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append(model.model_validate_json(line))
        except ValidationError as error:
            raise CorruptOutputError(
                f"{where} line {number} is not a {kind} ({error.errors()[0]['msg']}); {advice}"
            ) from None
    return lines


class Frozen(BaseModel):
    """A model that cannot change once built and refuses unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ItemRef(Frozen):
    """An item found in a source: its id (a path relative to the source root) and where it lives."""

    item_id: str = Field(description="Path relative to the source root, POSIX separators.")
    uri: str = Field(description="Where the item's bytes are read from.")
    size: int = Field(ge=0, description="Size in bytes when listed.")
    version: str | None = Field(
        default=None,
        description="What the source says identifies this content without reading it (a local file's "
        "size, times and inode; a remote object's md5 or git blob id); None when it cannot say.",
    )
    group: str | None = Field(
        default=None, description="Batches never mix items of different groups (a language, say); None: one group."
    )


class ItemFingerprint(ItemRef):
    """An item whose content has been hashed: the sha256 is what checkpoints are keyed by."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the item's bytes.")
    content: dict[str, JsonValue] | None = Field(
        default=None,
        description="A record's own object, read with the plan (tasks/engine/records.py); None for an item "
        "read from its URI. Its sha256 is that of its canonical JSON.",
    )


class ItemFailure(Frozen):
    """An item that could not be processed, and why."""

    item_id: str = Field(
        validation_alias=AliasChoices("item_id", "chunk_id"),
        description="The item id (or the raw name when the id is invalid). Files before format 3 call it chunk_id.",
    )
    reason: str = Field(description="What went wrong and how to fix it.")


class SkippedEntry(Frozen):
    """An entry of a source left out on purpose, not an item: a symlink outside it, a dangling one, a loop."""

    item_id: str = Field(description="Its path relative to the source root, POSIX separators.")
    reason: str = Field(description="Why it was left out, and how to take it if that is wanted.")


class ItemOutput(Frozen):
    """What one finished item left in its job folder: the engine's record, the kind's details."""

    item_id: str
    input_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_size: int = Field(ge=0)
    output: str = Field(description="Key of the output below the job folder, e.g. 'chunks/a.txt.gz'.")
    output_size: int = Field(ge=0)
    output_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
    details: dict[str, JsonValue] = Field(
        default_factory=dict, description="The kind's own record of the item (compression: its recipe)."
    )


class BatchResult(Frozen):
    """What one batch produced: the commit record of the batch, and part of its task's checkpoint."""

    outputs: list[ItemOutput] = Field(default_factory=list)
    failures: list[ItemFailure] = Field(default_factory=list)
    found_at_destination: list[str] = Field(
        default_factory=list, description="Item ids whose output was already in the job folder, so not redone."
    )


class BatchOutcome(Frozen):
    """How one batch ended in this run: its result, or the error that stopped it."""

    item_ids: list[str]
    result: BatchResult | None = None
    error: str | None = None
    from_checkpoint: bool = False
    seconds: float = Field(default=0.0, ge=0, description="Wall time of the batch in this run, checkpoint loads included.")


class TaskUnitResult(Frozen):
    """The outcomes of the batches one task run carried: the task run's persisted checkpoint."""

    outcomes: list[BatchOutcome]


class ManifestSummary(Frozen):
    """The manifest written at the end of a run."""

    path: str
    sha256: str
    entries: int
    missing: list[ItemFailure] = Field(default_factory=list)


class JobPlan(Frozen):
    """The items of a job, fingerprinted and grouped into batches."""

    batches: list[list[ItemFingerprint]]
    failures: list[ItemFailure]
    items_total: int
    items_read: int = Field(ge=0, description="Items read and hashed; the others came from the fingerprint cache.")
    skipped: list[SkippedEntry] = Field(default_factory=list, description="Source entries left out, never read.")


class JobSettings(Frozen):
    """Everything a batch needs besides its items; the kind and its options are part of every checkpoint key."""

    kind: str = Field(description="The job kind's registered name (tasks/engine/kinds.py).")
    options: dict[str, JsonValue] = Field(
        default_factory=dict, description="The kind's resolved options (compression: codec, version, level)."
    )
    destination: str = Field(description="Destination location: an absolute local path or a gs://, gdrive:// URI.")
    results: str = Field(description="Where batch checkpoints live (a location like destination).")
    access: StorageAccess = Field(default_factory=StorageAccess, description="Credentials for remote locations.")
    job: str
    device: str = Field(description="Where the kind's work runs: 'cpu' or the GPU's name.")
    started_at: datetime


class JobReportBase(BaseModel):
    """What every job report says, whatever its kind; the callback and the report artifact read these."""

    job: str
    failed: list[ItemFailure]
    seconds: float
    manifest_sha256: str
    device: str = Field(default="cpu", description="Where the job's work ran: 'cpu' or the GPU's name.")
    gpu_class: str = Field(default="cpu", description="The device's compute-unit class: a100, l4, t4, any or cpu.")
    compute_units: float = Field(default=0.0, ge=0, description="Estimated Colab compute units this run spent.")
    stopped_reason: str | None = Field(
        default=None, description="Why the run stopped taking batches before the end (the compute-unit quota)."
    )
    skipped: list[SkippedEntry] = Field(
        default_factory=list,
        description="Entries of a local source left out, never read: symlinks outside it (unless follow_symlinks), "
        "dangling links, loops. Not failures.",
    )


class RunSummary(JobReportBase):
    """The engine's count of a run; each kind renames it into its own report."""

    items_total: int
    items_done: int = Field(description="Items this run did.")
    items_reused: int = Field(description="Items a checkpoint or the job folder already had.")
    items_read: int = Field(ge=0, description="Items read and hashed to plan this run; the rest came from the fingerprint cache.")
    bytes_in: int
    bytes_out: int
    batches_total: int
    batches_run: int
    batches_reused: int
