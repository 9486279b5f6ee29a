"""The example iterative programs: exact resume, progress, bad params and a plain state."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch

from tasks.iterations.examples.hill_climb import HillClimb
from tasks.iterations.examples.train import Trainer
from tests.machines import gpu_hidden, needs_cuda

Program = Any
Build = Callable[[], Program]
SEED = 7


def seeded(build: Callable[[dict[str, str], int], Program], params: dict[str, str]) -> Build:
    """A builder that seeds the global generators first, as colabflow does."""

    def build_seeded() -> Program:
        random.seed(SEED)
        numpy.random.seed(SEED)
        torch.manual_seed(SEED)
        return build(params, SEED)

    return build_seeded


def run(program: Program, start: int, stop: int) -> list[dict[str, float]]:
    """Metrics of iterations start..stop-1."""
    return [program.step(iteration) for iteration in range(start, stop)]


def global_states() -> tuple[Any, Any, torch.Tensor, list[torch.Tensor]]:
    """The global generators' states, as colabflow snapshots them at a checkpoint: the GPUs' too, where CUDA is."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return random.getstate(), numpy.random.get_state(), torch.get_rng_state(), cuda


def restore_global_states(states: tuple[Any, Any, torch.Tensor, list[torch.Tensor]]) -> None:
    """Put the global generators back as `global_states` found them."""
    random.setstate(states[0])
    numpy.random.set_state(states[1])
    torch.set_rng_state(states[2])
    if states[3]:
        torch.cuda.set_rng_state_all(states[3])


def assert_identical(left: Any, right: Any, where: str = "state") -> None:
    """Bit-identical nested states: same keys, same tensors, arrays and JSON values."""
    assert type(left) is type(right), where
    if isinstance(left, dict):
        assert list(left) == list(right), where
        for key in left:
            assert_identical(left[key], right[key], f"{where}[{key!r}]")
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right), where
        for index, (first, second) in enumerate(zip(left, right)):
            assert_identical(first, second, f"{where}[{index}]")
    elif isinstance(left, torch.Tensor):
        assert left.dtype == right.dtype and torch.equal(left, right), where
    elif isinstance(left, numpy.ndarray):
        assert left.dtype == right.dtype and numpy.array_equal(left, right), where
    else:
        assert left == right, where


def leaves(state: Any) -> Iterator[Any]:
    """Every value in a nested state that is not a dict, list or tuple."""
    if isinstance(state, dict):
        for key, value in state.items():
            yield key
            yield from leaves(value)
    elif isinstance(state, (list, tuple)):
        for value in state:
            yield from leaves(value)
    else:
        yield state


def check_exact_resume(build: Build, total: int, stop_at: int) -> None:
    """Run `total` steps straight, and again stopped at `stop_at` and resumed in a fresh instance."""
    straight = build()
    straight_metrics = run(straight, 0, total)
    expected = copy.deepcopy(straight.state_dict())
    interrupted = build()
    run(interrupted, 0, stop_at)
    saved = copy.deepcopy(interrupted.state_dict())
    saved_globals = global_states()
    del interrupted
    resumed = build()
    resumed.load_state_dict(saved)
    restore_global_states(saved_globals)
    assert run(resumed, stop_at, total) == straight_metrics[stop_at:]
    assert_identical(copy.deepcopy(resumed.state_dict()), expected)


