"""`MapJob`, the one parameter model of the map flow (rendered as a form in the UI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.batch_map.outputs import OutputFormat
from tasks.engine.parameters import (
    DEFAULT_DESTINATION,
    Callback,
    ComputeBudgetName,
    Destination,
    FollowSymlinks,
    Results,
    TaskRuns,
    refuse_outputs_in_sources,
    require_supported,
)
from tasks.engine.sources import SOURCE_SCHEMES
from tasks.engine.user_code import CODE_PATH
from tasks.storage.locations import JOB_NAME_PATTERN
from tasks.storage.stores import StorageAccess

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "fp16", "bf16"]


class MapJob(BaseModel):
    """Run a user's function over items in batches, one output file per batch."""

    model_config = ConfigDict(extra="forbid")

    items: str = Field(
        min_length=1,
        description="A JSONL file (one object per line, with an id field) or a folder of files (each item is "
        "{'id': relative path, 'bytes': content}): a local path, file://, gs://, gdrive:// or github://.",
    )
    destination: Destination = DEFAULT_DESTINATION
    results: Results = None
    access: StorageAccess = Field(
        default_factory=StorageAccess, description="Blocks whose credentials reach remote items and destinations."
    )
    job: str = Field(pattern=JOB_NAME_PATTERN, description="Job name: letters, digits, '.', '_', '-'.")
    function: str = Field(
        pattern=CODE_PATH.pattern,
        description="package.module:name of a function f(batch) -> results, or of a class whose instances are "
        "called with a batch. On the pool it must lie under the worker's COLABFLOW_ALLOWED_CODE.",
    )
    params: dict[str, str] = Field(
        default_factory=dict, description="Keyword arguments of the class's constructor, as strings."
    )
    id_field: str = Field(default="id", min_length=1, description="The field of a JSONL record that names it.")
    batch_size: int = Field(default=8, ge=1, le=100_000, description="Items per call of the function.")
    output: OutputFormat = Field(default="jsonl", description="jsonl for JSON results; npz or safetensors for arrays.")
    device: Device = Field(default="auto", description="auto: CUDA when the worker has it, else the CPU.")
    precision: Precision = Field(default="fp32", description="fp16 or bf16 run the call under torch.autocast.")
    limit: int | None = Field(default=None, ge=1, description="Run only the first N items, as a trial.")
    task_runs: TaskRuns = 64
    callback: Callback | None = Field(default=None, description="Optional notice sent once when the job ends.")
    refresh_checkpoints: bool = Field(default=False, description="Ignore saved batch checkpoints and run every batch.")
    compute_budget: ComputeBudgetName = None
    follow_symlinks: FollowSymlinks = False

    @field_validator("items")
    @classmethod
    def _readable_items(cls, items: str) -> str:
        return require_supported("items", items, SOURCE_SCHEMES)

    @model_validator(mode="after")
    def _outputs_outside_sources(self) -> MapJob:
        refuse_outputs_in_sources([self.items], {"destination": self.destination, "results": self.results})
        return self

    @model_validator(mode="after")
    def _precision_needs_torch_device(self) -> MapJob:
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision 'fp16' cannot run with device 'cpu' (torch.autocast on the CPU takes "
                             "bf16 only); use bf16, or device auto or cuda")
        return self
