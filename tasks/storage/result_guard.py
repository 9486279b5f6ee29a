"""Refuse Prefect result records that would make Prefect run code on load.

A Prefect result record (`ResultRecord.serialize()`, or its metadata alone when results and
metadata are stored apart) names the serializer that wrote it, and Prefect honours that name on
read: "pickle" unpickles, and even a "json" record may name any importable function as its
`object_decoder` or `jsonlib`. Shared storage (a Drive folder, a bucket) can be written by
others, so colabflow's result storage hands Prefect only records written by Prefect's default
JSON serializer. Anything that is not a result record passes through unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.errors import CorruptOutputError

_DEFAULT_DECODER = "prefect.serializers.prefect_json_object_decoder"


def require_json_result(content: bytes, path: str) -> bytes:
    """Return `content`, unless it is a result record whose serializer is not Prefect's default JSON.

    Raises:
        CorruptOutputError: the record names another serializer (pickle, compressed, a custom decoder).
    """
    serializer = _serializer_of(content)
    if serializer is None or _is_default_json(serializer):
        return content
    raise CorruptOutputError(
        f"result record {path!r} was written with the serializer {json.dumps(serializer)[:200]}, expected "
        "Prefect's default JSON serializer; colabflow never loads pickled or custom-decoded results from shared "
        "storage: delete the record (the task then runs again) and set result_serializer=\"json\" on the task"
    )


def _serializer_of(content: bytes) -> Any:
    """The serializer a result record (or its metadata) names; None when `content` names none."""
    try:
        document = json.loads(content)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    metadata = document.get("metadata", document)
    if not isinstance(metadata, dict) or "serializer" not in metadata:
        return None
    return metadata["serializer"]


def _is_default_json(serializer: Any) -> bool:
    """Prefect's JSONSerializer loading with the stdlib json, its own decoder (or none), no extra options."""
    return (
        isinstance(serializer, dict)
        and serializer.get("type") == "json"
        and serializer.get("jsonlib", "json") == "json"
        and serializer.get("object_decoder", _DEFAULT_DECODER) in (_DEFAULT_DECODER, None)
        and not serializer.get("loads_kwargs")
    )
