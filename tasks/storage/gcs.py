"""Google Cloud Storage as a store (`gs://BUCKET/PATH`), through prefect-gcp's `GcpCredentials`.

Writes are guarded by a generation precondition (`if_generation_match`, 0 for a new object), so
two writers never silently overwrite each other, and an object that already holds the same
sha256 (kept in its metadata) or md5 is left alone. After an upload the object's md5 is checked
against the local bytes. Large files go up as resumable uploads in chunks: a dropped connection
resends one chunk, not the file. `STORAGE_EMULATOR_HOST` is honoured: with it set and no
credentials block named, the client is anonymous.

Why `GcpCredentials` and not prefect-gcp's `GcsBucket` (read in prefect-gcp 0.6.22): GcsBucket
builds each `Blob` inside its own methods, so it cannot carry what this store guarantees.
`read_path`/`write_path` take no options, so every write is an unconditional overwrite.
`upload_from_path`/`upload_from_file_object` pass keyword arguments on to `Blob.upload_from_*`
(a precondition and `checksum="md5"` would go through), but they cannot set the blob's
`metadata` (our sha256) or `chunk_size` (resumable chunks stay at the library's 100 MiB), and
they return only the object name, so checking the md5 GCS computed costs another request. Each
of its reads and writes first runs `get_bucket()`, a `buckets.get` request: an extra round trip per
object, and a permission (`storage.buckets.get`) that roles/storage.objectAdmin and objectViewer
do not grant (google-cloud-storage's own background lookup of the bucket shrugs off that 403;
GcsBucket's raises it). It has no stat, and `list_blobs` (sizes and md5s) cannot turn off the client
library's own retries, which ignore `Retry-After` and would stack under ours. So this module
takes the client from the `GcpCredentials` block users already save and drives
google-cloud-storage's `Blob` directly: the same library GcsBucket wraps, and no HTTP of our own.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar, cast

from tasks.errors import (
    CorruptOutputError,
    InvalidParameterError,
    RemoteUnavailableError,
    StorageRejectedError,
)
from tasks.storage.gcs_errors import translate_gcs_error
from tasks.storage.places import Place, split_container
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import ObjectInfo, StorageAccess, file_digests

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Bucket, Client

T = TypeVar("T")
logger = logging.getLogger("colabflow.gcs")

RESUMABLE_CHUNK = 16 * 1024 * 1024  # a multiple of 256 KiB, as GCS requires
MULTIPART_LIMIT = 8 * 1024 * 1024  # google-cloud-storage uploads larger files as resumable uploads
SPOOL_IN_MEMORY = 8 * 1024 * 1024
CONTENTION_DELAY = 0.025  # seconds: the bound of the first wait after a lost race (412), doubled each time
CONTENTION_MAX_DELAY = 2.0
EMULATOR_PROJECT = "colabflow-emulator"
EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"


def gcs_place(location: str, access: StorageAccess) -> Place:
    """`gs://BUCKET/PATH` as a Place: the bucket's store and PATH inside it (taken verbatim)."""
    bucket, path = split_container("gs", location, "gs://BUCKET/PATH")
    return Place(store=bucket_store(bucket, access, os.environ.get(EMULATOR_VARIABLE)), path=path)


@lru_cache(maxsize=16)
def bucket_store(bucket: str, access: StorageAccess, emulator: str | None) -> GcsStore:
    """One store, and so one client, per bucket, credentials and endpoint (`emulator`, the
    STORAGE_EMULATOR_HOST its client reads) in a process: items read one by one would otherwise
    each build a client (4 ms of CPU a read, against 1.6 ms with one)."""
    return GcsStore(bucket, access)


def storage_client(access: StorageAccess) -> Client:
    """A storage client: the named GcpCredentials block, else the emulator, else ADC."""
    from google.auth.exceptions import DefaultCredentialsError
    from prefect_gcp import GcpCredentials

    if access.gcp_credentials:
        try:
            credentials = cast(GcpCredentials, GcpCredentials.load(access.gcp_credentials))
        except ValueError:
            raise InvalidParameterError(
                f"GcpCredentials block {access.gcp_credentials!r} was not found; create it in the Prefect UI "
                "(Blocks > GCP Credentials) or drop --gcp-credentials to use Application Default Credentials"
            ) from None
        return credentials.get_cloud_storage_client()
    if os.environ.get(EMULATOR_VARIABLE):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.storage import Client

        return Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", EMULATOR_PROJECT),
                      credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    try:
        return GcpCredentials().get_cloud_storage_client()
    except DefaultCredentialsError:
        raise StorageRejectedError(
            "no Google credentials found for gs://; run `gcloud auth application-default login`, on Colab "
            "`google.colab.auth.authenticate_user()`, or pass --gcp-credentials NAME (a GcpCredentials block)"
        ) from None


