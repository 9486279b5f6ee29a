"""`CompressJob`, the one parameter model of the compress flow (rendered as a form in the UI)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.compression.codecs import CodecChoice
from tasks.engine.job_folder import DESTINATION_SCHEMES
from tasks.engine.parameters import Callback, require_supported
from tasks.engine.sources import SOURCE_SCHEMES
from tasks.storage.locations import JOB_NAME_PATTERN
from tasks.storage.stores import StorageAccess


class CompressJob(BaseModel):
    """Compress every chunk of a source into standard gzip members at a destination."""

    model_config = ConfigDict(extra="forbid")

    source: list[str] = Field(
        min_length=1,
        description="Chunk files or folders, mixed freely: local paths, file://, github://OWNER/REPO@REF/PATH, "
        "gs://BUCKET/PATH, gdrive://FOLDER_ID/PATH.",
    )
    destination: str = Field(
        default="./colabflow-data", min_length=1,
        description="Where <job>/ goes: a local directory, gs://BUCKET/PATH or gdrive://FOLDER_ID/PATH.",
    )
    results: str | None = Field(
        default=None,
        description="Where batch checkpoints go (same kinds of location); empty: the destination. "
        "Put them on GCS or Drive so a new machine can resume the job.",
    )
    access: StorageAccess = Field(
        default_factory=StorageAccess, description="Blocks whose credentials reach remote sources and destinations."
    )
    job: str = Field(pattern=JOB_NAME_PATTERN, description="Job name: letters, digits, '.', '_', '-'.")
    codec: CodecChoice = Field(default="auto", description="auto picks the GPU when usable, else the CPU.")
    level: int = Field(default=6, ge=0, le=9, description="gzip level 0-9; 0 stores without compressing.")
    batch_size: int = Field(default=1024, ge=1, le=100_000, description="Most chunks in one batch.")
    batch_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="Most bytes in one batch (one oversized chunk still runs alone)."
    )
    task_runs: int = Field(
        default=64, ge=1, le=10_000,
        description="Most task runs the batches are spread over; each carries its share and commits every batch alone.",
    )
    callback: Callback | None = Field(default=None, description="Optional notice sent once when the job ends.")
    refresh_checkpoints: bool = Field(
        default=False, description="Ignore saved batch checkpoints and check every chunk again."
    )
    compute_budget: str | None = Field(
        default=None, min_length=1,
        description="Name of a ComputeBudget block (rates and quota); empty: its default rates and no quota.",
    )

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, source: object) -> object:
        return [source] if isinstance(source, str) else source

    @field_validator("source")
    @classmethod
    def _readable_sources(cls, source: list[str]) -> list[str]:
        for location in source:
            require_supported("source", location, SOURCE_SCHEMES)
        return source

    @field_validator("destination")
    @classmethod
    def _writable_destination(cls, destination: str) -> str:
        return require_supported("destination", destination, DESTINATION_SCHEMES)

    @field_validator("results")
    @classmethod
    def _writable_results(cls, results: str | None) -> str | None:
        return None if results is None else require_supported("results", results, DESTINATION_SCHEMES)
