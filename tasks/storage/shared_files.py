"""Files that several writers change (the destination's ledger): read-modify-write that loses no writer's change.

Local disk locks the file's folder; GCS carries the generation it read as the write's
precondition. Drive offers no precondition on an update, so there the write is read back and
done again while another writer's bytes replaced it. `change` must be idempotent: it returns
None when the content already holds its change.
"""

from __future__ import annotations

from collections.abc import Callable

from tasks.errors import RemoteUnavailableError
from tasks.storage.stores import ObjectStore, read_optional

Change = Callable[[bytes | None], bytes | None]
READ_BACK_ATTEMPTS = 8


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
