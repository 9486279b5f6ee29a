"""Results shared by every job at one destination, found by what they were made from.

A batch's checkpoint belongs to its job: its key holds the job's name, so two jobs never mix
their commits. Some results do not depend on the job at all: the word counts of a document are
the same in this week's job and in last week's. A kind keeps those here, under a key made of
the item's content and the kind's identity (never the job's name), so a job next week finds
what this week's computed and redoes only the items that changed.

`<destination>/.colabflow/shared/<kind>/<key[:2]>/<key>.json`; each record is written whole and
atomically, so a kill leaves it complete or absent. Records are never deleted by colabflow: a
record that no job reads any more only costs its bytes (remove the folder to reclaim them).
"""

from __future__ import annotations

import hashlib
import json

from pydantic import JsonValue

from tasks.storage.places import open_place
from tasks.storage.stores import StorageAccess, read_optional

SHARED_DIR = ".colabflow/shared"


def shared_key(*parts: JsonValue) -> str:
    """A record's key: the sha256 of its parts as canonical JSON (item content hashes, kind identity)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class SharedResults:
    """One kind's shared records at a destination."""

    def __init__(self, destination: str, access: StorageAccess, kind: str) -> None:
        self.place = open_place(destination, access)
        self.kind = kind

    def _key(self, key: str) -> str:
        return self.place.key(SHARED_DIR, self.kind, key[:2], f"{key}.json")

    def read(self, key: str) -> bytes | None:
        """The record, or None when no job has written it."""
        return read_optional(self.place.store, self._key(key))

    def write(self, key: str, data: bytes) -> None:
        """Store the record; it is durable once the job folder is synced (the batch's commit does that)."""
        self.place.writable("destination").write_bytes(self._key(key), data)