@pytest.fixture
def deterministic() -> Iterator[None]:
    """Deterministic torch kernels for the test, then the previous setting back."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def test_hill_climb_resumes_exactly() -> None:
    """A hill climb stopped and resumed ends bit for bit where an uninterrupted one ends."""
    check_exact_resume(seeded(HillClimb, {"size": "24"}), total=300, stop_at=137)


@pytest.mark.usefixtures("deterministic")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("accumulate_steps", ["1", "3"])
def test_train_resumes_exactly(precision: str, accumulate_steps: str) -> None:
    """A training stopped mid-epoch and resumed ends bit for bit where an uninterrupted one ends."""
    params = {"device": "cpu", "precision": precision, "accumulate_steps": accumulate_steps,
              "samples": "400", "batch_size": "16", "eval_every": "4"}
    check_exact_resume(seeded(Trainer, params), total=30, stop_at=13)


def test_hill_climb_improves() -> None:
    """After 2,000 steps the best cost is below the starting cost."""
    program = seeded(HillClimb, {})()
    start = program.cost
    metrics = run(program, 0, 2000)
    assert metrics[-1]["best_cost"] < start


def test_hill_climb_cost_matches_its_assignment() -> None:
    """The cost kept by swap deltas is the full cost of the current assignment."""
    program = seeded(HillClimb, {"size": "32"})()
    run(program, 0, 500)
    assert program.cost == pytest.approx(program.cost_of(program.assignment), rel=1e-9)


def test_train_learns() -> None:
    """The validation loss falls below its first value."""
    program = seeded(Trainer, {"device": "cpu", "samples": "1000", "eval_every": "5"})()
    losses = [metrics["val_loss"] for metrics in run(program, 0, 100) if "val_loss" in metrics]
    assert len(losses) == 20
    assert losses[-1] < losses[0]


def test_train_reports_val_loss_only_on_eval_iterations() -> None:
    """val_loss appears every eval_every iterations and nowhere else."""
    program = seeded(Trainer, {"device": "cpu", "samples": "200", "eval_every": "3"})()
    reported = [iteration for iteration, metrics in enumerate(run(program, 0, 9)) if "val_loss" in metrics]
    assert reported == [2, 5, 8]


@pytest.mark.parametrize(
    ("build", "params", "message"),
    [
        (HillClimb, {"size": "x"}, r"param 'size' must be an integer from 2 to 2048; got 'x'"),
        (HillClimb, {"size": "1"}, r"param 'size' must be an integer from 2 to 2048; got '1'"),
        (HillClimb, {"cooling": "1.5"}, r"param 'cooling' must be a number in \(0, 1\]; got '1.5'"),
        (HillClimb, {"temperature": "nan"}, r"param 'temperature' must be a number in \(0, inf\]; got 'nan'"),
        (HillClimb, {"temprature": "3"}, r"HillClimb has no param 'temprature'; expected some of cooling"),
        (Trainer, {"precision": "fp8"}, r"param 'precision' must be one of fp32, fp16, bf16; got 'fp8'"),
        (Trainer, {"accumulate_steps": "0"}, r"param 'accumulate_steps' must be an integer from 1 to 1024; got '0'"),
        (Trainer, {"lr": "-1"}, r"param 'lr' must be a number in \(0, 10\]; got '-1'"),
        (Trainer, {"dropout": "1"}, r"param 'dropout' must be a number in \[0, 0.99\]; got '1'"),
        (Trainer, {"device": "tpu"}, r"param 'device' must be one of auto, cpu, cuda; got 'tpu'"),
        (Trainer, {"samples": "100", "batch_size": "90"}, r"param 'batch_size' must be an integer from 1 to 80"),
    ],
)
def test_bad_params_are_refused(build: Callable[[dict[str, str], int], Program], params: dict[str, str],
                                message: str) -> None:
    """A bad param raises a ValueError that names it, what was expected and what arrived."""
    with pytest.raises(ValueError, match=message):
        build(params, SEED)


def test_train_refuses_cuda_without_a_gpu(tmp_path: Path) -> None:
    """device=cuda where torch sees no CUDA (hidden on a GPU host) says so instead of failing later; auto takes the CPU."""
    with gpu_hidden(tmp_path):
        with pytest.raises(ValueError, match="param 'device' is 'cuda' but torch sees no CUDA GPU"):
            Trainer({"device": "cuda"}, SEED)
        assert Trainer({"samples": "100"}, SEED).device == torch.device("cpu")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.usefixtures("deterministic")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_train_on_cuda_resumes_exactly(precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real GPU, with deterministic kernels: auto takes CUDA, and a training stopped mid-epoch and
    resumed ends bit for bit where an uninterrupted one ends (fp16 with its GradScaler)."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name(0)} has no bf16")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    params = {"precision": precision, "accumulate_steps": "2", "samples": "400", "batch_size": "16", "eval_every": "4"}
    assert seeded(Trainer, params)().device.type == "cuda"
    check_exact_resume(seeded(Trainer, params), total=30, stop_at=13)


def test_hill_climb_refuses_a_state_of_another_size() -> None:
    """Resuming with another size is refused rather than mixing two problems."""
    state = seeded(HillClimb, {"size": "16"})().state_dict()
    with pytest.raises(ValueError, match=r"saved assignment has shape \(16,\), expected \(24,\)"):
        seeded(HillClimb, {"size": "24"})().load_state_dict(state)


@pytest.mark.parametrize(
    ("build", "params"),
    [(HillClimb, {}), (Trainer, {"device": "cpu", "precision": "fp16", "samples": "200"})],
)
def test_state_holds_only_tensors_arrays_and_json(build: Callable[[dict[str, str], int], Program],
                                                  params: dict[str, str]) -> None:
    """No generator objects or other Python objects reach the state colabflow saves."""
    program = seeded(build, params)()
    run(program, 0, 3)
    plain = (torch.Tensor, numpy.ndarray, str, int, float, bool, type(None))
    odd = [type(value).__name__ for value in leaves(program.state_dict()) if not isinstance(value, plain)]
    assert odd == []
