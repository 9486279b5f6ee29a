from __future__ import annotations

from pathlib import Path

import pytest

from tasks.engine.sources import list_sources, open_source, read_chunk
from tasks.errors import EmptySourceError, InvalidParameterError, SourceNotFoundError
from tasks.storage.locations import local_path
from tests.conftest import SAMPLE


def test_ids_are_posix_paths_relative_to_the_source_root() -> None:
    """Listing the sample gives relative POSIX ids, Unicode and spaces included."""
    refs, failures = list_sources([str(SAMPLE)])
    ids = {ref.item_id for ref in refs}
    assert "données brutes/résumé été.txt" in ids
    assert "src/callback.py.txt" in ids
    assert failures == []
    assert all(ref.uri.startswith("file:///") for ref in refs)


def test_file_uri_and_plain_path_list_the_same_chunks() -> None:
    """A file:// URI names the same chunks as the plain path."""
    by_path, _ = list_sources([str(SAMPLE)])
    by_uri, _ = list_sources([SAMPLE.absolute().as_uri()])
    assert by_path == by_uri


def test_a_list_of_files_uses_their_names_as_ids(tmp_path: Path) -> None:
    """Single files contribute their base name; bytes read back through the URI."""
    (tmp_path / "a.txt").write_bytes(b"alpha")
    refs, _ = list_sources([str(tmp_path / "a.txt")])
    assert [ref.item_id for ref in refs] == ["a.txt"]
    assert read_chunk(refs[0].uri) == b"alpha"


def test_a_missing_source_names_its_path(tmp_path: Path) -> None:
    """A source that does not exist fails with its path in the message."""
    missing = tmp_path / "nope"
    with pytest.raises(SourceNotFoundError, match=f"source '{missing}' does not exist"):
        list_sources([str(missing)])


def test_an_empty_source_says_so(tmp_path: Path) -> None:
    """A directory with no files is an error, not an empty success."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptySourceError, match="contains no files"):
        list_sources([str(tmp_path / "empty")])


def test_a_file_with_a_control_character_fails_alone(tmp_path: Path) -> None:
    """A bad name becomes a failure with the reason; the other chunks are listed."""
    (tmp_path / "good.txt").write_bytes(b"ok")
    (tmp_path / "bad\x01name.txt").write_bytes(b"bad")
    refs, failures = list_sources([str(tmp_path)])
    assert [ref.item_id for ref in refs] == ["good.txt"]
    assert len(failures) == 1
    assert "control character" in failures[0].reason


def test_duplicate_ids_across_locations_are_reported(tmp_path: Path) -> None:
    """Two files with the same id in one job: the second is a failure naming both."""
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.txt").write_bytes(folder.encode())
    refs, failures = list_sources([str(tmp_path / "one"), str(tmp_path / "two")])
    assert len(refs) == 1
    assert "chunk ids must be unique" in failures[0].reason


def test_unknown_schemes_are_refused_with_the_scheme_named() -> None:
    """A scheme this version cannot read is named in the error."""
    with pytest.raises(InvalidParameterError, match="'s3://'"):
        open_source("s3://bucket/key")


def test_file_uris_with_a_host_are_refused() -> None:
    """file://host/path is not a local file; the message shows the right form."""
    with pytest.raises(InvalidParameterError, match="file:///absolute/path"):
        local_path("file://server/share/a")


def test_a_chunk_that_vanished_after_listing_says_so(tmp_path: Path) -> None:
    """Reading a chunk deleted since it was listed is a clear error."""
    path = tmp_path / "gone.txt"
    with pytest.raises(SourceNotFoundError, match="disappeared after it was listed"):
        read_chunk(path.as_uri())
