"""An iterative job's checkpoints in its job folder: written complete, checksummed, then pointed at.

    <job>/checkpoints/<iteration>/tensors.safetensors   every tensor and array of the state
    <job>/checkpoints/<iteration>/state.json            the rest (JSON), the RNG states, the loop state
    <job>/checkpoints/<iteration>/done.json             sha256 of both, written last
    <job>/metrics/<iteration>.jsonl                     the iterations since the previous checkpoint
    <job>/latest.json                                   the checkpoint in force

`<iteration>` is the number of iterations done, ten digits. The order of writes is what makes a
kill harmless: the files, a sync, `done.json`, a sync, and only then `latest.json` moves (under
the store's guard against another writer: a generation precondition on GCS, a folder lock on
local disk, a read-back on Drive). Old checkpoints are removed only after that. A crash at any
point leaves `latest.json` naming a complete checkpoint, so the previous one stays in force.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import safetensors.torch
from pydantic import BaseModel, ValidationError

from tasks.engine.job_folder import JobFolder
from tasks.errors import CorruptOutputError
from tasks.iterations.models import LoadedCheckpoint, LoopState, Snapshot
from tasks.iterations.state_format import paired_state
from tasks.iterations.tensor_file import read_hashed, tensors_of
from tasks.storage.shared_files import update_object
from tasks.storage.stores import delete_object

CHECKPOINT_FORMAT = 1
CHECKPOINTS_DIR = "checkpoints"
METRICS_DIR = "metrics"
LATEST_NAME = "latest.json"
STATE_NAME = "state.json"
TENSORS_NAME = "tensors.safetensors"
DONE_NAME = "done.json"


class DoneMarker(BaseModel):
    """`done.json`: the checkpoint is complete, and these are its files' digests."""

    iteration: int
    state_sha256: str
    tensors_sha256: str
    written_at: datetime


class LatestPointer(BaseModel):
    """`latest.json`: the checkpoint in force."""

    iteration: int
    checkpoint: str
    state_sha256: str


def checkpoint_name(iterations_done: int) -> str:
    """`0000001000`: sorts as the iteration does."""
    return f"{iterations_done:010d}"


def checkpoint_key(name: str, file: str = "") -> str:
    return f"{CHECKPOINTS_DIR}/{name}/{file}" if file else f"{CHECKPOINTS_DIR}/{name}"


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def write_checkpoint(folder: JobFolder, snapshot: Snapshot) -> str:
    """Write the snapshot complete and durable, then move `latest.json` to it; its name."""
    name = checkpoint_name(snapshot.loop.iterations_done)
    tensors = safetensors.torch.save(snapshot.encoded.tensors)
    tensors_sha256 = sha256_hex(tensors)
    state = json.dumps({
        "format": CHECKPOINT_FORMAT, "identity": snapshot.identity, "loop": snapshot.loop.model_dump(mode="json"),
        "state": snapshot.encoded.skeleton, "tensors_sha256": tensors_sha256,
    }, sort_keys=True, separators=(",", ":")).encode()
    folder.write(checkpoint_key(name, TENSORS_NAME), tensors)
    folder.write(checkpoint_key(name, STATE_NAME), state)
    folder.write(f"{METRICS_DIR}/{name}.jsonl", b"".join(snapshot.metrics_lines))
    folder.sync()
    done = DoneMarker(iteration=snapshot.loop.iterations_done, state_sha256=sha256_hex(state),
                      tensors_sha256=tensors_sha256, written_at=datetime.now(timezone.utc))
    folder.write(checkpoint_key(name, DONE_NAME), done.model_dump_json().encode())
    folder.sync()
    point_latest(folder, LatestPointer(iteration=done.iteration, checkpoint=checkpoint_key(name),
                                       state_sha256=done.state_sha256), forward_only=True)
    return name


