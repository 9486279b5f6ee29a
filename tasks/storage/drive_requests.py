"""The requests of one Drive store: a service per thread, each request retried and its errors translated.

httplib2 connections must not be shared between threads, so each thread builds its own service
on first use. Credentials not given are resolved on the first request, not when the store is made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tasks.storage.drive_api import build_service, drive_credentials, translate_error
from tasks.storage.retries import RetryPolicy

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

T = TypeVar("T")
Entry = dict[str, Any]
Entries = list[Entry]
logger = logging.getLogger("colabflow.drive")

ENTRY_FIELDS = "id,name,mimeType,size,md5Checksum,appProperties,createdTime"
PAGE_SIZE = 1000


class DriveRequests:
    """Runs the Drive requests of the store at `location`, through one retry policy."""

    def __init__(self, location: str, credentials: Credentials | None, endpoint: str, policy: RetryPolicy) -> None:
        self.location = location
        self.endpoint = endpoint
        self.policy = policy
        self._credentials = credentials
        self._local = threading.local()
        self._guard = threading.Lock()

    def files(self) -> Any:
        """This thread's `files()` resource: httplib2 connections must not be shared between threads."""
        service = getattr(self._local, "service", None)
        if service is None:
            with self._guard:
                if self._credentials is None:
                    self._credentials = drive_credentials(None, self.endpoint)
            service = self._local.service = build_service(self._credentials, self.endpoint)
        return service.files()

    def account(self) -> str:
        """Who the requests run as, for messages that ask to share a folder with it."""
        email = getattr(self._credentials, "service_account_email", None)
        return f"the service account {email}" if email else "the account colabflow uses"

    def call(self, what: str, operation: Callable[[], T]) -> T:
        """Run one Drive request, retrying transient answers with backoff that honours Retry-After."""

        def once() -> T:
            try:
                return operation()
            except Exception as error:  # noqa: BLE001 - translated: raised as itself or a specific error
                raise translate_error(what, error, self.account(), self.location) from None

        return self.policy.run(once, logger)

    def named(self, parent: str, name: str) -> Entries:
        """Entries called `name` in `parent` that are not trashed (one request; callers retry)."""
        return cast(Entries, self.list_page(f"name = {quote_literal(name)} and {quote_literal(parent)} in parents "
                                            "and trashed = false", None).get("files", []))

    def list_page(self, query: str, token: str | None) -> Entry:
        """One page of the entries a query matches, in My Drive and shared drives alike (one request)."""
        return cast(Entry, self.files().list(
            q=query, pageSize=PAGE_SIZE, pageToken=token, fields=f"nextPageToken,files({ENTRY_FIELDS})",
            supportsAllDrives=True, includeItemsFromAllDrives=True).execute())


def quote_literal(value: str) -> str:
    """A string literal for a Drive query."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
