from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.engine.sources import list_sources, open_source, read_chunk, scan_sources
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


def test_a_source_of_links_left_out_says_which_and_why(tmp_path: Path) -> None:
    """Only links outside, and no file: the error names each link with its reason, so the user knows what to add."""
    (tmp_path / "src").mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "src" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(EmptySourceError, match=r"contains no files \(1 symlink left out: leak\.txt: a symlink to .*"
                                               r"secret\.txt, outside the source; --follow-symlinks includes it\)"):
        list_sources([str(tmp_path / "src")])


def test_links_left_out_are_listed_and_follow_symlinks_lists_them_as_chunks(tmp_path: Path) -> None:
    """The link is skipped with its reason by default; followed, its chunk reads the outside file's bytes."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"alpha")
    (tmp_path / "secret.txt").write_bytes(b"secret")
    (tmp_path / "src" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    listing = scan_sources([str(tmp_path / "src")])
    assert [ref.item_id for ref in listing.refs] == ["a.txt"] and listing.failures == []
    assert [(entry.item_id, entry.reason.endswith("outside the source; --follow-symlinks includes it"))
            for entry in listing.skipped] == [("leak.txt", True)]
    followed = scan_sources([str(tmp_path / "src")], follow_symlinks=True)
    assert [ref.item_id for ref in followed.refs] == ["a.txt", "leak.txt"] and followed.skipped == []
    assert read_chunk(followed.refs[1].uri) == b"secret"


def test_a_source_file_named_directly_is_read_even_as_a_link(tmp_path: Path) -> None:
    """The user named it: a source that is itself a link to a file elsewhere is taken."""
    (tmp_path / "elsewhere.txt").write_bytes(b"named")
    (tmp_path / "named.txt").symlink_to(tmp_path / "elsewhere.txt")
    listing = scan_sources([str(tmp_path / "named.txt")])
    assert [ref.item_id for ref in listing.refs] == ["named.txt"] and listing.skipped == []


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


def test_a_link_with_a_name_that_is_not_utf8_is_reported_in_printable_text(tmp_path: Path) -> None:
    """Its name and target come back with backslash escapes, so the report's JSON can carry them."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"alpha")
    os.symlink(b"/etc/passwd", os.fsencode(tmp_path / "src") + b"/caf\xe9")
    [entry] = scan_sources([str(tmp_path / "src")]).skipped
    assert entry.item_id == "caf\\xe9" and entry.model_dump_json()
