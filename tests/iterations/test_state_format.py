"""The checkpoint format of an iterative program's state: round trips, digests and refusals."""

from __future__ import annotations

import math
import random
import re
from collections import OrderedDict, defaultdict
from typing import Any

import numpy
import pytest
import torch

from tasks.errors import CorruptOutputError, InvalidProgramError
from tasks.iterations.state_digest import state_digest
from tasks.iterations.state_format import (
    EncodedState,
    decode_state,
    deserialize_state,
    encode_state,
    serialize_state,
)
from tests.machines import needs_cuda


def round_trip(state: dict[str, Any]) -> dict[str, object]:
    """Encode, write to bytes, read back and decode, as a checkpoint and a resume would."""
    return decode_state(deserialize_state(*serialize_state(encode_state(state))))


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, count: int) -> None:
    """Run `count` Adam steps on fixed data."""
    inputs = torch.linspace(-1, 1, 24).reshape(6, 4)
    for _ in range(count):
        optimizer.zero_grad()
        model(inputs).square().mean().backward()
        optimizer.step()


def make_model(seed: int) -> torch.nn.Module:
    """A small model whose weights depend on the seed."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def test_model_and_adam_resume_bit_identically() -> None:
    """A restored model and Adam optimizer take the same next step as the originals, bit for bit."""
    model = make_model(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99))
    train_steps(model, optimizer, 3)
    state = round_trip({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    fresh = make_model(1)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=0.5)
    fresh.load_state_dict(state["model"])  # type: ignore[arg-type]
    fresh_optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
    train_steps(model, optimizer, 2)
    train_steps(fresh, fresh_optimizer, 2)
    for original, restored in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(original, restored)


def test_optimizer_state_keeps_int_keys_and_tuples() -> None:
    """An optimizer's int-keyed "state" and its tuple betas come back as int keys and tuples."""
    model = make_model(0)
    optimizer = torch.optim.Adam(model.parameters())
    train_steps(model, optimizer, 1)
    restored: Any = round_trip({"optimizer": optimizer.state_dict()})["optimizer"]
    assert list(restored["state"]) == [0, 1, 2, 3]
    assert restored["param_groups"][0]["betas"] == (0.9, 0.999)
    assert isinstance(restored["param_groups"][0]["betas"], tuple)


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int16", "int32", "int64", "uint16", "uint64", "float16",
                                   "float32", "float64", "complex64"])
def test_numpy_arrays_keep_dtype_and_values(dtype: str) -> None:
    """A numpy array comes back as a writable array of the same dtype, shape and values."""
    array = numpy.arange(12).reshape(3, 4).astype(dtype)
    restored = round_trip({"array": array})["array"]
    assert isinstance(restored, numpy.ndarray)
    assert restored.dtype == array.dtype and restored.flags.writeable
    numpy.testing.assert_array_equal(restored, array)


def test_numpy_arrays_of_odd_shapes_and_strides_round_trip() -> None:
    """0-d, empty, Fortran-ordered and reversed arrays come back with equal values."""
    arrays = [numpy.float32(2.5) * numpy.ones(()), numpy.zeros((0, 3)), numpy.asfortranarray(numpy.eye(3)),
              numpy.arange(5)[::-1]]
    restored: Any = round_trip({"arrays": arrays})["arrays"]
    for original, back in zip(arrays, restored):
        assert back.shape == original.shape and back.dtype == original.dtype
        numpy.testing.assert_array_equal(back, original)


@pytest.mark.parametrize("scalar", [numpy.float64(1.25), numpy.float32(-0.5), numpy.int64(-3), numpy.uint8(200),
                                    numpy.bool_(True), numpy.float16(numpy.inf)])
def test_numpy_scalars_keep_their_type(scalar: numpy.generic) -> None:
    """A numpy scalar comes back as the same numpy scalar type and value."""
    restored = round_trip({"scalar": scalar})["scalar"]
    assert type(restored) is type(scalar)
    assert restored == scalar


@pytest.mark.parametrize("shape", [(3, 5), (), (0, 4)])
def test_bfloat16_tensors_round_trip(shape: tuple[int, ...]) -> None:
    """bf16 tensors, 0-d and empty ones included, come back equal and digest without error."""
    tensor = torch.randn(shape).to(torch.bfloat16)
    encoded = encode_state({"weights": tensor})
    restored = decode_state(deserialize_state(*serialize_state(encoded)))["weights"]
    assert isinstance(restored, torch.Tensor) and restored.dtype == torch.bfloat16
    assert torch.equal(restored, tensor)
    assert len(state_digest(encoded)) == 64


