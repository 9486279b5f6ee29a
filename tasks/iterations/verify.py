"""`colabflow verify` for an iterative job: every checkpoint against its digests, and the metrics file.

A job folder verifies when `latest.json` names a checkpoint that verifies, every other
checkpoint verifies too, and `metrics.jsonl` holds iterations 0 .. N-1 once each, in order,
exactly as the checkpoints' segments do (N: the iterations in the checkpoint in force).
"""

from __future__ import annotations

from tasks.engine.job_folder import JobFolder
from tasks.engine.models import ItemFailure
from tasks.engine.verify import JobCheck
from tasks.errors import CorruptOutputError
from tasks.iterations.checkpoints import (
    CHECKPOINTS_DIR,
    LATEST_NAME,
    checkpoint_key,
    checkpoint_name,
    checkpoint_names,
    read_checkpoint,
    read_pointer_bytes,
)
from tasks.iterations.metrics_file import METRICS_NAME, segment_keys


def verify_iterations(folder: JobFolder) -> JobCheck:
    """Check the checkpoints and `metrics.jsonl` of an iterative job's folder."""
    problems: list[ItemFailure] = []
    content = folder.read(LATEST_NAME)
    pointer = read_pointer_bytes(content) if content is not None else None
    if pointer is None:
        problems.append(ItemFailure(item_id=LATEST_NAME, reason="absent or not a checkpoint pointer; rerun the job"))
    names = checkpoint_names(folder)
    sizes = folder.sizes(CHECKPOINTS_DIR)
    for name in names:
        try:
            read_checkpoint(folder, name)
        except CorruptOutputError as error:
            problems.append(ItemFailure(item_id=checkpoint_key(name), reason=str(error)))
    if pointer is not None:
        if checkpoint_name(pointer.iteration) not in names:
            problems.append(ItemFailure(item_id=LATEST_NAME, reason=f"names {pointer.checkpoint}, which is gone"))
        problems += check_metrics(folder, pointer.iteration)
    return JobCheck(job_dir=folder.location, items=len(names), bytes_checked=sum(sizes.values()), problems=problems)


def check_metrics(folder: JobFolder, iterations: int) -> list[ItemFailure]:
    """`metrics.jsonl` is the segments put together and numbers 0 .. iterations-1 once each."""
    content = folder.read(METRICS_NAME)
    if content is None:
        return [ItemFailure(item_id=METRICS_NAME, reason="absent; rerun the job to write it")]
    segments = b"".join(folder.read(key) or b"" for key in segment_keys(folder, checkpoint_name(iterations)))
    if content != segments:
        return [ItemFailure(item_id=METRICS_NAME, reason="differs from the checkpoints' metrics segments")]
    numbers = []
    for line in content.splitlines():
        number = line.split(b",", 1)[0].removeprefix(b'{"iteration":').removesuffix(b"}")  # {} as metrics too
        numbers.append(int(number) if number.isdigit() else -1)
    if numbers != list(range(iterations)):
        return [ItemFailure(item_id=METRICS_NAME, reason=f"does not list iterations 0 to {iterations - 1} once each")]
    return []
