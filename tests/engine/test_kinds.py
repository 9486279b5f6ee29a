"""The JobKind registry and how batches are spread over task runs."""

from __future__ import annotations

import pytest

from tasks.compression.kind import JOB_KIND, CompressionKind
from tasks.engine.batches import task_units
from tasks.engine.kinds import BatchKind, ReportsProgress, batch_kind, job_kind, registered_kinds
from tasks.errors import InvalidParameterError


def test_a_kind_is_found_by_the_package_that_holds_its_kind_module() -> None:
    """`compression` is registered because tasks/compression/kind.py defines JOB_KIND."""
    assert "compression" in registered_kinds()
    assert job_kind("compression") is JOB_KIND and isinstance(JOB_KIND, CompressionKind)


def test_every_kind_but_iterations_runs_batches_and_only_iterations_reports_its_own_progress() -> None:
    """The batch stages take batch kinds alone: an iterative job has no batches, and says so if asked."""
    assert {name for name in registered_kinds() if not isinstance(job_kind(name), BatchKind)} == {"iterations"}
    assert {name for name in registered_kinds() if isinstance(job_kind(name), ReportsProgress)} == {"iterations"}
    with pytest.raises(InvalidParameterError, match="job kind 'iterations' does not run batches of items"):
        batch_kind("iterations")


@pytest.mark.parametrize("name", ["no-such-kind", "engine", "../compression"])
def test_an_unknown_kind_names_the_known_ones_and_how_to_add_one(name: str) -> None:
    """A name that is no kind package is refused, listing the kinds and the layout a kind needs."""
    with pytest.raises(InvalidParameterError, match=r"is not known here \(known: .*compression.*tasks/NAME/"):
        job_kind(name)


@pytest.mark.parametrize(
    ("batches", "most", "sizes"),
    [(3, 64, [1, 1, 1]), (2682, 64, [42] * 63 + [36]), (10, 3, [4, 4, 2]), (0, 64, [])],
)
def test_batches_are_spread_over_at_most_the_given_task_runs(batches: int, most: int, sizes: list[int]) -> None:
    """2,682 batches make 64 task runs, not 2,682; consecutive batches, none left out."""
    units = task_units(batches, most)
    assert [len(unit) for unit in units] == sizes
    assert [index for unit in units for index in unit] == list(range(batches))
