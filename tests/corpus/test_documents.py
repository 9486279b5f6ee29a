"""Documents read as UTF-8 text in pieces that never cut a word, with binary and other encodings skipped."""

from __future__ import annotations

import io

import pytest

from tasks.corpus.documents import SkippedDocument, text_pieces


def pieces(data: bytes, size: int = 16) -> list[str]:
    return list(text_pieces(io.BytesIO(data), "doc.txt", piece_bytes=size))


def test_pieces_end_between_words_and_join_to_the_whole_text() -> None:
    text = "Le chat dort.\nLa souris danse sur la table de la cuisine.\n" * 5
    found = pieces(text.encode())
    assert "".join(found) == text
    assert all(piece.endswith(("\n", " ")) for piece in found[:-1])


def test_a_multibyte_character_split_by_a_read_is_kept_whole() -> None:
    """Reads of 5 bytes cut 'ā' (2 bytes) and '中' (3 bytes) in the middle; the text survives."""
    text = "dharmakṣetre kurukṣetre samavetā 中文 文本 ।"
    assert "".join(pieces(text.encode(), size=5)) == text


def test_a_byte_order_mark_is_dropped() -> None:
    assert "".join(pieces(b"\xef\xbb\xbfhello world")) == "hello world"


def test_a_document_that_is_not_utf8_is_skipped_naming_the_byte_and_its_offset() -> None:
    with pytest.raises(SkippedDocument, match=r"doc.txt: not UTF-8 \(byte 0xe9 at offset 23\); skipped"):
        pieces("caf\u00e9 ok and more text ".encode() + "\u00e9".encode("latin-1"), size=8)


def test_a_binary_document_is_skipped() -> None:
    with pytest.raises(SkippedDocument, match=r"doc.txt: binary \(a NUL byte in its first 8192 bytes\)"):
        pieces(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")


def test_a_large_document_is_read_in_bounded_pieces() -> None:
    """64 MiB of text in 1 MiB reads: no piece is longer than a read plus the carried word."""
    line = ("word " * 199 + "end\n").encode()
    stream = io.BytesIO(line * (64 * 1024 * 1024 // len(line)))
    longest = max(len(piece) for piece in text_pieces(stream, "big.txt", piece_bytes=1024 * 1024))
    assert longest <= 1024 * 1024 + len(line)
