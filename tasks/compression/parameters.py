"""`CompressJob`, the one parameter model of the compress flow (rendered as a form in the UI)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.compression.codecs import CodecChoice
from tasks.engine.parameters import (
    DEFAULT_DESTINATION,
    Callback,
    ComputeBudgetName,
    Destination,
    FollowSymlinks,
    Results,
    Sources,
    TaskRuns,
    refuse_outputs_in_sources,
)
from tasks.storage.locations import JOB_NAME_PATTERN
from tasks.storage.stores import StorageAccess


class CompressJob(BaseModel):
    """Compress every chunk of a source into standard gzip members at a destination."""

    model_config = ConfigDict(extra="forbid")

    source: Sources = Field(
        description="Chunk files or folders, mixed freely: local paths, file://, github://OWNER/REPO@REF/PATH, "
        "gs://BUCKET/PATH, gdrive://FOLDER_ID/PATH.",
    )
    destination: Destination = DEFAULT_DESTINATION
    results: Results = None
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
    task_runs: TaskRuns = 64
    callback: Callback | None = Field(default=None, description="Optional notice sent once when the job ends.")
    refresh_checkpoints: bool = Field(
        default=False, description="Ignore saved batch checkpoints and check every chunk again."
    )
    compute_budget: ComputeBudgetName = None
    follow_symlinks: FollowSymlinks = False

    @model_validator(mode="after")
    def _outputs_outside_sources(self) -> CompressJob:
        refuse_outputs_in_sources(self.source, {"destination": self.destination, "results": self.results})
        return self
