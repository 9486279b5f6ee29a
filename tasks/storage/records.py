"""Small JSON records on a place (result storage): read leniently, written whole.

A damaged record is logged and treated as absent, since every record here only saves work
(a measured threshold, a batch size that fits) and is rewritten on the next measurement.
"""

from __future__ import annotations

import json
import logging
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tasks.storage.places import Place
from tasks.storage.stores import read_optional

M = TypeVar("M", bound=BaseModel)
logger = logging.getLogger("colabflow.records")


def read_record(place: Place, key: str, model: type[M]) -> M | None:
    """The record at `key` under `place`, or None when there is none or it is damaged (logged)."""
    content = read_optional(place.store, place.key(key))
    if content is None:
        return None
    try:
        return model.model_validate_json(content)
    except ValidationError as error:
        logger.warning(
            "ignoring %s, which is not a valid %s (%s); it will be rewritten",
            place.uri(place.key(key)), model.__doc__ or model.__name__, error.errors()[0]["msg"],
        )
        return None


def write_record(place: Place, key: str, record: BaseModel) -> None:
    """Write `record` as indented JSON at `key` under `place` (result storage)."""
    content = json.dumps(record.model_dump(), indent=1, sort_keys=True).encode() + b"\n"
    place.writable("result storage").write_bytes(place.key(key), content)
