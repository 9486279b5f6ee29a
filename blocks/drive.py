"""`DriveFolder`: a Google Drive folder and the credentials that reach it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prefect.filesystems import WritableFileSystem
from prefect.types import SecretDict
from pydantic import Field

from tasks.errors import InvalidParameterError
from tasks.storage.result_guard import require_json_result
from tasks.storage.stores import read_bytes

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

    from tasks.storage.drive import DriveStore

MIB = 1024 * 1024


class DriveFolder(WritableFileSystem):
    """A Google Drive folder (in My Drive or a shared drive) for chunks, outputs and Prefect results.

    Share the folder with the service account's email, or leave `service_account_info` empty to
    use Application Default Credentials (on Colab: `google.colab.auth.authenticate_user()`). As
    result storage it hands Prefect only JSON result records: nothing is ever unpickled from it.

    Example:
        Load a saved block and keep task results in its folder:
        ```python
        from prefect import task

        from blocks.drive import DriveFolder

        drive_folder = DriveFolder.load("BLOCK_NAME")

        @task(result_storage=drive_folder, persist_result=True, result_serializer="json")
        def measure() -> dict[str, float]:
            return {"ratio": 2.6}
        ```
    """

    _block_type_name = "Drive Folder"
    _logo_url = "https://ssl.gstatic.com/images/branding/product/2x/drive_2020q4_48dp.png"  # type: ignore[assignment]
    _documentation_url = "https://developers.google.com/workspace/drive/api/guides/about-sdk"  # type: ignore[assignment]

    folder_id: str = Field(
        default="",
        description="ID of the folder, the last part of its URL (drive.google.com/drive/folders/ID); may be empty "
        "when the block only lends its credentials to gdrive:// locations.",
    )
    service_account_info: SecretDict | None = Field(
        default=None,
        description="JSON key of a service account the folder is shared with; empty: Application Default Credentials.",
    )
    api_endpoint: str = Field(
        default="https://www.googleapis.com",
        description="Root URL of the Drive API; change it only for a test server or an emulator.",
    )
    upload_chunk_mib: int = Field(
        default=16, ge=1, le=1024,
        description="MiB sent per request of a resumable upload; larger files go up in such chunks, and a dropped "
        "connection resends at most one.",
    )

    def credentials(self) -> Credentials:
        """The block's service account, else Application Default Credentials (none for a test endpoint)."""
        from tasks.storage.drive_api import drive_credentials

        info = self.service_account_info.get_secret_value() if self.service_account_info else None
        return drive_credentials(info, self.api_endpoint)

    def store(self, folder_id: str | None = None, job_root: str | None = None) -> DriveStore:
        """A store on `folder_id` (default: the block's folder) that uses the block's credentials.

        `job_root` is the path below the folder whose subfolders are jobs (see `DriveStore`).
        """
        from tasks.storage.drive import DriveStore

        folder = folder_id or self.folder_id
        if not folder:
            raise InvalidParameterError(
                "the DriveFolder block has no folder_id; set it to the last part of the folder's Drive URL"
            )
        return DriveStore(folder, self.credentials(), endpoint=self.api_endpoint,
                          chunk_size=self.upload_chunk_mib * MIB, job_root=job_root)

    def read_path(self, path: str, _sync: bool = True) -> bytes:  # type: ignore[override]
        """The bytes at `path` below the folder. A result record not written as JSON is refused.

        Prefect's result store passes `_sync=True` (its sync/async dispatch flag); this method is sync.
        """
        store = self.store()
        return require_json_result(read_bytes(store, path), f"{store.location}/{path}")

    def write_path(self, path: str, content: bytes, _sync: bool = True) -> str:  # type: ignore[override]
        """Write `content` at `path` below the folder; return its gdrive:// URI."""
        store = self.store()
        store.write_bytes(path, content)
        return f"{store.location}/{path}"

    async def aread_path(self, path: str) -> bytes:
        return await asyncio.to_thread(self.read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        return await asyncio.to_thread(self.write_path, path, content)

    def _resolve_path(self, path: str) -> str | None:
        """Result keys as Prefect records them: as given, relative to the folder.

        Prefect calls this on storage blocks that were not saved; without it, it would resolve
        result keys against the current directory.
        """
        return path or None
