"""Parameter pieces every job kind's model uses: callbacks, and the fields and checks of its job folder."""

from __future__ import annotations

from typing import Annotated, Literal, Union
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from tasks.storage.locations import LOCAL_SCHEMES, local_path, scheme_of, unsupported_scheme_message
from tasks.storage.places import READABLE_SCHEMES, WRITABLE_SCHEMES


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


def require_supported(role: str, location: str, schemes: frozenset[str]) -> str:
    """`location`, if its scheme is one of `schemes`; a ValueError naming the role otherwise."""
    if not location:
        raise ValueError(f"{role} must not be empty")
    if scheme_of(location) not in schemes:
        raise ValueError(unsupported_scheme_message(role, location))
    return location


def _writable_destination(destination: str) -> str:
    return require_supported("destination", destination, WRITABLE_SCHEMES)


def _writable_results(results: str | None) -> str | None:
    return None if results is None else require_supported("results", results, WRITABLE_SCHEMES)


def _one_or_many(sources: object) -> object:
    return [sources] if isinstance(sources, str) else sources


def _readable_sources(sources: list[str]) -> list[str]:
    for location in sources:
        require_supported("source", location, READABLE_SCHEMES)
    return sources


def _comparable(location: str) -> tuple[str, ...]:
    """A location as scheme plus path segments: a local one absolute and resolved, so `src/./out` is `src/out`."""
    scheme = scheme_of(location)
    if scheme in LOCAL_SCHEMES:
        return ("file", *local_path(location).resolve().parts)
    return (scheme, *[part for part in location.split("://", 1)[1].split("/") if part])


def refuse_outputs_in_sources(sources: list[str], outputs: dict[str, str | None]) -> None:
    """Refuse a destination or results location inside a source folder, naming both.

    Each run would list its own outputs as new items: `colabflow compress src src/out` run twice
    compressed `out/j/chunks/a.txt.gz` again, then its checkpoints and manifest. A source that is
    a file (a JSONL items file) holds nothing else, so an output beside it is fine.
    """
    for source in sources:
        if scheme_of(source) in LOCAL_SCHEMES and local_path(source).is_file():
            continue
        folder = _comparable(source)
        for role, location in outputs.items():
            if location is not None and _comparable(location)[:len(folder)] == folder:
                raise ValueError(
                    f"{role} {location!r} lies inside source {source!r}: every run would read its own outputs "
                    f"as new items. Choose a {role} outside the source"
                )


DEFAULT_DESTINATION = "./colabflow-data"
Sources = Annotated[list[str], Field(min_length=1), BeforeValidator(_one_or_many), AfterValidator(_readable_sources)]
Destination = Annotated[str, Field(
    min_length=1, description="Where <job>/ goes: a local directory, gs://BUCKET/PATH or gdrive://FOLDER_ID/PATH.",
), AfterValidator(_writable_destination)]
Results = Annotated[str | None, Field(
    description="Where batch checkpoints go (same kinds of location); empty: the destination. "
    "Put them on GCS or Drive so a new machine can resume the job.",
), AfterValidator(_writable_results)]
TaskRuns = Annotated[int, Field(
    ge=1, le=10_000,
    description="Most task runs the batches are spread over; each carries its share and commits every batch alone.",
)]
FollowSymlinks = Annotated[bool, Field(
    description="Also take symlinks in a local source folder that point outside it, and enter linked folders; "
    "off: such links are left out, never read, and named in the report. Loops and dangling links are always left out.",
)]
ComputeBudgetName = Annotated[str | None, Field(
    min_length=1, description="Name of a ComputeBudget block (rates and quota); empty: its default rates and no quota.",
)]
