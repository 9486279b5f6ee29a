"""Records shared by the jobs of one destination, keyed by content and kind identity, never the job."""

from __future__ import annotations

from pathlib import Path

from tasks.engine.shared_results import SharedResults, shared_key
from tasks.storage.stores import StorageAccess


def test_a_record_written_by_one_job_is_found_by_the_next(tmp_path: Path) -> None:
    """Two jobs' views of the destination read the same record: the key holds no job name."""
    key = shared_key("counts-v1", "fr", "ab" * 32)
    SharedResults(str(tmp_path), StorageAccess(), "corpus").write(key, b'{"tokens": 3}')
    assert SharedResults(str(tmp_path), StorageAccess(), "corpus").read(key) == b'{"tokens": 3}'
    assert (tmp_path / ".colabflow" / "shared" / "corpus" / key[:2] / f"{key}.json").is_file()


def test_an_unknown_record_is_absent_and_kinds_do_not_see_each_others(tmp_path: Path) -> None:
    key = shared_key("x")
    SharedResults(str(tmp_path), StorageAccess(), "corpus").write(key, b"{}")
    assert SharedResults(str(tmp_path), StorageAccess(), "corpus").read(shared_key("y")) is None
    assert SharedResults(str(tmp_path), StorageAccess(), "batch_map").read(key) is None


def test_the_key_is_canonical_json_of_its_parts() -> None:
    """Dict order does not change a key; any changed part does."""
    assert shared_key({"a": 1, "b": 2}, "fr") == shared_key({"b": 2, "a": 1}, "fr")
    assert shared_key({"a": 1}, "fr") != shared_key({"a": 1}, "de")
