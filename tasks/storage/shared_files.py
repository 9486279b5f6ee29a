"""Files that several writers change: read-modify-write, guarded against other writers where the store can.

Local disk locks the file's folder; GCS carries the generation it read as the write's
precondition, so neither loses a writer's change (`guards_writers`). Drive offers no
precondition on an update, so there the write is read back and done again while another
writer's bytes replaced it. That narrows the window but cannot close it: a writer that read
before our write and writes after our read-back still replaces our change. Records that many
processes add to at once (the ledger) therefore give each process its own file on such a store.
`change` must be idempotent: it returns None when the content already holds its change.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.errors import RemoteUnavailableError
from tasks.storage.stores import ObjectStore, read_optional

Change = Callable[[bytes | None], bytes | None]
READ_BACK_ATTEMPTS = 8


def guards_writers(store: ObjectStore) -> bool:
    """Whether the store's read-modify-write loses no concurrent writer's change (local disk, GCS; not Drive)."""
    return getattr(store, "update", None) is not None


def update_object(store: ObjectStore, key: str, change: Change) -> None:
    """Apply `change` to the object at `key`, with the store's guard against concurrent writers."""
    guarded: Callable[[str, Change], None] | None = getattr(store, "update", None)
    if guarded is not None:
        guarded(key, change)
        return
    for _ in range(READ_BACK_ATTEMPTS):
        updated = change(read_optional(store, key))
        if updated is None:
            return
        store.write_bytes(key, updated)
        if change(read_optional(store, key)) is None:
            return
    raise RemoteUnavailableError(
        f"{store.location}/{key} keeps changing under other writers; retry once they are idle"
    )
