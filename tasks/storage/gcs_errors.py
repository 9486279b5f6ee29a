"""GCS answers translated into colabflow's errors: retry what is transient, name what to fix for the rest."""

from __future__ import annotations

from tasks.errors import MissingObjectError, RemoteUnavailableError, StorageRejectedError
from tasks.storage.retries import transient_wait

CREDENTIALS_ADVICE = "GCS refused the credentials; check --gcp-credentials (or Application Default Credentials)"


def translate_gcs_error(what: str, error: Exception, bucket_name: str) -> RemoteUnavailableError:
    """Return a retryable error for transient trouble; raise a specific one for the rest.

    A precondition failure (412) is raised as it is: the caller's read-modify-write handles it.
    """
    import requests
    from google.api_core import exceptions as api
    from google.auth.exceptions import GoogleAuthError

    if isinstance(error, api.PreconditionFailed):
        raise error
    if isinstance(error, GoogleAuthError):
        raise StorageRejectedError(f"{what}: {CREDENTIALS_ADVICE} ({type(error).__name__})") from None
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return RemoteUnavailableError(f"{what}: GCS could not be reached ({type(error).__name__})")
    if not isinstance(error, api.GoogleAPICallError):
        raise error
    status = int(error.code or 0)
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    transient, wait = transient_wait(status, headers)
    if transient:
        return RemoteUnavailableError(f"{what}: GCS answered {status}", retry_after=wait)
    advice = {
        401: CREDENTIALS_ADVICE,
        403: f"the credentials may not do this on bucket {bucket_name!r}; grant the service account "
        "roles/storage.objectAdmin on it (or objectViewer for a source)",
        404: f"there is no such object, or bucket {bucket_name!r} does not exist",
    }.get(status)
    if status == 404:
        raise MissingObjectError(f"{what}: {advice}") from None
    if advice:
        raise StorageRejectedError(f"{what}: {advice}") from None
    raise StorageRejectedError(f"{what}: GCS answered {status}: {error.message}") from None
