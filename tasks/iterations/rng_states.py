"""The global random generators colabflow seeds and snapshots around an iterative program.

A resumed run must draw the same random numbers as an uninterrupted one, so each checkpoint
also holds the generators a program may use without owning them: Python's `random`, numpy's
legacy global generator (`numpy.random.rand` and friends), torch's CPU generator and, where
there is CUDA, one torch generator per GPU. A snapshot is a state tree that
`tasks.iterations.state_format.encode_state` stores without pickle. Generators a program makes
itself (`numpy.random.default_rng()`, `torch.Generator()`) belong in its own state_dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy
import torch

from tasks.errors import CorruptOutputError
from tasks.iterations.python_random import python_generator

_HOST_GENERATORS = ("python", "numpy", "torch_cpu")
_CUDA = "torch_cuda"


def seed_generators(seed: int) -> None:
    """Seed every global generator from one job seed, so a fresh run is reproducible.

    numpy takes seeds below 2**32 and torch below 2**64, so theirs are reduced modulo those.
    `torch.manual_seed` seeds the CUDA generators too.
    """
    python_generator().seed(seed)
    numpy.random.seed(seed % 2**32)
    torch.manual_seed(seed % 2**64)


def capture_generators() -> dict[str, object]:
    """Snapshot every global generator; "torch_cuda" is left out on a machine without CUDA."""
    states: dict[str, object] = {
        "python": python_generator().getstate(),
        # {"bit_generator": "MT19937", "state": {"key": uint32 array, "pos": int}, "has_gauss", "gauss"}
        "numpy": numpy.random.get_state(legacy=False),
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states[_CUDA] = torch.cuda.get_rng_state_all()
    return states


def restore_generators(states: Mapping[str, object]) -> list[str]:
    """Put every global generator back where a snapshot left it.

    A checkpoint may move to another machine: CUDA states that this machine cannot take are
    skipped (the draws of those GPUs then differ from an uninterrupted run) and reported.

    Returns:
        Warnings for a person to read, one for each state that was not restored.

    Raises:
        CorruptOutputError: a host generator's state is missing or malformed.
    """
    missing = [name for name in _HOST_GENERATORS if name not in states]
    if missing:
        raise CorruptOutputError(
            f"the checkpoint's generator states lack {missing} (it holds {sorted(states)}); expected "
            f"{list(_HOST_GENERATORS)}: the checkpoint is damaged, resume from an earlier one"
        )
    for name in _HOST_GENERATORS:
        _restore_host(name, states[name])
    warnings = _restore_cuda(states[_CUDA]) if _CUDA in states else []
    unknown = sorted(set(states) - {*_HOST_GENERATORS, _CUDA})
    if unknown:
        warnings.append(f"the checkpoint holds states of generators colabflow does not know, {unknown}; they were skipped")
    return warnings


def _restore_host(name: str, state: object) -> None:
    try:
        if name == "python":
            python_generator().setstate(_python_state(state))
        elif name == "numpy" and isinstance(state, dict):
            numpy.random.set_state(state)
        elif name == "torch_cpu" and isinstance(state, torch.Tensor):
            torch.set_rng_state(state)
        else:
            raise TypeError(f"a {type(state).__name__} is not a {name} generator state")
    except (TypeError, ValueError, KeyError, RuntimeError) as error:
        raise CorruptOutputError(
            f"the checkpoint's {name!r} generator state cannot be restored ({error}); the checkpoint is damaged "
            "or comes from an incompatible version: resume from an earlier one"
        ) from error


def _python_state(state: object) -> tuple[Any, ...]:
    """`random.setstate` wants (version, tuple of ints, gauss); a JSON round trip may bring lists."""
    if isinstance(state, (tuple, list)) and len(state) == 3 and isinstance(state[1], (tuple, list)):
        return (state[0], tuple(state[1]), state[2])
    raise TypeError(f"expected (version, internal state, gauss), got a {type(state).__name__}")


def _restore_cuda(saved: object) -> list[str]:
    if not isinstance(saved, (list, tuple)) or not all(isinstance(state, torch.Tensor) for state in saved):
        raise CorruptOutputError(
            f"the checkpoint's {_CUDA!r} generator states are a {type(saved).__name__}, expected a list of "
            "tensors, one per GPU: the checkpoint is damaged, resume from an earlier one"
        )
    if not torch.cuda.is_available():
        return [
            f"the checkpoint holds CUDA generator states for {len(saved)} GPU(s) but this machine has no CUDA; "
            "they were not restored, so GPU random draws will differ from an uninterrupted run"
        ]
    present = torch.cuda.device_count()
    if present == len(saved):
        torch.cuda.set_rng_state_all(saved)
        return []
    for index, state in enumerate(saved[:present]):
        torch.cuda.set_rng_state(state, index)
    return [
        f"the checkpoint holds CUDA generator states for {len(saved)} GPU(s) but this machine has {present}; "
        f"restored the first {min(present, len(saved))}, so random draws on the others differ from an uninterrupted run"
    ]
