"""`final_state_sha256`: one digest for equal states, whatever the order of their dicts or their file layout.

The digest frames, length-prefixed so no two fields run together: the format name, the skeleton
as canonical JSON (sorted keys, and every `__items__` list in key order, since a reloaded torch
optimizer lists its state's keys in another order than the live one), then each tensor in name
order with its dtype, shape and bytes.
"""

from __future__ import annotations

import hashlib
import json

import torch
from pydantic import JsonValue

from tasks.iterations.state_format import STATE_FORMAT, EncodedState


def state_digest(encoded: EncodedState) -> str:
    """A sha256 hex that equal states share, independent of how the tensors were laid out on disk."""
    hasher = hashlib.sha256()

    def frame(data: bytes | memoryview) -> None:
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)

    frame(STATE_FORMAT.encode())
    frame(json.dumps(_canonical(encoded.skeleton), sort_keys=True, separators=(",", ":"), allow_nan=True).encode())
    frame(str(len(encoded.tensors)).encode())
    for name in sorted(encoded.tensors):
        tensor = encoded.tensors[name].detach().cpu()
        frame(name.encode())
        frame(str(tensor.dtype).encode())
        frame(json.dumps(list(tensor.shape)).encode())
        frame(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return hasher.hexdigest()


def _canonical(node: JsonValue) -> JsonValue:
    """The skeleton with every `__items__` list in key order: a dict's insertion order is not its content."""
    if isinstance(node, list):
        return [_canonical(item) for item in node]
    if not isinstance(node, dict):
        return node
    items = node.get("__items__")
    if set(node) == {"__items__"} and isinstance(items, list):
        pairs: list[tuple[JsonValue, JsonValue]] = [(pair[0], _canonical(pair[1])) for pair in items
                                                    if isinstance(pair, list)]
        pairs.sort(key=lambda pair: (type(pair[0]).__name__, str(pair[0])))
        return {"__items__": [list(pair) for pair in pairs]}
    return {key: _canonical(item) for key, item in node.items()}