@pytest.mark.gpu
@needs_cuda
def test_cuda_tensors_are_copied_to_the_host_at_encode_and_come_back_equal() -> None:
    """On a real GPU: fp32, bf16 and transposed CUDA tensors come back as equal CPU tensors, copied when
    encoded, so a step after the checkpoint does not change it."""
    weights = torch.randn(64, 32, device="cuda")
    state = {"fp32": weights, "bf16": weights.to(torch.bfloat16), "t": weights.t()}
    expected = {name: tensor.cpu() for name, tensor in state.items()}
    encoded = encode_state(state)
    weights.add_(1.0)
    restored: Any = decode_state(deserialize_state(*serialize_state(encoded)))
    for name, tensor in expected.items():
        assert restored[name].device.type == "cpu" and restored[name].dtype == tensor.dtype
        assert torch.equal(restored[name], tensor), name


def test_non_contiguous_and_parameter_tensors_come_back_plain() -> None:
    """A transposed tensor and a Parameter come back as plain, equal, contiguous tensors."""
    weight = torch.nn.Parameter(torch.randn(3, 4))
    restored: Any = round_trip({"t": weight.detach().t(), "p": weight})
    assert restored["t"].is_contiguous() and torch.equal(restored["t"], weight.detach().t())
    assert type(restored["p"]) is torch.Tensor and not restored["p"].requires_grad


def test_nested_lists_and_tuples_keep_their_types() -> None:
    """Lists stay lists and tuples stay tuples at every depth, empty ones included."""
    state = {"tree": [1, (2, [3, (4,)]), (), [], {"inner": ("a", None)}]}
    assert round_trip(state) == state
    assert repr(round_trip(state)) == repr(state)


def test_int_keys_come_back_as_ints() -> None:
    """Dicts with int keys, mixed with str keys, come back with the same keys in the same order."""
    state = {"table": {3: "three", 1: {0: [0.5]}, "name": "x"}}
    restored: Any = round_trip(state)
    assert restored == state and list(restored["table"]) == [3, 1, "name"]


def test_keys_like_placeholders_stay_data() -> None:
    """User keys that start with "__", even ones named like placeholders, come back as data."""
    state = {"__tensor__": "t0", "meta": {"__tuple__": [1, 2], "__items__": 3}, "x": {"__ndarray__": "t9"}}
    assert round_trip(state) == state


def test_json_scalars_keep_their_type_and_value() -> None:
    """None, bools, big ints, -0.0, unicode and lone surrogates come back exactly."""
    state = {"values": [None, True, False, 0, 1, 2**100, -0.0, 1.0, "héllo", "\udc80"]}
    restored: Any = round_trip(state)
    assert repr(restored) == repr(state)


def test_nan_and_infinity_round_trip() -> None:
    """nan, inf and -inf floats survive JSON."""
    restored: Any = round_trip({"values": [math.nan, math.inf, -math.inf]})
    assert math.isnan(restored["values"][0]) and restored["values"][1:] == [math.inf, -math.inf]


def test_model_state_dict_keeps_key_order() -> None:
    """A model's OrderedDict state comes back as a dict with its keys in order."""
    model = make_model(0)
    restored: Any = round_trip({"model": model.state_dict()})
    assert list(restored["model"]) == list(model.state_dict())


def test_tensors_are_named_by_their_path() -> None:
    """Tensors are named by their key path, whatever their kind; a path met twice gets a prime."""
    encoded = encode_state({"b": torch.zeros(1), "a": [numpy.zeros(2), numpy.int32(1)], "c.d": torch.ones(1),
                            "c": {"d": torch.zeros(2)}})
    assert encoded.skeleton == {"b": {"__tensor__": "b"}, "a": [{"__ndarray__": "a[0]"}, {"__ndscalar__": "a[1]"}],
                                "c.d": {"__tensor__": "c.d"}, "c": {"d": {"__tensor__": "c.d'"}}}


def test_the_digest_ignores_the_order_of_dict_keys() -> None:
    """An optimizer's state reloaded lists its keys in another order; the digest and the tensor names agree."""
    first = {"state": {0: {"step": torch.ones(1), "exp_avg": torch.zeros(2)}, 1: {"step": torch.ones(1)}}}
    second = {"state": {1: {"step": torch.ones(1)}, 0: {"exp_avg": torch.zeros(2), "step": torch.ones(1)}}}
    assert state_digest(encode_state(first)) == state_digest(encode_state(second))


def test_digest_is_equal_for_equal_states() -> None:
    """Two encodings of equal states, and a state read back from bytes, share one digest."""
    first = encode_state({"w": torch.arange(6.0), "step": 3, "a": numpy.ones(2)})
    second = encode_state({"w": torch.arange(6.0), "step": 3, "a": numpy.ones(2)})
    assert state_digest(first) == state_digest(second)
    assert state_digest(deserialize_state(*serialize_state(first))) == state_digest(first)


