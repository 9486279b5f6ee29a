"""Checkpoint keys and locations: a batch's persisted result is keyed by its content."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache

from blocks.checkpoints import CheckpointStorage
from tasks.compression.models import BatchSettings
from tasks.engine.models import ChunkFingerprint
from tasks.storage.stores import StorageAccess

# Bump when the meaning or the class path of a persisted BatchResult changes, so old checkpoints are
# not reused: Prefect's JSON records name the class they hold and import it on load. Format 1 named
# `tasks.models.BatchResult`; a format-1 job folder resumes through its recipes instead.
CHECKPOINT_FORMAT = 2
CHECKPOINT_DIR_NAME = ".checkpoints"
BATCH_RUN_PREFIX = "compress-batch"


def batch_checkpoint_key(batch: list[ChunkFingerprint], settings: BatchSettings) -> str:
    """Key of a batch: chunk ids and sha256s, codec name, version and level, and destination."""
    content = json.dumps(
        [
            CHECKPOINT_FORMAT,
            settings.destination,
            settings.job,
            settings.codec,
            settings.codec_version,
            settings.level,
            [[chunk.chunk_id, chunk.sha256] for chunk in batch],
        ],
        separators=(",", ":"),
    )
    return "batch-" + hashlib.sha256(content.encode()).hexdigest()


def checkpoint_storage(settings: BatchSettings) -> CheckpointStorage:
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
    storage.save(f"colabflow-checkpoints-{digest}", overwrite=True)
    return storage


def batch_run_name(batch_key: str) -> str:
    """Task-run name of a batch: the same in every attempt, so status can tell a batch run again."""
    return f"{BATCH_RUN_PREFIX}-{batch_key.removeprefix('batch-')[:16]}"
