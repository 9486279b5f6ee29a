"""One job reading a local folder and a gs:// prefix together, with checkpoints kept on GCS."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.compress_chunks import compress_chunks
from tasks.compression.models import JobReport
from tasks.compression.parameters import CompressJob
from tasks.compression.restore import check_job
from tasks.storage.gcs import GcsStore
from tasks.storage.stores import StorageAccess
from tests.gcs_emulator import BUCKET, gcs_emulator

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsStore]:
    with gcs_emulator() as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        yield GcsStore(BUCKET, StorageAccess())


def test_mixed_sources_and_remote_checkpoints_for_a_local_destination(
    bucket: GcsStore, sample_source: Path, tmp_path: Path
) -> None:
    """Chunk ids from both sources sit side by side; --results puts every checkpoint (task records, done markers) on GCS."""
    prefix = f"mixed-{uuid.uuid4().hex[:8]}"
    bucket.write_bytes(f"{prefix}/input/remote/one.txt", b"from the bucket\n" * 100)
    bucket.write_bytes(f"{prefix}/input/remote/two.bin", bytes(range(256)) * 10)
    request = CompressJob(
        source=[str(sample_source), f"gs://{BUCKET}/{prefix}/input"], destination=str(tmp_path / "out"),
        results=f"gs://{BUCKET}/{prefix}/results", job="mixed", batch_size=4,
    )
    report = compress_chunks(request)
    assert isinstance(report, JobReport) and report.failed == [] and report.compressed == 10
    checkpoints = [info.key for info in bucket.list(f"{prefix}/results/mixed/.checkpoints")]
    markers = [key for key in checkpoints if "/.checkpoints/batches/" in key]
    assert len(markers) == report.batches_total == 3 and len(checkpoints) == 3 + 3, "a done marker and a task record per batch"
    assert not (tmp_path / "out" / "mixed" / ".checkpoints").exists()
    assert (tmp_path / "out" / "mixed" / "chunks" / "remote" / "one.txt.gz").is_file()

    again = compress_chunks(request)
    assert isinstance(again, JobReport) and (again.compressed, again.batches_reused) == (0, 3)
    assert check_job(tmp_path / "out" / "mixed").problems == []
