"""The iterations kind as the engine's commands see it: `verify` and `status` of a job folder.

An iterative job is one state that evolves, not items in batches, so the kind keeps its own
checkpoints (tasks/iterations/checkpoints.py) and contributes no batch methods.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import JsonValue, ValidationError

from tasks.engine.job_folder import JobFolder
from tasks.engine.job_record import read_job_record
from tasks.engine.verify import JobCheck
from tasks.iterations.checkpoints import (
    DONE_NAME,
    LATEST_NAME,
    DoneMarker,
    checkpoint_key,
    checkpoint_name,
    read_pointer_bytes,
)
from tasks.iterations.verify import verify_iterations
from tasks.storage.stores import StorageAccess

KIND_NAME = "iterations"


class IterationsKind:
    """Verify and progress of an iterative job's folder."""

    name = KIND_NAME

    def verify(self, folder: JobFolder, access: StorageAccess) -> JobCheck:
        return verify_iterations(folder)

    def job_progress(self, folder: JobFolder, access: StorageAccess) -> dict[str, JsonValue]:
        """The iteration of the checkpoint in force, the iterations asked for, and the checkpoint's age."""
        record = read_job_record(folder)
        content = folder.read(LATEST_NAME)
        pointer = read_pointer_bytes(content) if content is not None else None
        progress: dict[str, JsonValue] = {
            "iteration": pointer.iteration if pointer else 0,
            "iterations_total": record.items_total if record else None,
            "last_checkpoint": pointer.checkpoint if pointer else None,
            "last_checkpoint_age_s": None,
        }
        if pointer is not None:
            done = folder.read(checkpoint_key(checkpoint_name(pointer.iteration), DONE_NAME))
            try:
                written = DoneMarker.model_validate_json(done or b"").written_at
            except ValidationError:
                progress["last_checkpoint_problem"] = f"{DONE_NAME} is absent or broken: run colabflow verify"
            else:
                progress["last_checkpoint_age_s"] = round((datetime.now(timezone.utc) - written).total_seconds(), 1)
        return progress


JOB_KIND = IterationsKind()
