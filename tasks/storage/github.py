"""GitHub as a read-only store: `github://OWNER/REPO@REF/PATH`.

The ref is resolved to one commit, and that commit's tree listed, once per process, so every read
of a job sees one tree and a chunk URI (`github://OWNER/REPO@COMMIT/PATH`) names bytes that never
change. Blobs come from the git blobs API (raw bytes up to 100 MB, past the contents API's 1 MB),
are spooled to a temporary file and checked against their git sha1 before anyone reads them.
A blob past 100 MB is refused by GitHub (403 `too_large`), and the error says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import IO, Any, BinaryIO, TypeVar, cast
from urllib.parse import quote, unquote

import httpx
from pydantic import SecretStr

from tasks.errors import (
    CorruptOutputError,
    InvalidParameterError,
    MissingObjectError,
    RemoteUnavailableError,
    SourceNotFoundError,
    StorageRejectedError,
)
from tasks.storage.places import Place
from tasks.storage.retries import RetryPolicy, parse_retry_after, transient_wait
from tasks.storage.stores import READ_BLOCK, ObjectInfo, StorageAccess, join_key

T = TypeVar("T")

logger = logging.getLogger("colabflow.github")

JSON = "application/vnd.github+json"
SHA = "application/vnd.github.sha"
RAW = "application/vnd.github.raw+json"
API_VERSION = "2022-11-28"
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


@dataclass(frozen=True)
class _Snapshot:
    """One commit's files (key -> blob sha and size, sorted by key) and the entries skipped (key -> why)."""

    commit: str
    blobs: dict[str, tuple[str, int]]
    skipped: dict[str, str]


# (api_url, owner, repo, ref or '') -> snapshot; a commit sha is filed too, for chunk URIs read later.
_snapshots: dict[tuple[str, str, str, str], _Snapshot] = {}
_snapshots_lock = threading.Lock()


@cache
def _shared_client() -> httpx.Client:
    """One connection pool per process: a place is built per chunk URI, and TLS per chunk would dominate."""
    return httpx.Client(timeout=30.0, follow_redirects=True)


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
        self._token = SecretStr(token) if token else None
        self._client = client or _shared_client()

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
            self._get(f"git/blobs/{sha}", RAW, f"blob {sha} of {uri}",
                      lambda response: _spool_blob(response, spool, uri, sha, size))
            spool.seek(0)
            yield cast(BinaryIO, spool)

    def _snapshot(self) -> _Snapshot:
        key = (self.api_url, self.owner, self.repo, self.ref or "")
        with _snapshots_lock:
            if key not in _snapshots:
                snapshot = self._load()
                _snapshots[key] = _snapshots[(*key[:3], snapshot.commit)] = snapshot
            return _snapshots[key]

    def _load(self) -> _Snapshot:
        name = f"{self.owner}/{self.repo}"
        ref = self.ref or str(self._get("", JSON, f"repository {name}", _read_json)["default_branch"])
        commit = self._get(f"commits/{quote(ref, safe='/')}", SHA, f"ref {ref!r} of {name}",
                           lambda response: response.read().decode().strip())
        tree = self._get(f"git/trees/{commit}", JSON, f"commit {commit} of {name}", _read_json, {"recursive": "1"})
        entries = tree["tree"]
        if tree["truncated"]:
            logger.info("%s@%s has too many entries to list at once; walking it one directory at a time", name, commit)
            entries = self._walk(commit)
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
        return _Snapshot(commit=commit, blobs=blobs, skipped=skipped)

    def _walk(self, commit: str) -> Iterator[dict[str, Any]]:
        """Every entry of the commit's tree, one directory a request (for trees too big to list at once)."""
        pending = [("", commit)]
        while pending:
            directory, sha = pending.pop()
            subject = f"directory {directory!r} of {self.owner}/{self.repo}"
            tree = self._get(f"git/trees/{sha}", JSON, subject, _read_json)
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

    def _get(
        self, path: str, accept: str, subject: str, read: Callable[[httpx.Response], T],
        params: dict[str, str] | None = None,
    ) -> T:
        """GET below /repos/OWNER/REPO; retry what may pass (rate limits, 5xx, network, cut-short bodies)."""
        url = f"{self.api_url}/repos/{self.owner}/{self.repo}" + (f"/{path}" if path else "")
        headers = {"Accept": accept, "X-GitHub-Api-Version": API_VERSION}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"

        def once() -> T:
            try:
                with self._client.stream("GET", url, headers=headers, params=params) as response:
                    if response.is_success:
                        return read(response)
                    raise self._failure(response, subject)
            except httpx.TransportError as error:
                raise RemoteUnavailableError(f"GitHub could not be reached for {subject}: {type(error).__name__}") from None

        return self.policy.run(once, logger)

    def _failure(self, response: httpx.Response, subject: str) -> RemoteUnavailableError:
        """The transient failure an answer means; raise at once for answers a retry cannot fix."""
        status, headers = response.status_code, response.headers
        transient, wait = transient_wait(status, headers)
        if status == 403 and "Retry-After" in headers:  # GitHub's secondary rate limit
            transient, wait = True, parse_retry_after(headers["Retry-After"])
        if transient and status in (403, 429):
            advice = "" if self._token else " (anonymous: 60 requests an hour; set github_token for 5,000)"
            return RemoteUnavailableError(f"GitHub rate limit reached ({status}) for {subject}{advice}", wait)
        if transient:
            return RemoteUnavailableError(f"GitHub answered {status} for {subject}", wait)
        if status == 403 and _too_large(response):
            raise StorageRejectedError(
                f"GitHub refused {subject} as too large (403 too_large): its blobs API serves blobs up to 100 MB; "
                "clone the repository and compress the clone as a local directory"
            )
        block = f"Secret block {self.token_block!r}"
        if status in (404, 422):
            hint = (f"or the token in {block} cannot see it" if self._token else
                    "private repositories answer 404 without a token: set github_token to a Secret block holding one")
            raise SourceNotFoundError(f"GitHub has no {subject} at {self.api_url} ({status}); check it, {hint}")
        if status == 401 and self._token:
            raise StorageRejectedError(f"GitHub rejected the token in {block} (401): it is invalid or expired; "
                                       "put a valid token in that block")
        if status in (401, 403) and not self._token:
            raise StorageRejectedError(f"GitHub refused anonymous access to {subject} ({status}); set github_token "
                                       "to a Secret block holding a token with Contents: read")
        if status == 403:
            raise StorageRejectedError(f"the token in {block} may not read {subject} (403); give it Contents: read "
                                       "(fine-grained) or the repo scope (classic)")
        raise StorageRejectedError(f"GitHub answered {status} for {subject}; check the location")


def _below(key: str, prefix: str) -> bool:
    return not prefix or key == prefix or key.startswith(prefix + "/")


def _too_large(response: httpx.Response) -> bool:
    """Whether a refusal is GitHub's `too_large` (a blob past the API's size limit), not a permission."""
    try:
        errors = json.loads(response.read()).get("errors") or []
    except (ValueError, AttributeError):
        return False
    return any(isinstance(error, dict) and error.get("code") == "too_large" for error in errors)


def _read_json(response: httpx.Response) -> Any:
    response.read()
    return response.json()


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