def test_digest_changes_with_one_tensor_element() -> None:
    """Changing one element of one tensor changes the digest."""
    changed = torch.arange(6.0)
    changed[4] = 4.5
    assert state_digest(encode_state({"w": torch.arange(6.0)})) != state_digest(encode_state({"w": changed}))


def test_digest_changes_with_one_json_value() -> None:
    """Changing one JSON value, even 1 to 1.0 or to True, changes the digest."""
    digests = {state_digest(encode_state({"lr": value, "w": torch.ones(2)})) for value in (1, 1.0, True, 2)}
    assert len(digests) == 4


def test_digest_tells_dtype_and_shape_apart() -> None:
    """Tensors with equal bytes but another dtype or shape have another digest."""
    base = torch.zeros(4, dtype=torch.int32)
    variants = [base, base.view(torch.float32), base.reshape(2, 2), base.view(torch.uint8)[:16].reshape(4, 4)]
    assert len({state_digest(encode_state({"x": variant})) for variant in variants}) == 4


def test_encode_copies_tensors_and_arrays() -> None:
    """Mutating the live tensor or array after encoding changes neither the encoded copy nor its digest."""
    tensor, array = torch.zeros(3), numpy.zeros(3)
    encoded = encode_state({"t": tensor, "a": array})
    digest = state_digest(encoded)
    tensor += 1
    array += 1
    assert torch.equal(encoded.tensors["t"], torch.zeros(3))
    assert torch.equal(encoded.tensors["a"], torch.zeros(3, dtype=torch.float64))
    assert state_digest(encoded) == digest


def test_decode_gives_fresh_tensors() -> None:
    """Mutating what decode returned leaves the encoded state, and a second decode, unchanged."""
    encoded = encode_state({"t": torch.zeros(2), "a": numpy.zeros(2)})
    first: Any = decode_state(encoded)
    first["t"] += 1
    first["a"] += 1
    second: Any = decode_state(encoded)
    assert torch.equal(second["t"], torch.zeros(2)) and not second["a"].any()


REFUSED = [
    (numpy.random.default_rng(0), "numpy.random._generator.Generator", "store rng.bit_generator.state (a dict)"),
    (numpy.random.PCG64(0), "numpy.random._pcg64.PCG64", "store rng.bit_generator.state (a dict)"),
    (numpy.random.RandomState(0), "numpy.random.mtrand.RandomState", "store rng.get_state(legacy=False)"),
    (random.Random(0), "random.Random", "store rng.getstate()"),
    (torch.Generator(), "torch._C.Generator", "store generator.get_state() (a tensor) and restore it with"),
    (torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear", "store its state_dict()"),
    (torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), "torch.optim.sgd.SGD", "store its state_dict()"),
    (b"bytes", "bytes", "use a tensor, numpy array or JSON value"),
    ({1, 2}, "set", "use a tensor, numpy array or JSON value"),
    (lambda: None, "function", "use a tensor, numpy array or JSON value"),
    (defaultdict(list), "collections.defaultdict", "convert it to a plain dict"),
    (numpy.ma.masked_array([1.0]), "numpy.ma.MaskedArray", "convert it with numpy.asarray(value)"),
]


@pytest.mark.parametrize(("value", "type_name", "hint"), REFUSED, ids=[row[1] for row in REFUSED])
def test_refused_value_in_a_dict_names_path_type_and_hint(value: object, type_name: str, hint: str) -> None:
    """A value that needs pickle is refused with its dotted key path, its full type name and a hint."""
    state = {"optimizer": {"state": {0: {"exp_avg": value}}}}
    with pytest.raises(InvalidProgramError, match=rf"'optimizer\.state\.0\.exp_avg' is a {re.escape(type_name)};.*"
                                                  rf"{re.escape(hint)}"):
        encode_state(state)


def test_refused_value_in_a_list_names_its_index() -> None:
    """A refused value inside a list is named by its index."""
    with pytest.raises(InvalidProgramError, match=r"'history\[3\]' is a set;"):
        encode_state({"history": [1, 2, 3, {4}]})


@pytest.mark.parametrize("state", [[1, 2], {1: "one"}, "text"])
def test_top_level_must_be_a_dict_with_str_keys(state: Any) -> None:
    """A state_dict() result that is not a dict with str keys is refused, naming what arrived."""
    with pytest.raises(InvalidProgramError, match=r"state_dict\(\) returned a (list|dict with a key 1 of type int|str);"):
        encode_state(state)


