from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deployments.bootstrap import WorkerPlan, code_root, queues_for, worker_command, worker_environment
from deployments.durations import parse_duration
from tasks.hosts import LocalHost, gpu_class_of


@pytest.mark.parametrize(
    ("name", "gpu_class"),
    [("Tesla T4", "t4"), ("NVIDIA L4", "l4"), ("NVIDIA A100-SXM4-40GB", "a100"), ("NVIDIA H100 80GB HBM3", "any")],
)
def test_gpu_names_map_to_queues(name: str, gpu_class: str) -> None:
    """Colab's GPU names map to their queue; an unknown GPU serves `any`."""
    assert gpu_class_of(name) == gpu_class


def test_this_machine_without_a_gpu_is_cpu() -> None:
    """No CUDA and no nvidia-smi here: the host's class is cpu."""
    assert LocalHost().gpu_class() == "cpu"


@pytest.mark.parametrize(
    ("gpu_class", "override", "queues"),
    [("t4", None, ("t4", "any")), ("cpu", None, ("cpu", "any")), ("any", None, ("any",)),
     ("t4", ["l4", "l4", "cpu"], ("l4", "cpu"))],
)
def test_queues_are_the_class_plus_any_unless_overridden(gpu_class: str, override: list[str] | None, queues: tuple[str, ...]) -> None:
    """A worker serves its class and `any`; --queue replaces that, without duplicates."""
    assert queues_for(gpu_class, override) == queues


def test_the_worker_command_names_pool_queues_and_limit() -> None:
    """The command is `prefect worker start` for a process pool with every queue."""
    plan = WorkerPlan(pool="colab-gpu", queues=("t4", "any"), name="w", limit=1, time_budget_seconds=None,
                      drain_margin_seconds=0, idle_release_seconds=None)
    command = worker_command(plan)
    assert command[:5] == [sys.executable, "-m", "prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] == "colab-gpu"
    assert [command[i + 1] for i, part in enumerate(command) if part == "--work-queue"] == ["t4", "any"]


def test_the_worker_environment_points_at_this_code_and_python() -> None:
    """Flow runs find flows/ under COLABFLOW_ROOT and run this Python's `prefect`."""
    environment = worker_environment()
    assert (code_root() / "flows" / "compress_chunks.py").is_file()
    assert environment["COLABFLOW_ROOT"] == str(code_root())
    assert environment["PATH"].split(":")[0] == str(Path(sys.executable).parent)


@pytest.mark.parametrize(("text", "unit", "seconds"), [("90s", "s", 90), ("15m", "s", 900), ("24h", "s", 86400),
                                                        ("30", "m", 1800), ("2.5", "s", 2.5)])
def test_durations_take_units_or_a_default(text: str, unit: str, seconds: float) -> None:
    """Durations accept s, m, h, or a bare number in the option's unit."""
    assert parse_duration(text, unit) == seconds


def test_a_bad_duration_says_what_is_expected() -> None:
    """A duration that is not a number with a unit is refused with examples."""
    with pytest.raises(ValueError, match="e.g. 90s, 15m, 24h"):
        parse_duration("a day")
