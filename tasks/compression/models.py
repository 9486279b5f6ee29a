"""Compression's own models: recipes, batch results, the job settings and the job report."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tasks.compression.codecs import CodecChoice
from tasks.engine.models import ChunkFailure, Frozen
from tasks.storage.stores import StorageAccess

RECIPE_SCHEMA_VERSION = 1


class Recipe(Frozen):
    """Everything needed to check and restore one compressed chunk. Never holds a secret."""

    schema_version: int = RECIPE_SCHEMA_VERSION
    chunk_id: str
    source_uri: str
    original_sha256: str
    original_size: int = Field(ge=0)
    codec: str
    codec_version: str
    level: int = Field(ge=0, le=9)
    compressed_size: int = Field(ge=0)
    compressed_sha256: str
    ratio: float = Field(description="original_size / compressed_size.")
    seconds: float = Field(ge=0, description="Time spent compressing this chunk.")
    device: str = Field(description="'cpu' or the GPU's name.")
    created_at: datetime
    colabflow_version: str


class ManifestEntry(Frozen):
    """One line of `<job>/manifest.jsonl`."""

    chunk_id: str
    original_sha256: str
    original_size: int
    compressed_sha256: str
    compressed_size: int


class BatchResult(Frozen):
    """What one batch produced; this is the persisted checkpoint of the batch."""

    recipes: list[Recipe] = Field(default_factory=list)
    failures: list[ChunkFailure] = Field(default_factory=list)
    found_at_destination: list[str] = Field(
        default_factory=list,
        description="Chunk ids whose output was already at the destination, so not recompressed.",
    )


class JobReport(BaseModel):
    """What a job did. The flow returns it and the callback carries it."""

    job: str
    chunks_total: int
    compressed: int
    reused: int
    failed: list[ChunkFailure]
    bytes_in: int
    bytes_out: int
    seconds: float
    batches_total: int
    batches_reused: int
    chunks_read: int = Field(ge=0, description="Chunks read and hashed to plan this run; the rest came from the fingerprint cache.")
    manifest_sha256: str
    device: str = Field(default="cpu", description="Where the job's codec ran: 'cpu' or the GPU's name.")
    gpu_class: str = Field(default="cpu", description="The device's compute-unit class: a100, l4, t4, any or cpu.")
    compute_units: float = Field(default=0.0, ge=0, description="Estimated Colab compute units this run spent.")
    stopped_reason: str | None = Field(
        default=None, description="Why the run stopped taking batches before the end (the compute-unit quota)."
    )


class BatchSettings(Frozen):
    """Everything a batch needs besides its chunks; part of every checkpoint key."""

    destination: str = Field(description="Destination location: an absolute local path or a gs://, gdrive:// URI.")
    results: str = Field(description="Where batch checkpoints live (a location like destination).")
    access: StorageAccess = Field(default_factory=StorageAccess, description="Credentials for remote locations.")
    job: str
    codec_choice: CodecChoice
    codec: str
    codec_version: str
    level: int
    device: str
    started_at: datetime


class BatchOutcome(Frozen):
    """How one batch ended in this run: its result, or the error that stopped it."""

    chunk_ids: list[str]
    result: BatchResult | None = None
    error: str | None = None
    from_checkpoint: bool = False
    seconds: float = Field(default=0.0, ge=0, description="Wall time of the batch in this run, checkpoint loads included.")
