"""GitHub as a read-only store: `github://OWNER/REPO@REF/PATH`.

The ref is resolved to one commit, and that commit's tree listed, once per process, so every read
of a job sees one tree and a chunk URI (`github://OWNER/REPO@COMMIT/PATH`) names bytes that never
change. Blobs come from the git blobs API (raw bytes up to 100 MB, past the contents API's 1 MB),
are spooled to a temporary file and checked against their git sha1 before anyone reads them.
A blob past 100 MB is refused by GitHub (403 `too_large`), and the error says so.

The REST calls and what GitHub's refusals mean are in `tasks/storage/github_api.py`, the commit's
tree in `tasks/storage/github_tree.py`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import IO, BinaryIO, cast
from urllib.parse import unquote

import httpx
from pydantic import SecretStr

from tasks.errors import (
    CorruptOutputError,
    InvalidParameterError,
    MissingObjectError,
    RemoteUnavailableError,
    SourceNotFoundError,
)
from tasks.storage.github_api import RAW, GitHubApi, shared_client
from tasks.storage.github_tree import Snapshot, snapshot_of
from tasks.storage.places import Place
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import READ_BLOCK, ObjectInfo, StorageAccess

logger = logging.getLogger("colabflow.github")

SPOOL_BYTES = 8 * 1024 * 1024
# A rate-limit window lasts an hour: waiting for its reset beats giving up a minute before it.
DEFAULT_POLICY = RetryPolicy(max_delay=3600.0)

_URI = re.compile(
    r"github://(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/(?P<repo>[A-Za-z0-9._-]{1,100})"
    r"(?:@(?P<ref>[^/]*))?(?:/(?P<path>.*))?",
    re.DOTALL,
)
_EXPECTED = "expected github://OWNER/REPO@REF/PATH (REF and PATH optional; write a '/' in REF as %2F)"


def parse_github_uri(location: str) -> tuple[str, str, str | None, str]:
    """Owner, repo, ref (None: the default branch) and path of a github:// location."""
    match = _URI.fullmatch(location)
    if match is None or match["repo"] in (".", ".."):
        raise InvalidParameterError(f"GitHub location {location!r} is malformed; {_EXPECTED}")
    if match["ref"] == "":
        raise InvalidParameterError(f"GitHub location {location!r} names no ref after '@'; {_EXPECTED}")
    path = (match["path"] or "").strip("/")
    if path and (
        any(segment in ("", ".", "..") for segment in path.split("/"))
        or any(ord(character) < 32 or ord(character) == 127 for character in path)
    ):
        raise InvalidParameterError(
            f"GitHub location {location!r} has the path {path!r}; expected a path inside the repository "
            "without '.', '..', empty segments or control characters"
        )
    return match["owner"], match["repo"], unquote(match["ref"]) if match["ref"] else None, path


class GitHubStore:
    """A repository at one commit, read-only; keys are paths inside the repository."""

    def __init__(
        self, owner: str, repo: str, ref: str | None = None, *, api_url: str = "https://api.github.com",
        token: str | None = None, token_block: str | None = None, policy: RetryPolicy = DEFAULT_POLICY,
        client: httpx.Client | None = None,
    ) -> None:
        self.owner, self.repo, self.ref = owner, repo, ref
        self.api_url = api_url.rstrip("/")
        self.token_block = token_block
        self.policy = policy
        self._api = GitHubApi(owner, repo, api_url=self.api_url, token=SecretStr(token) if token else None,
                              token_block=token_block, policy=policy, client=client or shared_client())

    @property
    def location(self) -> str:
        return f"github://{self.owner}/{self.repo}@{self._snapshot().commit}"

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        snapshot = self._snapshot()
        skipped = [f"{key} ({why})" for key, why in snapshot.skipped.items() if _below(key, prefix)]
        if skipped:
            logger.warning("%s: skipped %d entries that are not regular files: %s%s", self.location,
                           len(skipped), ", ".join(skipped[:5]), ", ..." if len(skipped) > 5 else "")
        for key, (blob_sha, size) in snapshot.blobs.items():
            if _below(key, prefix):
                yield ObjectInfo(key=key, size=size, version=f"git:{blob_sha}")

    def contains(self, prefix: str) -> bool:
        """True when the prefix is a file of the commit or a directory holding one."""
        return any(_below(key, prefix) for key in self._snapshot().blobs)

    def stat(self, key: str) -> ObjectInfo | None:
        entry = self._snapshot().blobs.get(key)
        return ObjectInfo(key=key, size=entry[1], version=f"git:{entry[0]}") if entry else None

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        entry = self._snapshot().blobs.get(key)
        if entry is None:
            raise MissingObjectError(f"{self.location}/{key} is not a regular file in that commit")
        return self._download(key, *entry)

    @contextmanager
    def _download(self, key: str, sha: str, size: int) -> Iterator[BinaryIO]:
        uri = f"{self.location}/{key}"
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            self._api.get(f"git/blobs/{sha}", RAW, f"blob {sha} of {uri}",
                          lambda response: _spool_blob(response, spool, uri, sha, size))
            spool.seek(0)
            yield cast(BinaryIO, spool)

    def _snapshot(self) -> Snapshot:
        return snapshot_of(self._api, self.ref)


def _below(key: str, prefix: str) -> bool:
    return not prefix or key == prefix or key.startswith(prefix + "/")


def _spool_blob(response: httpx.Response, spool: IO[bytes], uri: str, sha: str, size: int) -> None:
    """Copy a blob into the spool, checking its length and git sha1 (`blob SIZE\\0` + bytes)."""
    spool.seek(0)
    spool.truncate()
    digest = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    received = 0
    for block in response.iter_bytes(READ_BLOCK):
        spool.write(block)
        digest.update(block)
        received += len(block)
    if received != size:
        raise RemoteUnavailableError(f"{uri}: GitHub sent {received} of {size} bytes; the download was cut short")
    if digest.hexdigest() != sha:
        raise CorruptOutputError(f"{uri}: the bytes GitHub sent do not match the blob sha {sha} of the tree; "
                                 "refused (a proxy rewriting content?)")


@lru_cache(maxsize=16)
def _load_token(block_name: str) -> str:
    """The token of a Secret block, read once per process rather than once per chunk URI."""
    from tasks.engine.callback import load_secret

    return load_secret(block_name)


def github_place(location: str, access: StorageAccess, policy: RetryPolicy = DEFAULT_POLICY) -> Place:
    """The repository at the location's ref (pinned to its commit) and the path inside it."""
    owner, repo, ref, path = parse_github_uri(location)
    token = _load_token(access.github_token) if access.github_token else None
    store = GitHubStore(owner, repo, ref, api_url=access.github_api_url, token=token,
                        token_block=access.github_token, policy=policy)
    if path and not store.contains(path):
        raise SourceNotFoundError(
            f"{path!r} is not a file or directory of {store.location} (what {location!r} resolved to); "
            "check the path (symlinks and submodules are skipped)"
        )
    return Place(store=store, path=path)
