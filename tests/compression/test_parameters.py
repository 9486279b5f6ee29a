from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.compression.parameters import CompressJob
from tasks.engine.parameters import GitHubDispatchCallback, WebhookCallback


def error_text(**fields: object) -> str:
    with pytest.raises(ValidationError) as caught:
        CompressJob(**{"source": "data", "job": "j", **fields})  # type: ignore[arg-type]
    return str(caught.value)


def test_defaults_are_the_embedded_ones() -> None:
    """A source and a job name are enough; the rest defaults to local, CPU-or-GPU, level 6."""
    job = CompressJob(source="data", job="corpus-2026.11_a")  # type: ignore[arg-type]
    assert job.source == ["data"]
    assert (job.destination, job.codec, job.level, job.batch_size) == ("./colabflow-data", "auto", 6, 1024)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"level": 12}, "level\n  Input should be less than or equal to 9"),
        ({"level": -1}, "Input should be greater than or equal to 0"),
        ({"codec": "zstd"}, "Input should be 'auto', 'cpu' or 'gpu'"),
        ({"job": "../escape"}, "String should match pattern"),
        ({"job": ""}, "String should match pattern"),
        ({"batch_size": 0}, "batch_size\n  Input should be greater than or equal to 1"),
        ({"source": []}, "List should have at least 1 item"),
        ({"destination": "github://o/r@main/x"}, "destination 'github://o/r@main/x' uses the scheme 'github://'"),
        ({"source": "s3://bucket/x"}, "source 's3://bucket/x' uses the scheme 's3://'"),
        ({"results": "ftp://host/x"}, "results 'ftp://host/x' uses the scheme 'ftp://'"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_values_fail_before_any_work_with_the_field_named(fields: dict[str, object], message: str) -> None:
    """Each bad value is rejected by the model, and the message names the field and the rule."""
    assert message in error_text(**fields)


def test_a_webhook_url_must_be_http() -> None:
    """A callback URL that is not http(s) is rejected, quoting it."""
    with pytest.raises(ValidationError, match="webhook url must be an http:// or https:// URL, got 'ftp://x/y'"):
        WebhookCallback(url="ftp://x/y")


def test_callbacks_are_told_apart_by_kind() -> None:
    """A dict with kind=github becomes a GitHub dispatch callback."""
    job = CompressJob.model_validate(
        {"source": "d", "job": "j", "callback": {"kind": "github", "repository": "o/r", "token_block": "gh"}}
    )
    assert isinstance(job.callback, GitHubDispatchCallback)
    assert job.callback.api_url == "https://api.github.com"
