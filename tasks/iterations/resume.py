"""Which checkpoint a run resumes from, and clearing what a killed run left after it.

The checkpoint in force is the one `latest.json` names. When it does not verify, the run says so
and takes the newest older checkpoint that does; with no readable pointer, the newest checkpoint
that verifies. Checkpoints and metrics after the one in force belong to a run that never moved
the pointer (or to a broken checkpoint): they are removed, so the resumed run writes them again
and `metrics.jsonl` never holds an iteration twice. When checkpoints exist and none verifies, the
run stops with an error instead of quietly starting again from zero.
"""

from __future__ import annotations

from tasks.engine.job_folder import JobFolder
from tasks.errors import CorruptOutputError
from tasks.iterations.checkpoints import (
    LATEST_NAME,
    METRICS_DIR,
    LatestPointer,
    checkpoint_key,
    checkpoint_name,
    checkpoint_names,
    point_latest,
    read_checkpoint,
    read_pointer_bytes,
    remove_checkpoint,
)
from tasks.iterations.models import LoadedCheckpoint
from tasks.storage.stores import delete_object


def find_in_force(folder: JobFolder) -> tuple[LoadedCheckpoint | None, list[str]]:
    """The checkpoint to resume from (None for a new job) and a warning for each one skipped."""
    names = checkpoint_names(folder)
    content = folder.read(LATEST_NAME)
    pointer = read_pointer_bytes(content) if content is not None else None
    warnings: list[str] = []
    if content is not None and pointer is None:
        warnings.append(f"{folder.location}/{LATEST_NAME} is not a checkpoint pointer; taking the newest checkpoint "
                        "that verifies")
    if pointer is not None:
        names = [name for name in names if int(name) <= pointer.iteration]
        if not names:
            raise CorruptOutputError(
                f"{folder.location}/{LATEST_NAME} names {pointer.checkpoint}, which is gone, and no older checkpoint "
                "is left; restore the checkpoints, or start again under a new --job name"
            )
        if names[0] != checkpoint_name(pointer.iteration):
            warnings.append(f"{folder.location}/{LATEST_NAME} names {pointer.checkpoint}, which is gone; taking the "
                            "newest older checkpoint that verifies")
    elif content is None and names:
        names = [name for name in names if folder.read(checkpoint_key(name, "done.json")) is not None]
    problems: list[str] = []
    for name in names:
        try:
            loaded = read_checkpoint(folder, name)
        except CorruptOutputError as error:
            problems.append(str(error))
            warnings.append(f"checkpoint {checkpoint_key(name)} is broken and skipped: {error}")
            continue
        return loaded, warnings
    if problems:
        raise CorruptOutputError(
            f"every checkpoint of {folder.location} is broken, so the job cannot resume ({'; '.join(problems)}); "
            "nothing was restarted from zero: restore a checkpoint, or start again under a new --job name"
        )
    return None, warnings


def clear_after(folder: JobFolder, in_force: LoadedCheckpoint | None) -> None:
    """Remove checkpoints and metrics segments after the one in force, and point `latest.json` at it."""
    last = in_force.name if in_force is not None else ""
    for name in checkpoint_names(folder):
        if name > last:
            remove_checkpoint(folder, name)
    for key in folder.sizes(METRICS_DIR):
        if key.rpartition("/")[2].removesuffix(".jsonl") > last:
            delete_object(folder.store, folder.key(key))
    if in_force is None:
        delete_object(folder.store, folder.key(LATEST_NAME))
    else:
        pointer = LatestPointer(iteration=in_force.loop.iterations_done, checkpoint=checkpoint_key(in_force.name),
                                state_sha256=in_force.state_sha256)
        point_latest(folder, pointer, forward_only=False)
    folder.sync()
