"""The Drive v3 client under `tasks/storage/drive.py`: credentials, the service, and what Drive's errors mean.

`translate_error` turns one failed request into either a `RemoteUnavailableError` to retry (a
dropped connection, 429, 5xx, a rate-limit 403) or a specific error that says what to fix
(refused credentials, a missing file, a full quota, no permission).
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tasks.errors import (
    ColabflowError,
    InvalidParameterError,
    MissingObjectError,
    RemoteUnavailableError,
    StorageRejectedError,
)
from tasks.storage.retries import rate_limit_wait, transient_wait

try:
    import google.auth
    import httplib2
    from google.auth.credentials import AnonymousCredentials, Credentials
    from google.auth.exceptions import (
        DefaultCredentialsError,
        GoogleAuthError,
        TransportError,
    )
    from google.oauth2 import service_account
    from googleapiclient.discovery import build
    from googleapiclient.errors import HttpError
    from googleapiclient.http import HttpRequest
except ImportError as missing:  # pragma: no cover - depends on the installation
    raise ImportError(f"gdrive:// needs google-api-python-client: pip install 'colabflow[drive]' ({missing})") from None

GOOGLE_ENDPOINT = "https://www.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/drive"]
RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
CREDENTIALS_ADVICE = (
    "check the service account key in the DriveFolder block (--drive NAME), or renew Application Default "
    "Credentials (on Colab: google.colab.auth.authenticate_user())"
)


def drive_credentials(service_account_info: Mapping[str, Any] | None = None,
                      endpoint: str = GOOGLE_ENDPOINT) -> Credentials:
    """The service account given; else none for a test server or emulator; else Application Default Credentials."""
    if service_account_info:
        try:
            return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call,no-any-return]
                dict(service_account_info), scopes=SCOPES)
        except (ValueError, KeyError):
            raise InvalidParameterError(
                "service_account_info is not a service account key (it needs type, client_email, private_key and "
                "token_uri); paste the whole JSON key file (Cloud console: IAM > Service accounts > Keys)"
            ) from None
    if endpoint.rstrip("/") != GOOGLE_ENDPOINT:
        return AnonymousCredentials()  # type: ignore[no-untyped-call]
    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError:
        raise StorageRejectedError(
            "no Google credentials found for gdrive://; on Colab run google.colab.auth.authenticate_user(), "
            "elsewhere `gcloud auth application-default login --scopes=https://www.googleapis.com/auth/drive,"
            "https://www.googleapis.com/auth/cloud-platform`, or pass --drive NAME (a DriveFolder block)"
        ) from None
    return credentials


def build_service(credentials: Credentials, endpoint: str) -> Any:
    scheme = urlsplit(endpoint).scheme

    def request(http: Any, postproc: Any, uri: str, **options: Any) -> HttpRequest:
        # With api_endpoint set, the client moves media URLs to the endpoint's host but keeps
        # https (discovery._fix_up_media_path_base_url); every URL must use the endpoint's scheme.
        return HttpRequest(http, postproc, urlunsplit(urlsplit(uri)._replace(scheme=scheme)), **options)

    return build("drive", "v3", credentials=credentials, requestBuilder=request,
                 client_options={"api_endpoint": f"{endpoint}/drive/v3/"}, static_discovery=True,
                 cache_discovery=False)


def translate_error(what: str, error: Exception, account: str, location: str) -> RemoteUnavailableError:
    """Return a retryable error for transient trouble; raise a specific one for the rest."""
    if isinstance(error, (ConnectionError, TimeoutError, http.client.HTTPException, ssl.SSLError,
                          httplib2.HttpLib2Error, TransportError)):
        return RemoteUnavailableError(f"{what}: Drive could not be reached ({type(error).__name__})")
    if isinstance(error, GoogleAuthError):
        raise StorageRejectedError(f"{what}: the Google credentials were refused or could not be refreshed "
                                   f"({type(error).__name__}); {CREDENTIALS_ADVICE}") from None
    if not isinstance(error, HttpError):
        raise error
    status, reason = int(error.resp.status), error_reason(error)
    headers = {"Retry-After": error.resp.get("retry-after", "")}
    transient, wait = transient_wait(status, headers)
    if transient or reason in RATE_LIMIT_REASONS:
        wait = rate_limit_wait(headers) if wait is None else wait
        return RemoteUnavailableError(f"{what}: Drive answered {status} {reason}".rstrip(), retry_after=wait)
    raise _rejection(what, status, reason, str(error.reason), account, location) from None


def _rejection(what: str, status: int, reason: str, message: str, account: str, location: str) -> ColabflowError:
    if status == 401:
        return StorageRejectedError(f"{what}: Drive refused the credentials (401); {CREDENTIALS_ADVICE}")
    if status == 404:
        return MissingObjectError(f"{what}: Drive has no such file or folder, or it is not shared with {account}")
    if reason == "storageQuotaExceeded":
        return StorageRejectedError(
            f"{what}: the Drive storage quota of {account} is used up (403 storageQuotaExceeded); free space in "
            "that Drive, or use another account or a folder in a shared drive (a service account has no storage "
            "of its own: put the folder in a shared drive)"
        )
    if status == 403:
        return StorageRejectedError(
            f"{what}: {account} may not do this in {location} (403 {reason}); share the folder with it "
            "as Editor (Viewer is enough for a source) or use an account with write access; with Application "
            "Default Credentials, log in with the Drive scope"
        )
    return StorageRejectedError(f"{what}: Drive answered {status} {reason}: {message}")


def error_reason(error: HttpError) -> str:
    details = error.error_details
    if isinstance(details, list) and details and isinstance(details[0], dict):
        return str(details[0].get("reason", ""))
    return ""
