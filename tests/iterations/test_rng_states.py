"""Seeding, snapshots and restores of the global generators around an iterative program."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch

from tasks.errors import CorruptOutputError
from tasks.iterations.rng_states import (
    capture_generators,
    restore_generators,
    seed_generators,
)
from tasks.iterations.state_format import (
    decode_state,
    deserialize_state,
    encode_state,
    serialize_state,
)
from tests.machines import gpu_hidden, needs_cuda


def draw() -> tuple[list[float], list[float], list[float]]:
    """A few draws from each global generator, including numpy's cached Gaussian."""
    python = [random.random(), random.gauss(0, 1)]
    numbers = [float(numpy.random.rand()), float(numpy.random.standard_normal())]
    return python, numbers, torch.rand(3).tolist()


def test_seed_makes_draws_reproducible() -> None:
    """Seeding twice with the same seed gives the same draws from every generator."""
    seed_generators(7)
    first = draw()
    seed_generators(7)
    assert draw() == first


@pytest.mark.parametrize("seed", [-1, 2**40, 2**70])
def test_seeds_outside_numpy_and_torch_ranges_are_reduced(seed: int) -> None:
    """Negative and huge seeds work and differ from seed 0."""
    seed_generators(seed)
    drawn = draw()
    seed_generators(0)
    assert draw() != drawn


def test_restore_repeats_the_draws_after_capture() -> None:
    """Draws after restoring a snapshot equal the draws made right after taking it."""
    seed_generators(3)
    draw()
    snapshot = capture_generators()
    expected = draw()
    draw()
    assert restore_generators(snapshot) == []
    assert draw() == expected


def test_snapshot_survives_the_checkpoint_format() -> None:
    """A snapshot written and read back through the state format restores the same draws."""
    seed_generators(11)
    random.gauss(0, 1)  # leaves a cached Gaussian in Python's generator state
    numpy.random.standard_normal()  # and one in numpy's
    encoded = encode_state(capture_generators())
    expected = draw()
    restored = decode_state(deserialize_state(*serialize_state(encoded)))
    assert restore_generators(restored) == []
    assert draw() == expected


def test_snapshot_holds_numpy_key_as_uint32_array() -> None:
    """numpy's state carries its MT19937 key as a uint32 array of 624 words."""
    state: Any = capture_generators()["numpy"]
    assert state["bit_generator"] == "MT19937"
    assert state["state"]["key"].dtype == numpy.uint32 and state["state"]["key"].shape == (624,)


def test_snapshot_without_cuda_has_no_cuda_states(tmp_path: Path) -> None:
    """Where torch sees no CUDA (hidden on a GPU host) the snapshot leaves "torch_cuda" out."""
    with gpu_hidden(tmp_path):
        assert "torch_cuda" not in capture_generators()


def test_cuda_states_on_a_machine_without_cuda_give_a_warning(tmp_path: Path) -> None:
    """CUDA states restored where torch sees no CUDA (hidden on a GPU host) are reported, not raised."""
    with gpu_hidden(tmp_path):
        seed_generators(5)
        snapshot = capture_generators()
        snapshot["torch_cuda"] = [torch.zeros(16, dtype=torch.uint8)]
        expected = draw()
        warnings = restore_generators(snapshot)
    assert warnings == [("the checkpoint holds CUDA generator states for 1 GPU(s) but this machine has no CUDA; they "
                         "were not restored, so GPU random draws will differ from an uninterrupted run")]
    assert draw() == expected


@pytest.mark.gpu
@needs_cuda
def test_cuda_draws_repeat_after_a_restore_through_the_checkpoint_format() -> None:
    """On a real GPU: the snapshot holds one state per GPU, and after it is written, read back and
    restored, draws on the GPU repeat."""
    seed_generators(13)
    torch.rand(3, device="cuda")
    snapshot = capture_generators()
    assert len(snapshot["torch_cuda"]) == torch.cuda.device_count()  # type: ignore[arg-type]
    restored = decode_state(deserialize_state(*serialize_state(encode_state(snapshot))))
    expected = torch.rand(5, device="cuda")
    torch.rand(5, device="cuda")
    assert restore_generators(restored) == []
    assert torch.equal(torch.rand(5, device="cuda"), expected)


@pytest.mark.gpu
@needs_cuda
def test_cuda_states_for_more_gpus_than_present_restore_those_present_with_a_warning() -> None:
    """On a real GPU: a checkpoint from a machine with one more GPU restores the GPUs here and names the rest."""
    seed_generators(17)
    snapshot = capture_generators()
    states: list[torch.Tensor] = list(snapshot["torch_cuda"])  # type: ignore[call-overload]
    present = len(states)
    snapshot["torch_cuda"] = [*states, states[0]]
    expected = torch.rand(5, device="cuda")
    assert restore_generators(snapshot) == [
        (f"the checkpoint holds CUDA generator states for {present + 1} GPU(s) but this machine has {present}; "
         f"restored the first {present}, so random draws on the others differ from an uninterrupted run")
    ]
    assert torch.equal(torch.rand(5, device="cuda"), expected)


def test_unknown_generator_states_give_a_warning() -> None:
    """A state colabflow does not know is skipped with a warning naming it."""
    snapshot = capture_generators()
    snapshot["jax"] = [1, 2]
    assert restore_generators(snapshot) == [
        "the checkpoint holds states of generators colabflow does not know, ['jax']; they were skipped"
    ]


def test_missing_host_state_is_corrupt() -> None:
    """A snapshot without numpy's state raises CorruptOutputError naming what is missing."""
    snapshot = capture_generators()
    del snapshot["numpy"]
    with pytest.raises(CorruptOutputError, match=r"generator states lack \['numpy'\]"):
        restore_generators(snapshot)


@pytest.mark.parametrize(("name", "value"), [("python", (3, "not ints", None)), ("python", [1]),
                                             ("numpy", {"bit_generator": "MT19937"}), ("numpy", "text"),
                                             ("torch_cpu", torch.zeros(3)), ("torch_cpu", [0])])
def test_malformed_host_state_is_corrupt(name: str, value: object) -> None:
    """A host generator state of the wrong shape raises CorruptOutputError naming the generator."""
    snapshot = capture_generators()
    snapshot[name] = value
    with pytest.raises(CorruptOutputError, match=rf"the checkpoint's '{name}' generator state cannot be restored"):
        restore_generators(snapshot)


def test_malformed_cuda_states_are_corrupt() -> None:
    """CUDA states that are not a list of tensors raise CorruptOutputError."""
    snapshot = capture_generators()
    snapshot["torch_cuda"] = "nothing"
    with pytest.raises(CorruptOutputError, match=r"'torch_cuda' generator states are a str, expected a list"):
        restore_generators(snapshot)


def test_generator_states_from_the_hints_round_trip() -> None:
    """Generators a program owns restore exactly from the states state_format's hints suggest storing."""
    rng, python_rng, torch_rng = numpy.random.default_rng(5), random.Random(5), torch.Generator().manual_seed(5)
    encoded = encode_state({"numpy": rng.bit_generator.state, "python": python_rng.getstate(),
                            "torch": torch_rng.get_state()})
    restored: Any = decode_state(deserialize_state(*serialize_state(encoded)))
    expected = (rng.random(3), python_rng.random(), torch.rand(3, generator=torch_rng))
    rng.bit_generator.state = restored["numpy"]
    python_rng.setstate(restored["python"])
    torch_rng.set_state(restored["torch"])
    numpy.testing.assert_array_equal(rng.random(3), expected[0])
    assert python_rng.random() == expected[1] and torch.equal(torch.rand(3, generator=torch_rng), expected[2])
