"""The fingerprint cache: which chunks a rerun may take from it, and which it must read again."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from flows.compress_chunks import compress_chunks
from tasks.compression.kind import prepare_job
from tasks.compression.parameters import CompressJob
from tasks.engine.fingerprints import (
    FINGERPRINTS_NAME,
    SETTLED_SECONDS,
    FingerprintCache,
    cache_of,
    local_version,
    read_fingerprints,
    reuse_fingerprints,
    write_fingerprints,
)
from tasks.engine.job_folder import open_job_folder
from tasks.engine.models import ItemFingerprint, ItemRef, JobPlan
from tasks.engine.planning import plan_job_with_cache
from tasks.storage.stores import StorageAccess
from tests.github_fake import serve_repository
from tests.servers import wait_until

SHA = "a" * 64


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(uri: str, version: str | None) -> ItemFingerprint:
    return ItemFingerprint(item_id=uri, uri=uri, size=3, version=version, sha256=SHA)


def test_a_file_changed_just_now_has_no_version_until_it_settles(tmp_path: Path) -> None:
    """Within SETTLED_SECONDS of its last change a file is not trusted; later it is."""
    path = tmp_path / "a"
    path.write_bytes(b"abc")
    stat = path.stat()
    assert local_version(stat, time.time()) is None
    assert local_version(stat, time.time() + SETTLED_SECONDS + 1) is not None


def test_rewriting_a_file_with_its_old_times_still_changes_its_version(tmp_path: Path) -> None:
    """Same size and modification time but new content: the change time moves, so the version does."""
    path = tmp_path / "a"
    path.write_bytes(b"abc")
    before = path.stat()
    later = time.time() + 60
    path.write_bytes(b"xyz")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert after.st_mtime_ns == before.st_mtime_ns and after.st_size == before.st_size
    assert local_version(after, later) != local_version(before, later)


def test_only_chunks_listed_with_the_cached_version_are_reused() -> None:
    """Same version: reused; another version, no version, or not cached: read again."""
    cache = cache_of([fingerprint("same", "v1"), fingerprint("changed", "v1"), fingerprint("unversioned", "v1")])
    refs = [
        ItemRef(item_id="same", uri="same", size=3, version="v1"),
        ItemRef(item_id="changed", uri="changed", size=3, version="v2"),
        ItemRef(item_id="unversioned", uri="unversioned", size=3, version=None),
        ItemRef(item_id="new", uri="new", size=3, version="v1"),
    ]
    known = reuse_fingerprints(refs, cache)
    assert list(known) == ["same"] and known["same"].sha256 == SHA and known["same"].version == "v1"


def test_chunks_without_a_version_stay_out_of_the_cache() -> None:
    """A fingerprint whose source gave no version is never cached."""
    assert list(cache_of([fingerprint("a", None), fingerprint("b", "v")]).entries) == ["b"]


def test_the_cache_round_trips_and_a_corrupt_one_reads_as_empty(tmp_path: Path) -> None:
    """Written then read gives the same cache; garbage in the file gives an empty cache, not an error."""
    folder = open_job_folder(str(tmp_path), "job")
    cache = cache_of([fingerprint("a", "v")])
    write_fingerprints(folder, cache)
    assert read_fingerprints(folder) == cache
    (tmp_path / "job" / FINGERPRINTS_NAME).write_text("{not json")
    assert read_fingerprints(folder) == FingerprintCache()


def settled(source: Path) -> bool:
    """Whether every file under `source` was last changed long enough ago to be trusted."""
    now = time.time()
    return all(local_version(path.stat(), now) is not None for path in source.rglob("*") if path.is_file())


def test_a_rerun_reads_only_changed_chunks_and_a_refresh_reads_all(sample_source: Path, tmp_path: Path) -> None:
    """Settled files are read once; a changed one is read again; refresh_checkpoints reads every one."""
    wait_until(lambda: settled(sample_source), 30, 0.1, "the sample files to settle")
    settings = prepare_job(str(tmp_path / "out"), "job", "cpu", 6)

    def plan(refresh: bool = False) -> JobPlan:
        return plan_job_with_cache([str(sample_source)], 3, 1 << 20, settings, refresh)

    first, second = plan(), plan()
    assert (first.items_read, second.items_read) == (8, 0)
    assert second.batches == first.batches
    (sample_source / "README.md").write_text("changed\n")
    third = plan()
    assert third.items_read == 1
    assert {chunk.item_id: chunk.sha256 for batch in third.batches for chunk in batch}["README.md"] == sha256_hex(b"changed\n")
    assert plan(refresh=True).items_read == 8


@pytest.mark.usefixtures("prefect_api")
def test_a_rerun_of_a_github_job_downloads_nothing(httpserver: HTTPServer, tmp_path: Path) -> None:
    """Git blob ids identify content, so a rerun plans from the cache and asks GitHub for no blob."""
    files = {f"data/part-{index}.txt": f"part {index}\n".encode() * 50 for index in range(4)}
    repository = serve_repository(httpserver, files)
    request = CompressJob(source=[f"github://{repository}@main/data"], destination=str(tmp_path / "out"), job="gh",
                          access=StorageAccess(github_api_url=httpserver.url_for("/")))
    first = compress_chunks(request)
    blob_requests = sum("/git/blobs/" in entry.path for entry, _ in httpserver.log)
    second = compress_chunks(request)
    assert (first.chunks_read, first.compressed) == (4, 4)
    assert (second.chunks_read, second.compressed, second.reused) == (0, 0, 4)
    assert sum("/git/blobs/" in entry.path for entry, _ in httpserver.log) == blob_requests
