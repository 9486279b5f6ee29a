"""`ComputeBudget`: Colab compute units per hour for each GPU class, and an optional quota."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl

from tasks.errors import InvalidParameterError


class ComputeBudget(Block):
    """What each GPU class costs in Colab compute units per hour, and how many units a job may spend.

    The default rates are approximate, read from public reports of Colab Pro usage (docs/gpu.md):
    Colab does not publish them and changes them, so edit them to what your account shows.

    Example:
        ```python
        from blocks.compute_budget import ComputeBudget

        budget = ComputeBudget.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "Colabflow Compute Budget"
    _logo_url = HttpUrl("https://colab.research.google.com/img/colab_favicon_256px.png")
    _documentation_url = HttpUrl("https://github.com/colabflow/colabflow/blob/main/docs/gpu.md")

    t4_units_per_hour: float = Field(default=1.96, ge=0, description="Compute units per hour on a T4 (approximate).")
    l4_units_per_hour: float = Field(default=4.82, ge=0, description="Compute units per hour on an L4 (approximate).")
    a100_units_per_hour: float = Field(default=11.77, ge=0, description="Compute units per hour on an A100 (approximate).")
    other_gpu_units_per_hour: float = Field(
        default=11.77, ge=0,
        description="Compute units per hour on any other GPU (H100, G4, a lab GPU); the A100 rate unless you know better.",
    )
    cpu_units_per_hour: float = Field(default=0.08, ge=0, description="Compute units per hour on a CPU runtime (approximate).")
    quota_units: float | None = Field(
        default=None, gt=0, description="Units jobs at a destination may spend in all; empty for no limit.",
    )

    def units_per_hour(self, gpu_class: str) -> float:
        """The rate for a work-queue class: a100, l4, t4, any (another GPU) or cpu."""
        rates = {
            "t4": self.t4_units_per_hour, "l4": self.l4_units_per_hour, "a100": self.a100_units_per_hour,
            "any": self.other_gpu_units_per_hour, "cpu": self.cpu_units_per_hour,
        }
        if gpu_class not in rates:
            raise InvalidParameterError(
                f"GPU class {gpu_class!r} has no compute-unit rate; expected one of {', '.join(rates)}"
            )
        return rates[gpu_class]
