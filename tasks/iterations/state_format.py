"""How an iterative program's state is checkpointed without pickle: a JSON skeleton and safetensors.

A program's `state_dict()` is a tree of dicts, lists and tuples whose leaves are torch tensors,
numpy arrays, numpy scalars and JSON scalars (None, bool, int, str, float including nan and inf).
`encode_state` splits the tree in two:

- the *skeleton*: the tree as JSON, each tensor-like leaf replaced by a placeholder naming it;
- the *tensors*: owned, contiguous CPU copies named "t0", "t1", ... in traversal order.

Placeholders and wrappers are JSON objects with a single key that starts with "__":

    {"__tensor__": "t0"}              a torch tensor (comes back on the CPU)
    {"__ndarray__": "t1"}             a numpy array (comes back writable, with its dtype)
    {"__ndscalar__": "t2"}            a numpy scalar such as numpy.float64, kept as a 0-d tensor
    {"__tuple__": [...]}              a tuple, such as the betas of an Adam param group
    {"__items__": [[key, node], ...]} a dict with int keys (an optimizer's "state") or with str
                                      keys that start with "__"; other dicts are JSON objects

Plain JSON objects never have keys starting with "__", so a wrapper cannot be mistaken for data.
Anything else (a numpy Generator, a set, bytes, a module) is refused with `InvalidProgramError`
naming its key path, its type and what to store instead. A tensor found twice comes back as two;
dict subclasses come back as plain dicts (an OrderedDict loses `_metadata`; torch then assumes
current module versions). `serialize_state` and `deserialize_state` turn the parts into bytes and
back; `state_digest` is a sha256 that equal states share, however their files were laid out.
"""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy
import torch
from pydantic import JsonValue
from safetensors import SafetensorError
from safetensors.torch import load, save

from tasks.errors import CorruptOutputError, InvalidProgramError

STATE_FORMAT = "colabflow-state-v1"
_LEAF_MARKERS = ("__tensor__", "__ndarray__", "__ndscalar__")
_PLAIN_SCALARS = (bool, int, float, str)
_PLAIN_CONTAINERS = (dict, OrderedDict, list, tuple)
# What safetensors both writes and reads back (0.8 writes float8_e8m0fnu but cannot read it).
_TENSOR_DTYPES = frozenset({
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32,
    torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64,
    torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz,
})
# Native byte order only: the numpy dtypes `torch.from_numpy` takes that safetensors stores.
_NUMPY_DTYPES = frozenset(numpy.dtype(name) for name in (
    "bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64",
))
_NUMPY_TORCH_DTYPES = frozenset(torch.from_numpy(numpy.zeros(0, dtype)).dtype for dtype in _NUMPY_DTYPES)
_DAMAGED = "the checkpoint is damaged: resume from an earlier one"
_ACCEPTED = ("a checkpoint holds torch tensors, numpy arrays and scalars, JSON values (None, bool, int, "
             "float, str) and dicts, lists and tuples of them")


@dataclass(frozen=True, eq=False)
class EncodedState:
    """A program's state split into a JSON skeleton and the tensors it names.

    Compare two of them with `state_digest`, not `==`: tensors have no single truth value.
    """

    skeleton: JsonValue
    tensors: dict[str, torch.Tensor]


def encode_state(state: Mapping[str, object]) -> EncodedState:
    """Copy a program's state into checkpoint form, so the live objects may change meanwhile.

    Raises:
        InvalidProgramError: the state is not a dict with str keys, or holds a value that cannot
            be stored without pickle; the message names its key path and type.
    """
    keys = [key for key in state if not isinstance(key, str)] if isinstance(state, dict) else []
    if type(state) not in (dict, OrderedDict) or keys:
        arrived = f"a dict with a key {keys[0]!r} of type {_type_name(keys[0])}" if keys else f"a {_type_name(state)}"
        raise InvalidProgramError(
            f"state_dict() returned {arrived}; expected a dict with str keys: return, "
            "for example, {'model': model.state_dict(), 'step': step}"
        )
    encoder = _Encoder()
    return EncodedState(encoder.node(state, ""), encoder.tensors)


def decode_state(encoded: EncodedState, copy: bool = True) -> dict[str, object]:
    """Rebuild the state tree for `load_state_dict`, with fresh tensors and arrays of its own.

    `copy=False` hands out the encoded tensors themselves (and arrays sharing their memory): for a
    checkpoint just read, which nothing else holds, that saves a copy of the whole state.

    Raises:
        CorruptOutputError: the skeleton is malformed or names a tensor it does not hold.
    """
    tensors = encoded.tensors if not copy else _Copying(encoded.tensors)
    state = _decode(encoded.skeleton, tensors, "")
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise CorruptOutputError(
            f"the checkpoint's state skeleton is a {type(state).__name__}, expected a dict with str keys; {_DAMAGED}"
        )
    return state


