"""Locations (paths and URIs) and the one rule that maps a URI scheme to an implementation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from tasks.errors import InvalidParameterError

T = TypeVar("T")

LOCAL_SCHEMES = ("", "file")
JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # a job names a folder on every store


def scheme_of(location: str) -> str:
    """The URI scheme of a location; '' for a plain path."""
    return urlsplit(location).scheme


def is_local(location: str) -> bool:
    """Whether a location is on this machine: a plain path or a `file://` URI (the common case first)."""
    return location.startswith("file://") or scheme_of(location) in LOCAL_SCHEMES


def local_path(location: str) -> Path:
    """Turn a plain path or a `file://` URI into a path."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidParameterError(
                f"file URI {location!r} names the host {parts.netloc!r}; use file:///absolute/path"
            )
        return Path(unquote(parts.path))
    return Path(location)


def unsupported_scheme_message(role: str, location: str) -> str:
    """What to say about a location whose scheme this version cannot handle."""
    return (
        f"{role} {location!r} uses the scheme {scheme_of(location) + '://'!r}, which this version "
        "does not support; use a local directory, a file:// URI, gs://BUCKET/PATH, "
        "gdrive://FOLDER_ID/PATH or (sources only) github://OWNER/REPO@REF/PATH"
    )


def open_location(role: str, location: str, registry: Mapping[str, Callable[[str], T]]) -> T:
    """Build the implementation registered for the location's scheme."""
    factory = registry.get(scheme_of(location))
    if factory is None:
        raise InvalidParameterError(unsupported_scheme_message(role, location))
    return factory(location)
