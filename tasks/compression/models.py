"""Compression's own models: the recipe of a chunk, its manifest line, the codec options and the job report."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from tasks.compression.codecs import CodecChoice
from tasks.engine.models import (
    Frozen,
    ItemOutput,
    JobReportBase,
    JobSettings,
    RunSummary,
)

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


class JobReport(JobReportBase):
    """What a compression job did. The flow returns it and the callback carries it."""

    chunks_total: int
    compressed: int
    reused: int
    bytes_in: int
    bytes_out: int
    batches_total: int
    batches_reused: int
    chunks_read: int = Field(ge=0, description="Chunks read and hashed to plan this run; the rest came from the fingerprint cache.")


class CodecOptions(Frozen):
    """The codec a job resolved to: compression's identity in every checkpoint key."""

    codec_choice: CodecChoice
    codec: str
    codec_version: str
    level: int = Field(ge=0, le=9)

    @classmethod
    def of(cls, settings: JobSettings) -> CodecOptions:
        return cls.model_validate(settings.options)


def recipe_output(recipe: Recipe, output: str) -> ItemOutput:
    """A recipe as the engine's record of its chunk; `output` is the member's key below the job folder."""
    return ItemOutput(
        item_id=recipe.chunk_id, input_sha256=recipe.original_sha256, input_size=recipe.original_size,
        output=output, output_size=recipe.compressed_size, output_sha256=recipe.compressed_sha256,
        created_at=recipe.created_at, details=recipe.model_dump(mode="json"),
    )


def recipe_of(output: ItemOutput) -> Recipe:
    """The recipe an output record carries."""
    return Recipe.model_validate(output.details)


def compression_report(summary: RunSummary) -> JobReport:
    """The engine's count of a run, in compression's words."""
    return JobReport(
        **summary.model_dump(include=set(JobReportBase.model_fields)),
        chunks_total=summary.items_total, compressed=summary.items_done, reused=summary.items_reused,
        bytes_in=summary.bytes_in, bytes_out=summary.bytes_out, batches_total=summary.batches_total,
        batches_reused=summary.batches_reused, chunks_read=summary.items_read,
    )