def serialize_state(encoded: EncodedState) -> tuple[bytes, bytes]:
    """The skeleton as JSON bytes and the tensors as safetensors bytes."""
    skeleton = json.dumps(encoded.skeleton, separators=(",", ":"), allow_nan=True).encode()
    return skeleton, save(encoded.tensors, metadata={"format": STATE_FORMAT})


def deserialize_state(skeleton_bytes: bytes, tensor_bytes: bytes) -> EncodedState:
    """Read back what `serialize_state` wrote, checking that the two halves belong together.

    Raises:
        CorruptOutputError: either half does not parse, or they name different tensors.
    """
    try:
        skeleton: JsonValue = json.loads(skeleton_bytes)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise CorruptOutputError(f"the checkpoint's state skeleton is not JSON ({error}); {_DAMAGED}") from error
    try:
        tensors = load(tensor_bytes)
    except (SafetensorError, KeyError, ValueError, RuntimeError) as error:
        raise CorruptOutputError(f"the checkpoint's state tensors are not safetensors ({error!r}); {_DAMAGED}") from error
    return paired_state(skeleton, tensors)


def paired_state(skeleton: JsonValue, tensors: dict[str, torch.Tensor]) -> EncodedState:
    """A skeleton and the tensors it names, checked to belong together."""
    named = sorted(_placeholders(skeleton))
    if named != sorted(tensors):
        raise CorruptOutputError(
            f"the checkpoint's state skeleton names tensors {named[:8]} but its safetensors file holds "
            f"{sorted(tensors)[:8]}; the two files come from different checkpoints: {_DAMAGED}"
        )
    return EncodedState(skeleton, tensors)


class _Encoder:
    """One walk over a state tree, collecting tensor copies in traversal order."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._open: set[int] = set()  # ids of the containers on the current path: a cycle never ends

    def node(self, value: object, path: str) -> JsonValue:
        if value is None or (isinstance(value, _PLAIN_SCALARS) and type(value) in _PLAIN_SCALARS):
            return value
        if isinstance(value, torch.Tensor):
            return {"__tensor__": self._add(_tensor_copy(value, path), path)}
        if type(value) is numpy.ndarray:
            return {"__ndarray__": self._add(_array_copy(value, path, "numpy array"), path)}
        if isinstance(value, numpy.generic):
            return {"__ndscalar__": self._add(_array_copy(numpy.asarray(value), path, "numpy scalar"), path)}
        if isinstance(value, (dict, list, tuple)) and type(value) in _PLAIN_CONTAINERS:
            if id(value) in self._open:
                raise InvalidProgramError(f"state value {path!r} contains itself; a checkpoint holds trees: store it once")
            self._open.add(id(value))
            try:
                return self._dict(value, path) if isinstance(value, dict) else self._sequence(value, path)
            finally:
                self._open.discard(id(value))
        raise InvalidProgramError(f"state value {path!r} is a {_type_name(value)}; {_ACCEPTED}: {_hint(value)}")

    def _dict(self, value: dict[Any, object], path: str) -> JsonValue:
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: self.node(item, _join(path, key)) for key, item in value.items()}
        for key in value:
            if not isinstance(key, str) and type(key) is not int:
                raise InvalidProgramError(
                    f"state value {path!r} has a key {key!r} of type {_type_name(key)}; a checkpoint keeps "
                    "dict keys that are str or int only: convert the keys, for example with str(key)"
                )
        return {"__items__": [[key, self.node(item, _join(path, key))] for key, item in value.items()]}

    def _sequence(self, value: list[object] | tuple[object, ...], path: str) -> JsonValue:
        items = [self.node(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return items if isinstance(value, list) else {"__tuple__": items}

    def _add(self, tensor: torch.Tensor, path: str) -> str:
        """Name a tensor by its path, so equal states name theirs alike whatever their dicts' order."""
        name = path or "(root)"
        while name in self.tensors:  # `{"a.b": x, "a": {"b": y}}` has two paths 'a.b'
            name += "'"
        self.tensors[name] = tensor
        return name