class GcsStore:
    """One bucket. Keys are object names."""

    def __init__(
        self, bucket: str, access: StorageAccess, policy: RetryPolicy = RetryPolicy(),
        resumable_chunk: int = RESUMABLE_CHUNK,
    ) -> None:
        self.bucket_name = bucket
        self.access = access
        self.policy = policy
        self.resumable_chunk = resumable_chunk

    @property
    def location(self) -> str:
        return f"gs://{self.bucket_name}"

    @cached_property
    def bucket(self) -> Bucket:
        return storage_client(self.access).bucket(self.bucket_name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        single = self._blob_or_none(prefix) if prefix else None
        if single is not None:
            yield _info(single)
            return
        folder = prefix.rstrip("/") + "/" if prefix else None
        blobs = self._call(f"list {self.location}/{folder or ''}",
                           lambda: list(self.bucket.list_blobs(prefix=folder, retry=None)))
        for blob in sorted(blobs, key=lambda item: str(item.name)):
            if not str(blob.name).endswith("/"):
                yield _info(blob)

    def stat(self, key: str) -> ObjectInfo | None:
        blob = self._blob_or_none(key)
        return None if blob is None else _info(blob)

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)

        def download() -> None:
            spool.seek(0)
            spool.truncate()
            self.bucket.blob(key).download_to_file(spool, checksum="md5", retry=None)

        try:
            self._call(f"read {self.location}/{key}", download)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return cast(AbstractContextManager[BinaryIO], spool)

    def write_bytes(self, key: str, data: bytes) -> None:
        sha256, md5 = hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()

        def upload(blob: Blob, generation: int) -> None:
            blob.upload_from_string(data, if_generation_match=generation, checksum="md5", retry=None)

        self._put(key, sha256, md5, upload)

    def write_file(self, key: str, path: Path) -> None:
        sha256, md5 = file_digests(path)
        resumable = path.stat().st_size > MULTIPART_LIMIT

        def upload(blob: Blob, generation: int) -> None:
            from google.cloud.storage.retry import DEFAULT_RETRY

            if resumable:
                blob.chunk_size = self.resumable_chunk
            blob.upload_from_filename(str(path), if_generation_match=generation, checksum="md5",
                                      retry=DEFAULT_RETRY if resumable else None)

        self._put(key, sha256, md5, upload)

    def _put(self, key: str, sha256: str, md5: str, upload: Callable[[Blob, int], None]) -> None:
        """Upload unless the object already holds these bytes; then check the md5 GCS computed."""
        from google.api_core.exceptions import PreconditionFailed

        uri = f"{self.location}/{key}"
        for _ in range(2):
            existing = self._blob_or_none(key)
            if existing is not None and _holds(existing, sha256, md5):
                return
            blob = self.bucket.blob(key)
            blob.metadata = {"sha256": sha256}
            try:
                self._call(f"write {uri}", lambda: upload(blob, existing.generation if existing else 0))
            except PreconditionFailed:
                logger.info("%s changed while it was written; checking it again", uri)
                continue
            if _md5_hex(blob) != md5:
                raise CorruptOutputError(
                    f"GCS reports md5 {_md5_hex(blob)} for {uri} after upload, the local bytes have {md5}; "
                    "the object is damaged: rerun the job to write it again"
                )
            return
        raise RemoteUnavailableError(f"{uri} keeps changing under another writer; retry once it is idle")

    def delete(self, key: str) -> None:
        """Remove the object; a 404 (already gone) is not an error."""
        from google.api_core.exceptions import NotFound

        def remove() -> None:
            try:
                self.bucket.blob(key).delete(retry=None)
            except NotFound:
                pass

        self._call(f"delete {self.location}/{key}", remove)

    def update(self, key: str, change: Callable[[bytes | None], bytes | None], attempts: int = 10) -> None:
        """Read-modify-write that carries the generation it read as the write's precondition.

        `change` gets the current bytes (None when absent) and returns the new ones, or None to
        leave the object as it is. When another writer got in between (412), the object is read
        again and `change` applied to what that writer left, so no writer's change is lost. Each
        new attempt first waits a random time below a doubling bound, so a writer that keeps
        losing to a busier one steps out of its rhythm instead of losing every time.
        """
        from google.api_core.exceptions import PreconditionFailed

        uri = f"{self.location}/{key}"
        for attempt in range(attempts):
            if attempt:
                self.policy.sleep(random.uniform(0, min(CONTENTION_MAX_DELAY, CONTENTION_DELAY * 2 ** (attempt - 1))))
            existing = self._blob_or_none(key)
            generation = int(existing.generation) if existing is not None else 0
            try:
                # The live object, if it is still the generation read: a blob from `get_blob` would ask for that
                # generation by number, which GCS answers with 404 once another writer has replaced it (in a
                # bucket without object versioning).
                current = None if existing is None else self._call(f"read {uri}", lambda: self.bucket.blob(
                    key).download_as_bytes(if_generation_match=generation, retry=None))
                updated = change(current)
                if updated is None or updated == current:
                    return
                blob = self.bucket.blob(key)
                blob.metadata = {"sha256": hashlib.sha256(updated).hexdigest()}
                self._call(f"write {uri}", lambda: blob.upload_from_string(
                    updated, if_generation_match=generation, checksum="md5", retry=None))
                return
            except PreconditionFailed:
                logger.info("%s changed after it was read (generation %d); reading it again", uri, generation)
        raise RemoteUnavailableError(f"{uri} keeps changing under other writers; retry once they are idle")

    def _blob_or_none(self, key: str) -> Blob | None:
        return self._call(f"stat {self.location}/{key}", lambda: self.bucket.get_blob(key, retry=None))

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        """Run one GCS request, retrying transient answers with backoff that honours Retry-After."""

        def once() -> T:
            try:
                return operation()
            except Exception as error:  # noqa: BLE001 - translated: raised as itself or a specific error
                raise translate_gcs_error(what, error, self.bucket_name) from None

        return self.policy.run(once, logger)


def _info(blob: Blob) -> ObjectInfo:
    return ObjectInfo(key=str(blob.name), size=int(blob.size or 0), md5=_md5_hex(blob),
                      sha256=(blob.metadata or {}).get("sha256"))


def _md5_hex(blob: Blob) -> str | None:
    return base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None


def _holds(blob: Blob, sha256: str, md5: str) -> bool:
    known = (blob.metadata or {}).get("sha256")
    return known == sha256 if known else _md5_hex(blob) == md5
