"""Places: a location URI resolved to its store and a path inside it, through one scheme registry.

Flows and stages never branch on a scheme: `open_place` looks the scheme up here, and the
remote modules (which import their client libraries) load only when a job uses them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath

from tasks.errors import InvalidParameterError
from tasks.storage.local import LocalStore
from tasks.storage.locations import (
    LOCAL_SCHEMES,
    local_path,
    scheme_of,
    unsupported_scheme_message,
)
from tasks.storage.stores import ObjectStore, ReadableStore, StorageAccess, join_key


@dataclass(frozen=True)
class Place:
    """A location resolved: a store and a key prefix inside it ('' for the store's root)."""

    store: ObjectStore | ReadableStore
    path: str

    def key(self, *parts: str) -> str:
        return join_key(self.path, *parts)

    def uri(self, key: str) -> str:
        return f"{self.store.location.rstrip('/')}/{key}" if key else self.store.location

    def writable(self, role: str) -> ObjectStore:
        """The store, if it can be written; a clear error otherwise."""
        if not hasattr(self.store, "write_bytes"):
            raise InvalidParameterError(
                f"{role} {self.store.location!r} is read-only; use a local directory, gs:// or gdrive://"
            )
        return self.store  # type: ignore[return-value]


# scheme -> "module:function"; the function takes (location, access) and returns a Place.
# Remote modules import their client libraries, so they load only when a job uses them.
_PLACE_FACTORIES: dict[str, str] = {
    "gs": "tasks.storage.gcs:gcs_place",
    "gdrive": "tasks.storage.drive:drive_place",
    "github": "tasks.storage.github:github_place",
}
WRITABLE_SCHEMES = frozenset({*LOCAL_SCHEMES, "gs", "gdrive"})
READABLE_SCHEMES = frozenset({*WRITABLE_SCHEMES, "github"})


def local_place(location: str) -> Place:
    """A local directory (or file) as a Place rooted at itself."""
    path = local_path(location)
    return Place(store=LocalStore(path), path="")


@lru_cache(maxsize=64)
def open_place(location: str, access: StorageAccess = StorageAccess()) -> Place:
    """Resolve a location to its store and path, by URI scheme. Stores are reused per process."""
    scheme = scheme_of(location)
    if scheme in LOCAL_SCHEMES:
        return local_place(location)
    target = _PLACE_FACTORIES.get(scheme)
    if target is None:
        raise InvalidParameterError(unsupported_scheme_message("location", location))
    module_name, function_name = target.split(":")
    factory: Callable[[str, StorageAccess], Place] = getattr(importlib.import_module(module_name), function_name)
    return factory(location, access)


def split_container(scheme: str, location: str, expected: str, hint: str = "") -> tuple[str, str]:
    """`scheme://CONTAINER/PATH` as (CONTAINER, PATH), PATH verbatim: object names may hold '?' or '#'."""
    rest = location[len(scheme) + 3:] if location.startswith(f"{scheme}://") else ""
    container, _, path = rest.partition("/")
    if not container or any(character in container for character in "?#@:"):
        raise InvalidParameterError(f"{location!r} is not a {expected} location{hint}")
    return container, path.strip("/")


def relative_key(key: str, prefix: str) -> str:
    """A key relative to a prefix; the last segment when the key is the prefix itself."""
    if key == prefix:
        return PurePosixPath(key).name
    return key[len(prefix):].lstrip("/") if prefix else key
