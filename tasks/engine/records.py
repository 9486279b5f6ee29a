"""Items as records: each line of a JSONL file is one item, a JSON object named by its id field.

A job over records (the batch-map kind, say) reads the file once at planning; each item carries
its object, so a batch never reads the file again. An item's sha256 is that of its canonical
JSON (keys sorted, no spaces), so reformatting a line does not make its item new, and changing a
value does. Everything wrong with the file is refused before any work: a line that is not a JSON
object, a record without the id field or with an id that is not a string or an integer, and
ids that repeat. Each message names the first offenders by line.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

from tasks.engine.models import ItemFingerprint
from tasks.engine.sources import read_chunk
from tasks.errors import EmptySourceError, InvalidParameterError
from tasks.storage.stores import StorageAccess

RECORDS_SUFFIX = ".jsonl"
SHOWN_OFFENDERS = 3


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value that its hash is taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def is_records_location(location: str) -> bool:
    """Whether a location names a JSONL file of records rather than a folder of files."""
    return location.rstrip("/").lower().endswith(RECORDS_SUFFIX)


def parse_records(content: bytes, name: str) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSONL file with their line numbers; blank lines are skipped."""
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidParameterError(
                f"items file {name}: line {number} is not JSON ({error}); each line must be one JSON object"
            ) from None
        if not isinstance(value, dict):
            raise InvalidParameterError(
                f"items file {name}: line {number} is a JSON {type(value).__name__}, not an object; "
                "each line must be one JSON object such as {\"id\": \"a\", ...}"
            )
        records.append((number, value))
    return records


def record_ids(records: list[tuple[int, dict[str, Any]]], id_field: str, name: str) -> list[str]:
    """Each record's id, as text; refuses missing, unusable and repeated ids, naming the first lines."""
    missing = [number for number, record in records if id_field not in record]
    if missing:
        raise InvalidParameterError(
            f"items file {name}: {len(missing)} records have no {id_field!r} field, first at line(s) "
            f"{_first(missing)}; give every record one, or name the field that identifies items with --id-field"
        )
    unusable = [(number, record[id_field]) for number, record in records
                if isinstance(record[id_field], bool) or not isinstance(record[id_field], (str, int))]
    if unusable:
        raise InvalidParameterError(
            f"items file {name}: the {id_field!r} field must be a string or an integer, but it is not at "
            f"line(s) {_first([number for number, _ in unusable])} (first: {unusable[0][1]!r})"
        )
    ids = [str(record[id_field]) for _, record in records]
    lines_of: dict[str, list[int]] = defaultdict(list)
    for (number, _), item_id in zip(records, ids):
        lines_of[item_id].append(number)
    repeated = [(item_id, lines) for item_id, lines in lines_of.items() if len(lines) > 1]
    if repeated:
        shown = "; ".join(f"{item_id!r} at lines {_first(lines)}" for item_id, lines in repeated[:SHOWN_OFFENDERS])
        raise InvalidParameterError(
            f"items file {name}: {len(repeated)} ids appear more than once ({shown}); ids must be unique"
        )
    return ids


def _first(numbers: list[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:SHOWN_OFFENDERS])
    return shown + (f" and {len(numbers) - SHOWN_OFFENDERS} more" if len(numbers) > SHOWN_OFFENDERS else "")


def read_records(location: str, id_field: str, access: StorageAccess = StorageAccess()) -> list[ItemFingerprint]:
    """Every record of the JSONL file at `location` as an item that carries its object, in file order."""
    name = location
    content = read_chunk(location, access)
    records = parse_records(content, name)
    if not records:
        raise EmptySourceError(f"items file {name} holds no records; expected one JSON object per line")
    ids = record_ids(records, id_field, name)
    items = []
    for (number, record), item_id in zip(records, ids):
        canonical = canonical_json(record)
        items.append(ItemFingerprint(
            item_id=item_id, uri=f"{name}#L{number}", size=len(canonical),
            sha256=hashlib.sha256(canonical).hexdigest(), content=record,
        ))
    return items
