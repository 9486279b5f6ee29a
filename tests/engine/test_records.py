"""Records as items: a JSONL file read once, each line an item named by its id field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tasks.engine.records import canonical_json, is_records_location, read_records
from tasks.errors import EmptySourceError, InvalidParameterError


def write_lines(path: Path, *lines: str) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_each_line_is_an_item_with_its_object_and_canonical_hash(tmp_path: Path) -> None:
    """Ids come from the id field (integers as text); the sha256 is that of the canonical JSON."""
    items = read_records(write_lines(tmp_path / "items.jsonl", '{"id": "a", "text": "hé"}', "", '{"text": "b", "id": 7}'), "id")
    assert [item.item_id for item in items] == ["a", "7"]
    assert items[0].content == {"id": "a", "text": "hé"}
    assert items[1].sha256 == hashlib.sha256(b'{"id":7,"text":"b"}').hexdigest()
    assert items[1].uri.endswith("items.jsonl#L3")


def test_reformatting_a_line_keeps_its_hash_and_changing_a_value_does_not(tmp_path: Path) -> None:
    """Spaces and key order do not make an item new; a changed value does."""
    [plain] = read_records(write_lines(tmp_path / "a.jsonl", '{"id":"x","n":1}'), "id")
    [spaced] = read_records(write_lines(tmp_path / "b.jsonl", '{ "n": 1,  "id": "x" }'), "id")
    [changed] = read_records(write_lines(tmp_path / "c.jsonl", '{"id":"x","n":2}'), "id")
    assert plain.sha256 == spaced.sha256 != changed.sha256
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


@pytest.mark.parametrize(("lines", "message"), [
    (['{"id": "a"}', "not json"], r"line 2 is not JSON"),
    (['["a", 1]'], r"line 1 is a JSON list, not an object"),
    (['{"id": "a"}', '{"name": "b"}', '{"name": "c"}'], r"2 records have no 'id' field, first at line\(s\) 2, 3; .*--id-field"),
    (['{"id": null}'], r"must be a string or an integer, but it is not at line\(s\) 1 \(first: None\)"),
    (['{"id": "a"}', '{"id": "b"}', '{"id": "a"}', '{"id": "b"}'], r"2 ids appear more than once \('a' at lines 1, 3; 'b' at lines 2, 4\)"),
])
def test_a_bad_items_file_is_refused_naming_the_first_offending_lines(tmp_path: Path, lines: list[str], message: str) -> None:
    """Nothing is planned from a file with a bad line, a missing or unusable id, or repeated ids."""
    with pytest.raises(InvalidParameterError, match=message):
        read_records(write_lines(tmp_path / "items.jsonl", *lines), "id")


def test_an_empty_items_file_is_refused(tmp_path: Path) -> None:
    """A file with no records says so, rather than running a job of nothing."""
    with pytest.raises(EmptySourceError, match=r"holds no records; expected one JSON object per line"):
        read_records(write_lines(tmp_path / "items.jsonl", "", "  "), "id")


def test_another_id_field_can_be_named(tmp_path: Path) -> None:
    """`id_field` picks the field that names items."""
    items = read_records(write_lines(tmp_path / "items.jsonl", json.dumps({"problem": "p1", "id": "x"})), "problem")
    assert [item.item_id for item in items] == ["p1"]


def test_records_locations_are_told_apart_from_folders() -> None:
    """A `.jsonl` file is a records source; anything else is a folder or file of items."""
    assert is_records_location("gs://bucket/items.JSONL") and not is_records_location("/data/items")
