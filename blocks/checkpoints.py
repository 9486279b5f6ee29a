"""`CheckpointStorage`: Prefect result storage on any colabflow location (local, GCS, Drive)."""

from __future__ import annotations

import asyncio

from prefect.filesystems import WritableFileSystem
from pydantic import Field, HttpUrl

from tasks.engine.job_folder import normalize_location
from tasks.storage.places import Place, open_place
from tasks.storage.result_guard import require_json_result
from tasks.storage.stores import StorageAccess, read_bytes


class CheckpointStorage(WritableFileSystem):
    """Persisted task results (checkpoints) in a folder of a local disk, a GCS bucket or Drive.

    Results are read back only when they are JSON: a result record written with another
    serializer (pickle) is refused, so nothing from shared storage is ever unpickled.

    Example:
        ```python
        from blocks.checkpoints import CheckpointStorage

        storage = CheckpointStorage.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "Colabflow Checkpoint Storage"
    # Prefect's own file-system logo and results guide, as its LocalFileSystem block uses them: the
    # logo is pinned to a commit of PrefectHQ/prefect, so it never moves. Our guide is docs/storage.md.
    _logo_url = HttpUrl(
        "https://raw.githubusercontent.com/PrefectHQ/prefect/420d0d6a78bb6df1fc18bcf188fdad43c1d22ea9"
        "/assets/block-logos/filesystem.png"
    )
    _documentation_url = HttpUrl("https://docs.prefect.io/latest/develop/results#specifying-a-default-filesystem")

    location: str = Field(
        description="Folder that holds the results: a local directory, gs://BUCKET/PATH or gdrive://FOLDER_ID/PATH."
    )
    access: StorageAccess = Field(
        default_factory=StorageAccess, description="Names of the blocks whose credentials reach the location."
    )

    def _resolve_path(self, path: str) -> str | None:
        """Result keys as Prefect records them: as given, relative to `location`.

        Prefect calls this on storage blocks that were not saved; without it, it would resolve
        result keys against the current directory.
        """
        return path or None

    def _place(self) -> Place:
        return open_place(normalize_location(self.location), self.access)

    # Prefect's base class declares these two async, but its result store calls them with
    # `_sync=True` from sync code and uses the `a`-prefixed twins from async code.
    def read_path(self, path: str, _sync: bool | None = None) -> bytes:  # type: ignore[override]
        """Read one result. Always synchronous: Prefect's result store passes `_sync=True`."""
        place = self._place()
        key = place.key(path)
        return require_json_result(read_bytes(place.store, key), place.uri(key))

    def write_path(self, path: str, content: bytes, _sync: bool | None = None) -> str:  # type: ignore[override]
        """Write one result. Always synchronous: Prefect's result store passes `_sync=True`."""
        place = self._place()
        key = place.key(path)
        place.writable("result storage").write_bytes(key, content)
        return place.uri(key)

    async def aread_path(self, path: str) -> bytes:
        return await asyncio.to_thread(self.read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        return await asyncio.to_thread(self.write_path, path, content)
