"""Validation of chunk ids, done before an id names any file."""

from __future__ import annotations

import unicodedata

from tasks.errors import InvalidChunkError

MAX_SEGMENT_BYTES = 255
RECIPE_SUFFIX = ".recipe.json"
MAX_NAME_BYTES = MAX_SEGMENT_BYTES - len(RECIPE_SUFFIX)


def validate_chunk_id(chunk_id: str) -> str:
    """Return `chunk_id` unchanged if it is a safe relative POSIX path, else raise.

    A chunk id becomes part of output file names, so it must not escape the job folder:
    no absolute path, no `..` or `.` segment, no empty segment, no NUL or other control
    character, and no segment longer than 255 bytes in UTF-8. The last segment names the files
    `<name>.gz` and `<name>.recipe.json`, which must fit the usual 255-byte file-name limit, so it
    may have at most 243 bytes. Unicode letters and spaces are fine.
    """
    if not chunk_id:
        raise InvalidChunkError("chunk id is empty; expected a relative path such as 'src/a.py'")
    for character in chunk_id:
        if unicodedata.category(character) == "Cs":
            raise InvalidChunkError(
                f"chunk id {chunk_id!r} is not valid UTF-8; rename the file with a UTF-8 name"
            )
        if unicodedata.category(character) == "Cc":
            raise InvalidChunkError(
                f"chunk id {chunk_id!r} contains the control character {character!r}; "
                "rename the file so that its name has only printable characters"
            )
    if chunk_id.startswith("/"):
        raise InvalidChunkError(
            f"chunk id {chunk_id!r} is an absolute path; expected a path relative to the source root"
        )
    segments = chunk_id.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidChunkError(
                f"chunk id {chunk_id!r} has the segment {segment!r}; expected a normalised "
                "relative path with no '', '.' or '..' segments"
            )
        size = len(segment.encode("utf-8"))
        if size > MAX_SEGMENT_BYTES:
            raise InvalidChunkError(
                f"chunk id {chunk_id!r} has a segment of {size} bytes; at most "
                f"{MAX_SEGMENT_BYTES} bytes per segment are allowed"
            )
    name_size = len(segments[-1].encode("utf-8"))
    if name_size > MAX_NAME_BYTES:
        raise InvalidChunkError(
            f"chunk id {chunk_id!r} ends in a file name of {name_size} bytes; at most {MAX_NAME_BYTES} "
            f"bytes are allowed, so that '<name>{RECIPE_SUFFIX}' fits the 255-byte file-name limit; "
            "rename the file"
        )
    return chunk_id
