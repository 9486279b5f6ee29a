"""gdrive:// as a chunk source: tasks.engine.sources lists and reads a Drive folder on the fake Drive server."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocks.drive import DriveFolder
from tasks.engine.sources import list_sources, read_chunk
from tasks.errors import SourceNotFoundError
from tasks.storage.stores import StorageAccess
from tests.drive_server import FakeDrive, fake_drive


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    with fake_drive(max_page_size=2) as fake:
        yield fake


@pytest.fixture
def access(prefect_api: str, drive: FakeDrive) -> StorageAccess:
    """Credentials for the fake: a saved DriveFolder block pointing at it."""
    name = f"drive-source-{uuid.uuid4().hex[:8]}"
    DriveFolder(api_endpoint=drive.endpoint).save(name)
    return StorageAccess(drive=name)


def corpus(drive: FakeDrive) -> dict[str, bytes]:
    """A folder `corpus` with a subfolder, five files, a Google Doc and a file whose name is no chunk id."""
    top = drive.add_folder("corpus", drive.root)
    deeper = drive.add_folder("deeper", drive.add_folder("sub", top))
    files = {"a.txt": (top, b"alpha\n"), "b.bin": (top, bytes(range(256))), "empty.txt": (top, b""),
             "sub/c.txt": (drive.file_at("corpus/sub").id, b"gamma\n"), "sub/deeper/d.txt": (deeper, b"delta\n")}
    for chunk_id, (parent, content) in files.items():
        drive.add_file(chunk_id.rpartition("/")[2], parent, content)
    drive.add_document("notes", top)
    drive.add_file("bad\nname", top, b"x")
    return {chunk_id: content for chunk_id, (_, content) in files.items()}


def test_a_drive_folder_is_listed_and_read_as_chunks(drive: FakeDrive, access: StorageAccess,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Every binary file below the folder is a chunk with its bytes; a Google Doc is skipped with a warning."""
    expected = corpus(drive)
    with caplog.at_level(logging.WARNING, logger="colabflow.drive"):
        refs, failures = list_sources([f"gdrive://{drive.root}/corpus"], access)
    assert [(ref.item_id, ref.size) for ref in refs] == [(key, len(value)) for key, value in sorted(expected.items())]
    assert refs[0].uri == f"gdrive://{drive.root}/corpus/a.txt"
    assert {ref.item_id: read_chunk(ref.uri, access) for ref in refs} == expected
    assert "skipping corpus/notes: a Google Docs/Sheets/Slides file (application/vnd.google-apps.document)" in caplog.text
    assert [failure.item_id for failure in failures] == ["bad\nname"]


def test_drive_and_local_sources_mix_in_one_job(drive: FakeDrive, access: StorageAccess, tmp_path: Path) -> None:
    """A gdrive:// folder and a local folder give one chunk list; a chunk id found in both is reported."""
    corpus(drive)
    (tmp_path / "local.txt").write_bytes(b"local")
    (tmp_path / "a.txt").write_bytes(b"clash")
    refs, failures = list_sources([f"gdrive://{drive.root}/corpus", str(tmp_path)], access)
    assert "local.txt" in [ref.item_id for ref in refs]
    assert next(ref for ref in refs if ref.item_id == "a.txt").uri.startswith("gdrive://")
    assert [failure.item_id for failure in failures if "unique within a job" in failure.reason] == ["a.txt"]


def test_a_google_doc_named_as_the_source_is_no_source(drive: FakeDrive, access: StorageAccess) -> None:
    """A source that is itself a Google Doc has no bytes: the job is told the source holds no files."""
    corpus(drive)
    with pytest.raises(SourceNotFoundError, match=r"gdrive://.*/corpus/notes' does not exist or holds no files"):
        list_sources([f"gdrive://{drive.root}/corpus/notes"], access)
