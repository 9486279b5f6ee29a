"""Small text functions for trying `colabflow map` and for its tests: no model, no download."""

from __future__ import annotations

from typing import Any


def text_of(item: dict[str, Any]) -> str:
    """An item's text: a record's `text` field, or a file's bytes decoded as UTF-8."""
    if "bytes" in item:
        return bytes(item["bytes"]).decode("utf-8", "replace")
    return str(item.get("text", ""))


def measure(batch: list[dict[str, Any]]) -> list[dict[str, int]]:
    """Characters and words of each item; an item with `"fail": true` raises, as a poison item would."""
    results = []
    for item in batch:
        if item.get("fail") is True:
            raise ValueError(f"item {item.get('id')!r} asked to fail")
        text = text_of(item)
        results.append({"characters": len(text), "words": len(text.split())})
    return results