def test_dict_keys_other_than_str_and_int_are_refused() -> None:
    """A dict key that is neither str nor int is refused, naming the path, key and type."""
    with pytest.raises(InvalidProgramError, match=r"'table' has a key \(1, 2\) of type tuple;"):
        encode_state({"table": {(1, 2): 3}})


@pytest.mark.parametrize(("value", "dtype"), [(numpy.array(["a"]), "<U1"), (numpy.array([None]), "object"),
                                              (numpy.zeros(2, ">f4"), ">f4"), (numpy.zeros(2, "complex128"), "complex128"),
                                              (numpy.str_("text"), "<U4")])
def test_numpy_values_of_unstorable_dtypes_are_refused(value: object, dtype: str) -> None:
    """Text, object, big-endian and complex128 numpy values are refused, naming the dtype."""
    with pytest.raises(InvalidProgramError, match=rf"'value' is a numpy (array|scalar) of dtype {re.escape(dtype)};"):
        encode_state({"value": value})


@pytest.mark.parametrize("tensor", [torch.zeros(2, dtype=torch.complex128), torch.zeros(2, 2).to_sparse(),
                                    torch.zeros(2, device="meta"), torch.zeros(2).to(torch.float8_e8m0fnu)])
def test_tensors_safetensors_cannot_store_are_refused(tensor: torch.Tensor) -> None:
    """Sparse, meta, complex128 and float8_e8m0fnu tensors are refused, naming dtype and layout."""
    with pytest.raises(InvalidProgramError, match=rf"'w' is a torch tensor of dtype {re.escape(str(tensor.dtype))}, "):
        encode_state({"w": tensor})


def test_cycles_are_refused() -> None:
    """A list that contains itself is refused rather than recursing forever."""
    looped: list[object] = [1]
    looped.append(looped)
    with pytest.raises(InvalidProgramError, match=r"'loop\[1\]' contains itself"):
        encode_state({"loop": looped})


def test_shared_values_are_stored_twice() -> None:
    """The same list or tensor twice in the tree is fine and comes back as two equal copies."""
    shared, tensor = [1, 2], torch.ones(2)
    restored: Any = round_trip({"a": shared, "b": shared, "c": tensor, "d": tensor})
    assert restored["a"] == restored["b"] == shared and torch.equal(restored["c"], restored["d"])


def valid_bytes() -> tuple[bytes, bytes]:
    """A small checkpoint's two halves."""
    return serialize_state(encode_state({"w": torch.arange(4.0), "step": 2}))


@pytest.mark.parametrize("skeleton", [b"{not json", b"\xff\xfe", b""])
def test_skeleton_that_is_not_json_is_corrupt(skeleton: bytes) -> None:
    """Skeleton bytes that do not parse raise CorruptOutputError naming the skeleton."""
    with pytest.raises(CorruptOutputError, match="state skeleton is not JSON"):
        deserialize_state(skeleton, valid_bytes()[1])


@pytest.mark.parametrize("cut", [b"", b"garbage", "truncated"])
def test_tensor_bytes_that_are_not_safetensors_are_corrupt(cut: bytes | str) -> None:
    """Garbage, empty or truncated safetensors bytes raise CorruptOutputError naming the tensors."""
    skeleton, tensors = valid_bytes()
    broken = tensors[:-3] if cut == "truncated" else cut
    with pytest.raises(CorruptOutputError, match="state tensors are not safetensors"):
        deserialize_state(skeleton, broken)  # type: ignore[arg-type]


def test_halves_of_different_checkpoints_are_corrupt() -> None:
    """A skeleton that names tensors the safetensors half lacks raises CorruptOutputError."""
    other = serialize_state(encode_state({"w": torch.zeros(1), "v": torch.zeros(1)}))[1]
    with pytest.raises(CorruptOutputError, match=r"names tensors \['w'\] but its safetensors file holds \['v', 'w'\]"):
        deserialize_state(valid_bytes()[0], other)


@pytest.mark.parametrize("skeleton", [{"x": {"__tensor__": "t0", "extra": 1}}, {"x": {"__items__": [[1.5, 2]]}},
                                      {"x": {"__ndscalar__": "t0"}}, {"x": {"__tuple__": 3}}])
def test_malformed_placeholders_are_corrupt(skeleton: Any) -> None:
    """A placeholder or dict entry of the wrong shape raises CorruptOutputError naming its path."""
    with pytest.raises(CorruptOutputError, match=r"state at 'x' holds a malformed"):
        decode_state(EncodedState(skeleton, {"t0": torch.zeros(3)}))


def test_ordered_dict_state_is_accepted() -> None:
    """A top-level OrderedDict, as some programs return, is accepted."""
    assert round_trip(OrderedDict(step=1)) == {"step": 1}