def point_latest(folder: JobFolder, pointer: LatestPointer, forward_only: bool) -> None:
    """Move `latest.json` to `pointer` under the store's writer guard; `forward_only` never moves it back."""
    wanted = pointer.model_dump_json().encode()

    def change(current: bytes | None) -> bytes | None:
        if current == wanted:
            return None
        if forward_only and current is not None:
            held = read_pointer_bytes(current)
            if held is not None and held.iteration > pointer.iteration:
                return None  # another run of this job is ahead; its checkpoint stays in force
        return wanted

    update_object(folder.store, folder.key(LATEST_NAME), change)
    folder.sync()


def read_pointer_bytes(content: bytes) -> LatestPointer | None:
    try:
        return LatestPointer.model_validate_json(content)
    except ValidationError:
        return None


def checkpoint_names(folder: JobFolder) -> list[str]:
    """Names of the checkpoint folders present (complete or not), newest first, from one listing."""
    names = {key.split("/")[1] for key in folder.sizes(CHECKPOINTS_DIR) if key.count("/") >= 2}
    return sorted((name for name in names if name.isdigit()), reverse=True)


def read_checkpoint(folder: JobFolder, name: str) -> LoadedCheckpoint:
    """A checkpoint read and checked against its done marker; CorruptOutputError says what is wrong."""
    where = f"{folder.location}/{checkpoint_key(name)}"
    done = _read_model(folder, checkpoint_key(name, DONE_NAME), DoneMarker, f"{where} is incomplete (no valid {DONE_NAME})")
    state = _read_checked(folder, checkpoint_key(name, STATE_NAME), done.state_sha256, where)
    tensors_key = folder.key(checkpoint_key(name, TENSORS_NAME))
    if folder.store.stat(tensors_key) is None:
        raise CorruptOutputError(f"{where}: {TENSORS_NAME} is missing")
    tensors, tensors_sha256 = read_hashed(folder.store, tensors_key)
    if tensors_sha256 != done.tensors_sha256:
        raise CorruptOutputError(f"{where}: {TENSORS_NAME} does not match its sha256 in {DONE_NAME}")
    try:
        document = json.loads(state)
        if document.get("format") != CHECKPOINT_FORMAT:
            raise CorruptOutputError(f"{where}: checkpoint format {document.get('format')!r}, expected "
                                     f"{CHECKPOINT_FORMAT}; it was written by another colabflow version")
        loop = LoopState.model_validate(document["loop"])
        encoded = paired_state(document["state"], tensors_of(tensors, where))
    except (ValueError, KeyError, TypeError, ValidationError) as error:
        raise CorruptOutputError(f"{where}: {STATE_NAME} cannot be read ({error})") from None
    return LoadedCheckpoint(name=name, state_sha256=done.state_sha256, identity=document["identity"], loop=loop,
                            encoded=encoded)


def _read_model(folder: JobFolder, key: str, model: type[DoneMarker], problem: str) -> DoneMarker:
    content = folder.read(key)
    try:
        if content is None:
            raise ValueError("absent")
        return model.model_validate_json(content)
    except (ValueError, ValidationError):
        raise CorruptOutputError(problem) from None


def _read_checked(folder: JobFolder, key: str, sha256: str, where: str) -> bytes:
    content = folder.read(key)
    if content is None:
        raise CorruptOutputError(f"{where}: {key.rpartition('/')[2]} is missing")
    if sha256_hex(content) != sha256:
        raise CorruptOutputError(f"{where}: {key.rpartition('/')[2]} does not match its sha256 in {DONE_NAME}")
    return content


def remove_checkpoint(folder: JobFolder, name: str) -> None:
    """Delete a checkpoint folder's files, its done marker first, so a half-removed one is never taken."""
    for file in (DONE_NAME, STATE_NAME, TENSORS_NAME):
        delete_object(folder.store, folder.key(checkpoint_key(name, file)))


def prune_checkpoints(folder: JobFolder, keep_last: int, in_force: str) -> list[str]:
    """Remove all but the newest `keep_last` checkpoints up to the one in force; the names removed."""
    older = [name for name in checkpoint_names(folder) if name <= in_force]
    removed = older[keep_last:]
    for name in removed:
        remove_checkpoint(folder, name)
    return removed
