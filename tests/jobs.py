"""Build a job folder with the plain stage functions, no Prefect involved."""

from __future__ import annotations

from pathlib import Path

from tasks.compression.kind import compress_batch, prepare_job
from tasks.compression.models import Recipe, recipe_of
from tasks.engine.manifest import write_manifest
from tasks.engine.models import BatchResult
from tasks.engine.planning import plan_job


def build_job(source: Path, destination: Path, job: str = "job", batch_size: int = 3) -> list[BatchResult]:
    """Compress `source` into `destination/job` and write its manifest."""
    settings = prepare_job(str(destination), job, "cpu", 6)
    plan = plan_job([str(source)], batch_size, 10**9)
    results = [compress_batch(batch, settings) for batch in plan.batches]
    write_manifest(settings, [output for result in results for output in result.outputs])
    return results


def recipes_of(result: BatchResult) -> list[Recipe]:
    """The recipes of a compression batch's outputs."""
    return [recipe_of(output) for output in result.outputs]
