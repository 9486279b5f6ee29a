"""Checkpoint keys and locations: a batch's persisted result is keyed by its content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tasks.models import BatchSettings, ChunkFingerprint

# Bump when the meaning of a persisted BatchResult changes, so old checkpoints are not reused.
CHECKPOINT_FORMAT = 1
CHECKPOINT_DIR_NAME = ".checkpoints"


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


def checkpoint_dir(settings: BatchSettings) -> Path:
    """Where a job's checkpoints live: inside its job folder, so they go when the job goes."""
    return Path(settings.destination) / settings.job / CHECKPOINT_DIR_NAME
