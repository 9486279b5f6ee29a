"""ComputeBudget: Prefect's standard block suite, its rates per GPU class, and a save/load round trip."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from blocks.compute_budget import ComputeBudget
from tasks.errors import InvalidParameterError


def test_each_gpu_class_has_its_rate() -> None:
    """The work-queue classes map to the documented defaults; 'any' takes the A100 rate."""
    budget = ComputeBudget()
    rates = {gpu_class: budget.units_per_hour(gpu_class) for gpu_class in ("t4", "l4", "a100", "any", "cpu")}
    assert rates == {"t4": 1.96, "l4": 4.82, "a100": 11.77, "any": 11.77, "cpu": 0.08}
    assert budget.quota_units is None


def test_an_unknown_class_names_the_expected_ones() -> None:
    """A class with no rate fails with the classes that have one."""
    with pytest.raises(InvalidParameterError, match=r"^GPU class 'h200' has no compute-unit rate; expected one of t4, l4, a100, any, cpu$"):
        ComputeBudget().units_per_hour("h200")


@pytest.mark.parametrize("fields", [{"t4_units_per_hour": -1.0}, {"quota_units": 0}])
def test_negative_rates_and_empty_quotas_are_refused(fields: dict[str, float]) -> None:
    """Rates cannot be negative and a quota, when set, must be positive."""
    with pytest.raises(ValidationError):
        ComputeBudget(**fields)


def test_a_saved_budget_loads_back(prefect_api: str) -> None:
    """Saved to a real Prefect server, the block loads with the edited rate and quota."""
    ComputeBudget(l4_units_per_hour=5.0, quota_units=100.0).save("colab-pro-test", overwrite=True)
    loaded = ComputeBudget.load("colab-pro-test")
    assert (loaded.units_per_hour("l4"), loaded.quota_units) == (5.0, 100.0)