def _tensor_copy(tensor: torch.Tensor, path: str) -> torch.Tensor:
    if tensor.layout != torch.strided or tensor.dtype not in _TENSOR_DTYPES or tensor.is_meta:
        raise InvalidProgramError(
            f"state value {path!r} is a torch tensor of dtype {tensor.dtype}, layout {tensor.layout} on "
            f"{tensor.device}; a checkpoint holds dense tensors with data, of dtype "
            f"{', '.join(sorted(str(dtype) for dtype in _TENSOR_DTYPES))}: convert it with .to_dense() or .to(dtype)"
        )
    copy = tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
    return copy.resolve_conj().resolve_neg()


def _array_copy(array: numpy.ndarray[Any, Any], path: str, what: str) -> torch.Tensor:
    if array.dtype not in _NUMPY_DTYPES:
        raise InvalidProgramError(
            f"state value {path!r} is a {what} of dtype {array.dtype}; a checkpoint holds "
            f"numpy values of dtype {', '.join(sorted(str(dtype) for dtype in _NUMPY_DTYPES))} in native byte "
            "order: convert it with .astype(...), or store text and objects as JSON values"
        )
    return torch.from_numpy(numpy.array(array, order="C", copy=True))


class _Copying(dict[str, torch.Tensor]):
    """The tensors, each handed out as a fresh copy."""

    def __getitem__(self, name: str) -> torch.Tensor:
        return super().__getitem__(name).clone()


def _decode(node: JsonValue, tensors: Mapping[str, torch.Tensor], path: str) -> object:
    if isinstance(node, list):
        return [_decode(item, tensors, f"{path}[{index}]") for index, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if not any(key.startswith("__") for key in node):
        return {key: _decode(item, tensors, _join(path, key)) for key, item in node.items()}
    marker, body = next(iter(node.items())) if len(node) == 1 else ("", None)
    if marker == "__tuple__" and isinstance(body, list):
        return tuple(_decode(item, tensors, f"{path}[{index}]") for index, item in enumerate(body))
    if marker == "__items__" and isinstance(body, list):
        return dict(_decode_item(item, tensors, path) for item in body)
    if marker in _LEAF_MARKERS and isinstance(body, str) and body in tensors:
        tensor = tensors[body]
        if marker == "__tensor__":
            return tensor
        if tensor.dtype in _NUMPY_TORCH_DTYPES and marker == "__ndarray__":
            return tensor.numpy()
        if tensor.dtype in _NUMPY_TORCH_DTYPES and tensor.dim() == 0:
            return tensor.numpy()[()]
    raise CorruptOutputError(
        f"the checkpoint's state at {path or 'the top'!r} holds a malformed placeholder "
        f"{json.dumps(node)[:200]}; {_DAMAGED}"
    )


def _decode_item(item: JsonValue, tensors: Mapping[str, torch.Tensor], path: str) -> tuple[str | int, object]:
    if isinstance(item, list) and len(item) == 2:
        key, value = item
        if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
            return key, _decode(value, tensors, _join(path, key))
    raise CorruptOutputError(
        f"the checkpoint's state at {path or 'the top'!r} holds a malformed dict entry {json.dumps(item)[:200]}, "
        f"expected [key, value] with a str or int key; {_DAMAGED}"
    )


def _placeholders(node: JsonValue) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _placeholders(item)
    elif isinstance(node, dict):
        for key, item in node.items():
            if key in _LEAF_MARKERS and isinstance(item, str):
                yield item
            else:
                yield from _placeholders(item)


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(value: object) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _hint(value: object) -> str:
    if isinstance(value, (numpy.random.Generator, numpy.random.BitGenerator)):
        return "store rng.bit_generator.state (a dict) and restore it in load_state_dict"
    if isinstance(value, numpy.random.RandomState):
        return "store rng.get_state(legacy=False) (a dict) and restore it with rng.set_state in load_state_dict"
    if isinstance(value, random.Random):
        return "store rng.getstate() (a tuple) and restore it with rng.setstate in load_state_dict"
    if isinstance(value, torch.Generator):
        return "store generator.get_state() (a tensor) and restore it with generator.set_state in load_state_dict"
    if callable(getattr(value, "state_dict", None)):
        return "store its state_dict() and restore it with its load_state_dict"
    if isinstance(value, numpy.ndarray):
        return "convert it with numpy.asarray(value), so it comes back as the same type"
    for plain in (bool, int, float, str, dict, list, tuple):
        if isinstance(value, plain):
            return f"convert it to a plain {plain.__name__}, so it comes back as the same type"
    return "use a tensor, numpy array or JSON value instead (a set as a sorted list, bytes as a uint8 array)"
