from __future__ import annotations

import pytest

from tasks.engine.item_ids import validate_item_id
from tasks.errors import InvalidChunkError


@pytest.mark.parametrize(
    "chunk_id", ["a.py", "src/deep/a b.txt", "données brutes/résumé été.txt", "日本/語", "x" * 255 + "/a", "x" * 243]
)
def test_accepts_ordinary_relative_paths(chunk_id: str) -> None:
    """Unicode, spaces, nesting, 255-byte folder names and 243-byte file names are valid ids."""
    assert validate_item_id(chunk_id) == chunk_id


@pytest.mark.parametrize(
    ("chunk_id", "message"),
    [
        ("../etc/passwd", "has the segment '..'"),
        ("a/../../b", "has the segment '..'"),
        ("/etc/passwd", "is an absolute path"),
        ("a\x00b", "control character '\\x00'"),
        ("a\nb", "control character '\\n'"),
        ("a\x7fb", "control character"),
        ("a//b", "has the segment ''"),
        ("./a", "has the segment '.'"),
        ("", "item id is empty"),
        ("é" * 128 + "/a", "segment of 256 bytes"),
        ("x" * 244, "ends in a file name of 244 bytes; at most 243"),
        ("d/" + "é" * 122, "ends in a file name of 244 bytes"),
        ("bad\udcffname", "not valid UTF-8"),
    ],
)
def test_rejects_unsafe_ids_with_a_specific_message(chunk_id: str, message: str) -> None:
    """Each unsafe id is rejected, and the message says what is wrong."""
    with pytest.raises(InvalidChunkError, match=None) as caught:
        validate_item_id(chunk_id)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
