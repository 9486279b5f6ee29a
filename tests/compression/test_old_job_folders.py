"""A job folder written by an older checkpoint format resumes through its recipes, recompressing nothing.

`tests/data/format-1-jobs/format-1` was written by colabflow at checkpoint format 1 (commit a7fab41),
whose Prefect result records name `tasks.models.BatchResult`, a class that no longer exists.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from flows.compress_chunks import compress_chunks
from tasks.compression.parameters import CompressJob
from tasks.compression.restore import check_job

pytestmark = pytest.mark.usefixtures("prefect_api")

OLD_JOB = Path(__file__).parents[1] / "data" / "format-1-jobs" / "format-1"


def format_1_key(destination: str, job: str, recipes: list[dict[str, object]]) -> str:
    """The key format 1 gave a batch: its chunks, the codec and the destination, with the format first."""
    first = recipes[0]
    content = json.dumps(
        [1, destination, job, first["codec"], first["codec_version"], first["level"],
         [[recipe["chunk_id"], recipe["original_sha256"]] for recipe in recipes]],
        separators=(",", ":"),
    )
    return "batch-" + hashlib.sha256(content.encode()).hexdigest()


def place_old_job(destination: Path) -> Path:
    """Copy the format-1 job under `destination`, its checkpoints renamed to the keys format 1 gives there."""
    job_dir = destination / OLD_JOB.name
    shutil.copytree(OLD_JOB, job_dir)
    for record in sorted((job_dir / ".checkpoints").iterdir()):
        result = json.loads(json.loads(record.read_text())["result"])
        assert result["__class__"] == "tasks.models.BatchResult"
        record.rename(record.with_name(format_1_key(str(destination), OLD_JOB.name, result["data"]["recipes"])))
    return job_dir


def gz_digests(job_dir: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (job_dir / "chunks").rglob("*.gz")}


def test_a_format_1_job_folder_resumes_through_its_recipes(sample_source: Path, tmp_path: Path) -> None:
    """Old records at the keys format 1 would look up are left alone; every chunk is found at the destination."""
    destination = tmp_path / "out"
    job_dir = place_old_job(destination)
    before = gz_digests(job_dir)
    report = compress_chunks(CompressJob(
        source=[str(sample_source)], destination=str(destination), job=OLD_JOB.name, batch_size=3,
    ))
    assert (report.chunks_total, report.compressed, report.reused, report.failed) == (8, 0, 8, [])
    assert gz_digests(job_dir) == before
    assert (job_dir / "manifest.jsonl").read_bytes() == (OLD_JOB / "manifest.jsonl").read_bytes()
    check = check_job(str(job_dir))
    assert (check.items, check.problems) == (8, [])
