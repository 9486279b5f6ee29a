"""CheckpointStorage: Prefect result storage on any location, sync and async, JSON results only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer, PickleSerializer

from blocks.checkpoints import CheckpointStorage
from tasks.errors import CorruptOutputError
from tests.gcs_emulator import BUCKET, gcs_emulator


@pytest.fixture(params=["local", "gcs"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CheckpointStorage]:
    if request.param == "local":
        yield CheckpointStorage(location=str(tmp_path / "checkpoints"))
        return
    with gcs_emulator() as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        # A fresh path: stores are reused per location within a process, and this emulator is new.
        yield CheckpointStorage(location=f"gs://{BUCKET}/checkpoints-{uuid.uuid4().hex[:8]}")


def test_paths_round_trip_sync_and_async(storage: CheckpointStorage) -> None:
    """write_path/read_path and their async twins store and return the same bytes under the location."""
    assert storage.write_path("batch-a", b'{"a": 1}').endswith("/batch-a")
    assert storage.read_path("batch-a") == b'{"a": 1}'
    asyncio.run(storage.awrite_path("batch-b", b"[2]"))
    assert asyncio.run(storage.aread_path("batch-b")) == b"[2]"


def test_json_results_load_and_pickled_ones_are_refused(storage: CheckpointStorage) -> None:
    """Prefect's ResultStore reads back a JSON result; a pickled one is refused, naming the serializer."""
    ResultStore(result_storage=storage, serializer=JSONSerializer()).write({"ratio": 2.5}, key="plain")
    assert ResultStore(result_storage=storage, serializer=JSONSerializer()).read("plain").result == {"ratio": 2.5}
    ResultStore(result_storage=storage, serializer=PickleSerializer()).write({"ratio": 2.5}, key="pickled")
    with pytest.raises(CorruptOutputError, match="pickled' was written with the serializer.*pickle"):
        storage.read_path("pickled")
    with pytest.raises(CorruptOutputError, match="never loads pickled"):
        ResultStore(result_storage=storage, serializer=JSONSerializer()).read("pickled")
