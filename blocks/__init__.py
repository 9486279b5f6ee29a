"""Prefect blocks of colabflow: settings and credentials only, never workflow logic.

Local jobs need none. Register them all with `prefect block register -m blocks`.
"""

from blocks.checkpoints import CheckpointStorage
from blocks.compute_budget import ComputeBudget
from blocks.drive import DriveFolder

__all__ = ["CheckpointStorage", "ComputeBudget", "DriveFolder"]
