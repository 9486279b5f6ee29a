"""The GCS fake enforces preconditions as GCS documents them, over real HTTP with google-cloud-storage."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core.exceptions import NotFound, NotModified, PreconditionFailed
from google.auth.credentials import AnonymousCredentials
from google.cloud.storage import Bucket, Client

from tests.gcs_fake import BUCKET, gcs_fake

RESUMABLE_CHUNK = 256 * 1024
WINS_PER_PROCESS = 100


def fake_bucket(url: str) -> Bucket:
    return Client(project="colabflow-fake", credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                  client_options={"api_endpoint": url}).bucket(BUCKET)


@pytest.fixture
def fake() -> Iterator[str]:
    with gcs_fake() as url:
        yield url


@pytest.fixture
def bucket(fake: str) -> Bucket:
    return fake_bucket(fake)


def upload(bucket: Bucket, key: str, data: bytes, kind: str, **precondition: int) -> None:
    """Upload as a multipart request, or as a resumable upload in 256 KiB chunks."""
    blob = bucket.blob(key)
    if kind == "resumable":
        blob.chunk_size = RESUMABLE_CHUNK
    blob.upload_from_string(data, **precondition)


@pytest.mark.parametrize("kind", ["multipart", "resumable"])
def test_a_stale_generation_is_refused_with_412_and_the_current_one_accepted(bucket: Bucket, kind: str) -> None:
    """ifGenerationMatch: 0 creates only, the current generation replaces, a stale one gets 412 conditionNotMet."""
    data = os.urandom(3 * RESUMABLE_CHUNK // 2)
    with pytest.raises(PreconditionFailed):
        upload(bucket, "shared/x", data, kind, if_generation_not_match=0)
    upload(bucket, "shared/x", data, kind, if_generation_match=0)
    first = bucket.get_blob("shared/x").generation
    upload(bucket, "shared/x", data[::-1], kind, if_generation_match=first)
    second = bucket.get_blob("shared/x").generation
    assert second > first
    with pytest.raises(PreconditionFailed) as refused:
        upload(bucket, "shared/x", b"stale", kind, if_generation_match=first)
    assert "conditionNotMet" in str(refused.value)
    with pytest.raises(PreconditionFailed):
        upload(bucket, "shared/x", b"create only", kind, if_generation_match=0)
    assert bucket.blob("shared/x").download_as_bytes() == data[::-1]
    assert bucket.get_blob("shared/x").generation == second


def test_a_simple_media_upload_is_checked_too(fake: str, bucket: Bucket) -> None:
    """uploadType=media names its object in the query: a stale generation gets 412, the live one 200."""
    bucket.blob("shared/x").upload_from_string(b"one", if_generation_match=0)
    generation = bucket.get_blob("shared/x").generation
    answers = [requests.post(f"{fake}/upload/storage/v1/b/{BUCKET}/o", data=data, timeout=30, params={
        "uploadType": "media", "name": "shared/x", "ifGenerationMatch": str(precondition)})
        for data, precondition in [(b"stale", generation - 1), (b"two", generation)]]
    assert [answer.status_code for answer in answers] == [412, 200]
    assert bucket.blob("shared/x").download_as_bytes() == b"two"


def test_a_resumable_upload_is_refused_at_its_end_when_another_write_landed_meanwhile(bucket: Bucket) -> None:
    """The session's precondition is checked again when it completes, not only when it starts."""
    bucket.blob("shared/x").upload_from_string(b"one", if_generation_match=0)
    generation = bucket.get_blob("shared/x").generation
    session = bucket.blob("shared/x").create_resumable_upload_session(if_generation_match=generation)
    bucket.blob("shared/x").upload_from_string(b"two", if_generation_match=generation)
    answer = requests.put(session, data=b"late", headers={"Content-Range": "bytes 0-3/4"}, timeout=30)
    assert answer.status_code == 412
    assert answer.json()["error"]["errors"][0]["reason"] == "conditionNotMet"
    assert bucket.blob("shared/x").download_as_bytes() == b"two"


def test_reads_and_deletes_check_the_generation_and_metageneration(bucket: Bucket) -> None:
    """A stale read or delete gets 412, a NotMatch read of the live generation 304, an old generation 404."""
    bucket.blob("shared/x").upload_from_string(b"one", if_generation_match=0)
    old = bucket.get_blob("shared/x")
    bucket.blob("shared/x").upload_from_string(b"two", if_generation_match=old.generation)
    live = bucket.get_blob("shared/x")
    assert live.metageneration == 1
    with pytest.raises(PreconditionFailed):
        bucket.blob("shared/x").download_as_bytes(if_generation_match=old.generation)
    with pytest.raises(PreconditionFailed):
        bucket.get_blob("shared/x", if_metageneration_match=2)
    with pytest.raises(NotModified):
        bucket.blob("shared/x").download_as_bytes(if_generation_not_match=live.generation)
    with pytest.raises(NotFound):
        old.download_as_bytes()
    with pytest.raises(PreconditionFailed):
        bucket.blob("shared/x").delete(if_generation_match=old.generation)
    assert bucket.blob("shared/x").download_as_bytes(if_generation_match=live.generation) == b"two"
    bucket.blob("shared/x").delete(if_generation_match=live.generation)
    assert bucket.get_blob("shared/x") is None


def count_up(url: str, wins: int, start: Any, results: Path) -> None:
    """Add 1 to the counter object `wins` times, each a read and a write guarded by the generation read."""
    bucket = fake_bucket(url)
    start.wait(timeout=120)
    won: list[int] = []
    refused = 0
    while len(won) < wins:
        generation = bucket.get_blob("counter").generation
        try:
            value = int(bucket.blob("counter").download_as_bytes(if_generation_match=generation))
            bucket.blob("counter").upload_from_string(b"%d" % (value + 1), if_generation_match=generation)
        except PreconditionFailed:
            refused += 1
            continue
        won.append(generation)
    results.write_text(json.dumps({"won": won, "refused": refused}))


def test_two_processes_racing_see_exactly_one_winner_per_generation(fake: str, tmp_path: Path) -> None:
    """Two processes count to 100 each on one object: it ends at 200, and no generation was won twice."""
    fake_bucket(fake).blob("counter").upload_from_string(b"0", if_generation_match=0)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    writers = [context.Process(target=count_up, args=(fake, WINS_PER_PROCESS, start, tmp_path / f"{name}.json"))
               for name in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    a, b = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("a", "b"))
    assert fake_bucket(fake).blob("counter").download_as_bytes() == b"%d" % (2 * WINS_PER_PROCESS)
    assert len(set(a["won"]) | set(b["won"])) == 2 * WINS_PER_PROCESS
    assert a["refused"] + b["refused"] > 0, "the two processes never raced"
