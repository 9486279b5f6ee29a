"""`CompressJob`, the one parameter model of the compress flow (rendered as a form in the UI)."""

from __future__ import annotations

from typing import Annotated, Literal, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.codecs import CodecChoice
from tasks.destinations import DESTINATION_SCHEMES
from tasks.locations import scheme_of, unsupported_scheme_message
from tasks.sources import SOURCE_SCHEMES
from tasks.stores import StorageAccess

JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class WebhookCallback(BaseModel):
    """POST the job report as JSON, signed with HMAC-SHA256."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["webhook"] = "webhook"
    url: str = Field(description="http(s) URL that receives the job report.")
    secret_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding the HMAC key; unsigned if empty.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"webhook url must be an http:// or https:// URL, got {url!r}")
        return url


class GitHubDispatchCallback(BaseModel):
    """Send a GitHub `repository_dispatch` event carrying the job report."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["github"] = "github"
    repository: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="OWNER/REPO that receives the event."
    )
    token_block: str = Field(description="Name of a Prefect Secret block holding the GitHub token.")
    event_type: str = Field(
        default="colabflow-job-finished", min_length=1, max_length=100,
        description="The event_type a workflow's `repository_dispatch: types:` listens for.",
    )
    api_url: str = Field(
        default="https://api.github.com", description="GitHub API base URL (GitHub Enterprise: https://HOST/api/v3)."
    )


Callback = Annotated[Union[WebhookCallback, GitHubDispatchCallback], Field(discriminator="kind")]


class CompressJob(BaseModel):
    """Compress every chunk of a source into standard gzip members at a destination."""

    model_config = ConfigDict(extra="forbid")

    source: list[str] = Field(
        min_length=1,
        description="Chunk files or folders, mixed freely: local paths, file://, github://OWNER/REPO@REF/PATH, "
        "gs://BUCKET/PATH, gdrive://FOLDER_ID/PATH.",
    )
    destination: str = Field(
        default="./colabflow-data", min_length=1,
        description="Where <job>/ goes: a local directory, gs://BUCKET/PATH or gdrive://FOLDER_ID/PATH.",
    )
    results: str | None = Field(
        default=None,
        description="Where batch checkpoints go (same kinds of location); empty: the destination. "
        "Put them on GCS or Drive so a new machine can resume the job.",
    )
    access: StorageAccess = Field(
        default_factory=StorageAccess, description="Blocks whose credentials reach remote sources and destinations."
    )
    job: str = Field(pattern=JOB_NAME_PATTERN, description="Job name: letters, digits, '.', '_', '-'.")
    codec: CodecChoice = Field(default="auto", description="auto picks the GPU when usable, else the CPU.")
    level: int = Field(default=6, ge=0, le=9, description="gzip level 0-9; 0 stores without compressing.")
    batch_size: int = Field(default=256, ge=1, le=100_000, description="Most chunks in one batch.")
    batch_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="Most bytes in one batch (one oversized chunk still runs alone)."
    )
    callback: Callback | None = Field(default=None, description="Optional notice sent once when the job ends.")
    refresh_checkpoints: bool = Field(
        default=False, description="Ignore saved batch checkpoints and check every chunk again."
    )
    compute_budget: str | None = Field(
        default=None, min_length=1,
        description="Name of a ComputeBudget block (rates and quota); empty: its default rates and no quota.",
    )

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, source: object) -> object:
        return [source] if isinstance(source, str) else source

    @field_validator("source")
    @classmethod
    def _readable_sources(cls, source: list[str]) -> list[str]:
        for location in source:
            _require_supported("source", location, SOURCE_SCHEMES)
        return source

    @field_validator("destination")
    @classmethod
    def _writable_destination(cls, destination: str) -> str:
        return _require_supported("destination", destination, DESTINATION_SCHEMES)

    @field_validator("results")
    @classmethod
    def _writable_results(cls, results: str | None) -> str | None:
        return None if results is None else _require_supported("results", results, DESTINATION_SCHEMES)


def _require_supported(role: str, location: str, schemes: frozenset[str]) -> str:
    if not location:
        raise ValueError(f"{role} must not be empty")
    if scheme_of(location) not in schemes:
        raise ValueError(unsupported_scheme_message(role, location))
    return location
