"""Checkpoints: keys by content, the commit record of each batch, and Prefect's record of each task run.

Two layers, so that a crash loses at most the batch in flight while the server sees tens of
task runs, not thousands:

- A batch is the commit unit. Once its outputs are in the job folder, its `BatchResult` is
  written to `<results>/<job>/.checkpoints/batches/<batch key>.json`, last: the done marker.
- A task run carries several batches (a task unit). Its outcomes are persisted by Prefect under
  a key made of its batches' keys, so a rerun of a finished job reads one record per task run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from pydantic import BaseModel, ValidationError

from blocks.checkpoints import CheckpointStorage
from tasks.engine.job_folder import JobFolder, job_folder, results_folder
from tasks.engine.kinds import batch_kind
from tasks.engine.models import BatchResult, ItemFingerprint, JobSettings
from tasks.errors import RemoteUnavailableError
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import StorageAccess

# Bump when the meaning or the class path of a persisted result changes, so old checkpoints are
# not reused: Prefect's JSON records name the class they hold and import it on load. Format 1
# named `tasks.engine.models.BatchResult`, format 2 `tasks.compression.models.BatchResult`; format 3
# holds the engine's `TaskUnitResult`. Older job folders resume through what their kind finds
# in the folder (compression: the recipes).
CHECKPOINT_FORMAT = 3
CHECKPOINT_DIR_NAME = ".checkpoints"
COMMITS_DIR_NAME = "batches"
TASK_RUN_PREFIX = "batches"

logger = logging.getLogger("colabflow.checkpoints")
# Runs that start together race to register the checkpoint block, and a busy server answers 503: try again.
SAVE_RETRIES = RetryPolicy(attempts=8, base_delay=0.5, max_delay=20.0)


class BatchCommit(BaseModel):
    """The done marker of a batch: written after its outputs, so its presence means they are there."""

    format: int = CHECKPOINT_FORMAT
    key: str
    result: BatchResult


def batch_checkpoint_key(batch: list[ItemFingerprint], settings: JobSettings) -> str:
    """Key of a batch: item ids and sha256s, the kind and its identity, the job and its destination."""
    content = json.dumps(
        [
            CHECKPOINT_FORMAT,
            settings.destination,
            settings.job,
            settings.kind,
            batch_kind(settings.kind).identity(settings),
            [[item.item_id, item.sha256] for item in batch],
        ],
        separators=(",", ":"),
    )
    return "batch-" + hashlib.sha256(content.encode()).hexdigest()


def unit_checkpoint_key(batch_keys: list[str]) -> str:
    """Key of a task unit: the keys of the batches it carries, in order."""
    return "unit-" + hashlib.sha256("\n".join(batch_keys).encode()).hexdigest()


def unit_run_name(unit_key: str, batches: int) -> str:
    """Task-run name of a task unit: the same in every attempt, so status can tell one run again."""
    return f"{TASK_RUN_PREFIX}-{unit_key.removeprefix('unit-')[:16]}-x{batches}"


def _commit_name(batch_key: str) -> str:
    return f"{CHECKPOINT_DIR_NAME}/{COMMITS_DIR_NAME}/{batch_key}.json"


def commit_batch(settings: JobSettings, batch_key: str, result: BatchResult) -> None:
    """Make the batch's outputs durable, then write its done marker: the marker never names a lost output."""
    job_folder(settings).sync()
    commit = BatchCommit(key=batch_key, result=result)
    results_folder(settings).write(_commit_name(batch_key), commit.model_dump_json().encode())


def read_commit(settings: JobSettings, batch_key: str) -> BatchResult | None:
    """The committed result of a batch, or None when it has none (a damaged marker is logged, then ignored)."""
    folder = results_folder(settings)
    content = folder.read(_commit_name(batch_key))
    if content is None:
        return None
    try:
        commit = BatchCommit.model_validate_json(content)
    except ValidationError as error:
        logger.warning("ignoring the damaged done marker %s (%s); the batch runs again",
                       folder.uri(folder.key(_commit_name(batch_key))), error.errors()[0]["msg"])
        return None
    return commit.result if commit.format == CHECKPOINT_FORMAT and commit.key == batch_key else None


def count_committed_items(folder: JobFolder) -> int:
    """Items in the committed batches of a job's folder on result storage (for `colabflow status`)."""
    names = [name for name in folder.sizes(f"{CHECKPOINT_DIR_NAME}/{COMMITS_DIR_NAME}") if name.endswith(".json")]
    with ThreadPoolExecutor(16) as pool:
        contents = list(pool.map(folder.read, names))
    total = 0
    for content in contents:
        try:
            total += len(BatchCommit.model_validate_json(content or b"").result.outputs)
        except ValidationError:
            continue
    return total


def checkpoint_storage(settings: JobSettings) -> CheckpointStorage:
    """Where a job's checkpoints live: `<results>/<job>/.checkpoints`, so they go when the job goes.

    `results` is the destination unless the user chose another location.
    """
    return saved_storage(f"{settings.results}/{settings.job}/{CHECKPOINT_DIR_NAME}", settings.access)


@lru_cache(maxsize=32)
def saved_storage(location: str, access: StorageAccess) -> CheckpointStorage:
    """The storage block for a location, saved to the API once per process.

    Prefect takes only saved blocks as task result storage. The block holds a location and the
    names of credential blocks, never a secret, and its name is derived from both.
    """
    storage = CheckpointStorage(location=location, access=access)
    digest = hashlib.sha256(f"{location}\n{access.model_dump_json()}".encode()).hexdigest()[:20]
    SAVE_RETRIES.run(lambda: _save_once(storage, f"colabflow-checkpoints-{digest}"), logger)
    return storage


def _save_once(storage: CheckpointStorage, name: str) -> None:
    """Save the block; a clash with another run saving at the same moment, or a busy server, is worth another try.

    Runs that start together on a server that has not seen the block yet all register its type,
    schema and document at once, and Prefect's `Block.save` does not take losing that race: the
    losers get 409 (ObjectAlreadyExists) or a 404 (ObjectNotFound) for a row the winner has not
    committed yet. Once the winner's write lands, the next try reads it. A server on SQLite under
    many workers answers 503 even after the client's own retries (docs/benchmarks.md, pool soak).
    """
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError

    try:
        storage.save(name, overwrite=True)
    except (ObjectAlreadyExists, ObjectNotFound) as clash:
        raise RemoteUnavailableError(f"saving checkpoint block {name!r} raced another run ({type(clash).__name__})") from None
    except PrefectHTTPStatusError as error:
        if error.response.status_code < 500:
            raise
        raise RemoteUnavailableError(f"saving checkpoint block {name!r}: the Prefect API answered "
                                     f"{error.response.status_code}") from None
