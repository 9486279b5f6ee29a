"""One commit of a GitHub repository: its ref resolved and its tree listed, once per process.

Every read of a job sees that one tree, so a chunk URI (`github://OWNER/REPO@COMMIT/PATH`) names
bytes that never change. Submodules and symlinks are kept aside as skipped, with the reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tasks.errors import StorageRejectedError
from tasks.storage.github_api import JSON, SHA, GitHubApi, read_json
from tasks.storage.stores import join_key

logger = logging.getLogger("colabflow.github")


@dataclass(frozen=True)
class Snapshot:
    """One commit's files (key -> blob sha and size, sorted by key) and the entries skipped (key -> why)."""

    commit: str
    blobs: dict[str, tuple[str, int]]
    skipped: dict[str, str]


# (api_url, owner, repo, ref or '') -> snapshot; a commit sha is filed too, for chunk URIs read later.
_snapshots: dict[tuple[str, str, str, str], Snapshot] = {}
_snapshots_lock = threading.Lock()


def snapshot_of(api: GitHubApi, ref: str | None) -> Snapshot:
    """The commit `ref` names (None: the default branch), listed on first use and kept for the process."""
    key = (api.api_url, api.owner, api.repo, ref or "")
    with _snapshots_lock:
        if key not in _snapshots:
            snapshot = _load(api, ref)
            _snapshots[key] = _snapshots[(*key[:3], snapshot.commit)] = snapshot
        return _snapshots[key]


def _load(api: GitHubApi, ref: str | None) -> Snapshot:
    name = f"{api.owner}/{api.repo}"
    ref = ref or str(api.get("", JSON, f"repository {name}", read_json)["default_branch"])
    commit = api.get(f"commits/{quote(ref, safe='/')}", SHA, f"ref {ref!r} of {name}",
                     lambda response: response.read().decode().strip())
    tree = api.get(f"git/trees/{commit}", JSON, f"commit {commit} of {name}", read_json, {"recursive": "1"})
    entries = tree["tree"]
    if tree["truncated"]:
        logger.info("%s@%s has too many entries to list at once; walking it one directory at a time", name, commit)
        entries = _walk(api, commit)
    blobs: dict[str, tuple[str, int]] = {}
    skipped: dict[str, str] = {}
    for entry in sorted(entries, key=lambda item: str(item["path"])):
        if entry["type"] == "commit":
            skipped[entry["path"]] = "a submodule"
        elif entry["type"] == "blob" and entry["mode"] == "120000":
            skipped[entry["path"]] = "a symlink"
        elif entry["type"] == "blob":
            blobs[entry["path"]] = (entry["sha"], int(entry["size"]))
    logger.info("listed %d files of %s@%s (ref %s)", len(blobs), name, commit, ref)
    return Snapshot(commit=commit, blobs=blobs, skipped=skipped)


def _walk(api: GitHubApi, commit: str) -> Iterator[dict[str, Any]]:
    """Every entry of the commit's tree, one directory a request (for trees too big to list at once)."""
    pending = [("", commit)]
    while pending:
        directory, sha = pending.pop()
        subject = f"directory {directory!r} of {api.owner}/{api.repo}"
        tree = api.get(f"git/trees/{sha}", JSON, subject, read_json)
        if tree["truncated"]:
            raise StorageRejectedError(
                f"{subject} holds more entries than the GitHub API lists; "
                "clone the repository and compress it as a local directory"
            )
        for entry in tree["tree"]:
            entry = {**entry, "path": join_key(directory, entry["path"])}
            if entry["type"] == "tree":
                pending.append((entry["path"], entry["sha"]))
            yield entry
