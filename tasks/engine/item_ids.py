"""Validation of item ids, done before an id names any file."""

from __future__ import annotations

import unicodedata

from tasks.errors import InvalidChunkError

MAX_SEGMENT_BYTES = 255
# Room for the longest suffix a kind adds to an item's name (compression's ".recipe.json").
MAX_SUFFIX_BYTES = 12
MAX_NAME_BYTES = MAX_SEGMENT_BYTES - MAX_SUFFIX_BYTES


def validate_item_id(item_id: str) -> str:
    """Return `item_id` unchanged if it is a safe relative POSIX path, else raise.

    An item id becomes part of output file names, so it must not escape the job folder:
    no absolute path, no `..` or `.` segment, no empty segment, no NUL or other control
    character, and no segment longer than 255 bytes in UTF-8. The last segment names files with a
    suffix of up to 12 bytes (compression's `<name>.recipe.json`), which must fit the usual
    255-byte file-name limit, so it may have at most 243 bytes. Unicode letters and spaces are fine.
    """
    if not item_id:
        raise InvalidChunkError("item id is empty; expected a relative path such as 'src/a.py'")
    # A printable string holds no control character and no surrogate, so most ids skip the scan.
    for character in "" if item_id.isprintable() else item_id:
        if unicodedata.category(character) == "Cs":
            raise InvalidChunkError(
                f"item id {item_id!r} is not valid UTF-8; rename the file with a UTF-8 name"
            )
        if unicodedata.category(character) == "Cc":
            raise InvalidChunkError(
                f"item id {item_id!r} contains the control character {character!r}; "
                "rename the file so that its name has only printable characters"
            )
    if item_id.startswith("/"):
        raise InvalidChunkError(
            f"item id {item_id!r} is an absolute path; expected a path relative to the source root"
        )
    segments = item_id.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidChunkError(
                f"item id {item_id!r} has the segment {segment!r}; expected a normalised "
                "relative path with no '', '.' or '..' segments"
            )
        size = len(segment.encode("utf-8"))
        if size > MAX_SEGMENT_BYTES:
            raise InvalidChunkError(
                f"item id {item_id!r} has a segment of {size} bytes; at most "
                f"{MAX_SEGMENT_BYTES} bytes per segment are allowed"
            )
    name_size = len(segments[-1].encode("utf-8"))
    if name_size > MAX_NAME_BYTES:
        raise InvalidChunkError(
            f"item id {item_id!r} ends in a file name of {name_size} bytes; at most {MAX_NAME_BYTES} "
            f"bytes are allowed, so that '<name>' plus a {MAX_SUFFIX_BYTES}-byte suffix fits the 255-byte file-name limit; "
            "rename the file"
        )
    return item_id
