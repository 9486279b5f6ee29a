"""Reading a document as text, in pieces, with its memory bounded whatever its size.

A document is read as UTF-8 (a byte-order mark is dropped), `PIECE_BYTES` at a time, and handed
on in pieces that end at a line break (or, in a line longer than a piece, at a space), so no word
is cut in two. A document whose first bytes hold a NUL is binary; one that is not UTF-8 is
refused where the first bad byte is found. Either is skipped: the job lists it among its failed
items (and in quarantine.jsonl) with the reason, and never counts it in part.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import BinaryIO

from tasks.errors import ColabflowError

PIECE_BYTES = 4 * 1024 * 1024
SNIFF_BYTES = 8192


class SkippedDocument(ColabflowError):
    """A document that is not text this analysis can count; the message says why. Never retried."""


def text_pieces(stream: BinaryIO, name: str, piece_bytes: int = PIECE_BYTES) -> Iterator[str]:
    """The document's text in pieces that end between words; SkippedDocument for binary or non-UTF-8 bytes."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    carried, offset, first = "", 0, True
    while True:
        data = stream.read(piece_bytes)
        if first and b"\0" in data[:SNIFF_BYTES]:
            raise SkippedDocument(f"{name}: binary (a NUL byte in its first {SNIFF_BYTES} bytes); skipped")
        first = False
        try:
            text = carried + decoder.decode(data, final=not data)
        except UnicodeDecodeError as error:  # error.object is the decoder's held-back bytes, then `data`
            where = offset + len(data) - len(error.object) + error.start
            raise SkippedDocument(
                f"{name}: not UTF-8 (byte 0x{error.object[error.start]:02x} at offset {where}); "
                "skipped: convert it to UTF-8 to count it"
            ) from None
        offset += len(data)
        if not data:
            if text:
                yield text
            return
        cut = _last_break(text)
        carried = text[cut:]
        if cut:
            yield text[:cut]


def _last_break(text: str) -> int:
    """Where a piece may end: after its last line break, else its last space, else nowhere (0)."""
    for separator in ("\n", " "):
        position = text.rfind(separator)
        if position >= 0:
            return position + 1
    return 0
