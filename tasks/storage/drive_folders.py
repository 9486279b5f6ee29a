"""The folders below a Drive store's root folder, found by name and parent, and created on write.

Folder creation is serialised per (parent, name) inside a process. Two processes creating one
folder at the same moment can still make two, as can a folder create that httplib2 resends; every
lookup picks the oldest of equal names, the one right after a creation included, so writers
converge on one of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from tasks.errors import InvalidParameterError, MissingObjectError
from tasks.storage.drive_requests import DriveRequests, Entries, Entry

logger = logging.getLogger("colabflow.drive")

FOLDER = "application/vnd.google-apps.folder"
GOOGLE_APPS = "application/vnd.google-apps."


class DriveFolders:
    """Folder ids below one root folder, cached per (parent, name) once found or created."""

    def __init__(self, requests: DriveRequests, root_id: str) -> None:
        self.requests = requests
        self.root_id = root_id
        self._guard = threading.Lock()
        self._ids: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._root_checked = False

    def root(self) -> str:
        """The root folder's id, once checked to be a folder this account can see."""
        if not self._root_checked:
            location = self.requests.location
            try:
                root = self.requests.call(f"open {location}", lambda: self.requests.files().get(
                    fileId=self.root_id, fields="id,mimeType,trashed", supportsAllDrives=True).execute())
            except MissingObjectError:
                raise MissingObjectError(
                    f"Drive folder {self.root_id!r} was not found: check the id in {location}/... (the last part "
                    f"of the folder's URL) and share the folder with {self.requests.account()}"
                ) from None
            if root.get("mimeType") != FOLDER or root.get("trashed"):
                raise InvalidParameterError(f"{location} is a file or a folder in the trash; name a folder's id")
            self._root_checked = True
        return self.root_id

    def resolve(self, names: Sequence[str], create: bool) -> str | None:
        """The id of the folder at `names` below the root; None when absent and not created."""
        parent = self.root()
        for name in names:
            child = self._child(parent, name, create)
            if child is None:
                return None
            parent = child
        return parent

    def _child(self, parent: str, name: str, create: bool) -> str | None:
        cached = self._ids.get((parent, name))
        if cached is not None:
            return cached
        with self._guard:
            lock = self._locks.setdefault((parent, name), threading.Lock())
        with lock:
            if (parent, name) not in self._ids:
                what = f"{'create' if create else 'find'} folder {name!r} in {parent}"
                found = self.requests.call(what, lambda: self._find(parent, name, create))
                if found is None:
                    return None
                self._ids[(parent, name)] = found
            return self._ids[(parent, name)]

    def _find(self, parent: str, name: str, create: bool) -> str | None:
        """Look the folder up, and create it when asked; a retry looks up again, so it never makes two."""
        found = pick_entry(self.requests.named(parent, name), folder=True, where=name)
        if found is None and create:
            created = self.requests.files().create(body={"name": name, "mimeType": FOLDER, "parents": [parent]},
                                                   fields="id", supportsAllDrives=True).execute()
            found = pick_entry(self.requests.named(parent, name), folder=True, where=name) or created
        return None if found is None else str(found["id"])


def split_key(key: str) -> list[str]:
    """A key's segments: the folders it lies in, then its name."""
    parts = key.strip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidParameterError(f"Drive key {key!r} must be a relative path with no empty, '.' or '..' segment")
    return parts


def pick_entry(entries: Entries, folder: bool, where: str) -> Entry | None:
    """The oldest folder (or binary file) among entries of one name."""
    kept = [e for e in entries if (e["mimeType"] == FOLDER) == folder and (folder or not is_google_file(e, where))]
    return min(kept, key=lambda entry: (entry.get("createdTime", ""), entry["id"]), default=None)


def is_google_file(entry: Entry, where: str) -> bool:
    """Whether an entry is a Google Docs/Sheets/Slides file, which has no bytes; warns when it is."""
    if not entry["mimeType"].startswith(GOOGLE_APPS):
        return False
    logger.warning("skipping %s: a Google Docs/Sheets/Slides file (%s) has no bytes to read; export it to a "
                   "regular file to use it", where, entry["mimeType"])
    return True
