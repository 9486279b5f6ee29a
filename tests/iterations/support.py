"""Job folders, snapshots, stores that fail or record, and plain runs for the iterations tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import JsonValue

from tasks.engine.job_folder import JobFolder, open_job_folder
from tasks.iterations.checkpoints import LATEST_NAME, checkpoint_key, read_pointer_bytes
from tasks.iterations.job import IterationRun, run_iterations
from tasks.iterations.models import LoopState, Snapshot, StopReason
from tasks.iterations.parameters import IterateJob
from tasks.iterations.state_format import encode_state
from tasks.storage.local import LocalStore

HILL_CLIMB = "tasks.iterations.examples.hill_climb:HillClimb"
IDENTITY: dict[str, JsonValue] = {"program": "lab.prog:Prog", "params": {"rate": "0.1"}, "seed": 3}


def prepared_folder(root: Path, job: str = "job") -> JobFolder:
    """A job folder on local disk, prepared as a run prepares it."""
    folder = open_job_folder(str(root), job)
    folder.prepare()
    return folder


def with_store(folder: JobFolder, store: LocalStore) -> JobFolder:
    """The same folder reached through another store over the same directory."""
    return dataclasses.replace(folder, store=store)


def make_snapshot(iterations_done: int, value: float = 1.0, **loop: Any) -> Snapshot:
    """A snapshot of a small state at `iterations_done`, with one metrics line per iteration since the last."""
    state = {"program": {"weights": torch.full((3,), value), "step": iterations_done, "nested": {"name": "w"}},
             "generators": {}}
    lines = [f'{{"iteration":{iterations_done - 1},"loss":{value}}}\n'.encode()]
    return Snapshot(identity=IDENTITY, loop=LoopState(iterations_done=iterations_done, **loop),
                    encoded=encode_state(state), metrics_lines=lines)


def flip_byte(path: Path, offset: int = -1) -> None:
    """Change one byte of a file in place, as a bad disk or a bad copy would."""
    content = bytearray(path.read_bytes())
    content[offset] ^= 0x01
    path.write_bytes(bytes(content))


def checkpoint_path(root: Path, name: str, file: str, job: str = "job") -> Path:
    """A checkpoint file on disk."""
    return root / job / checkpoint_key(name, file)


def pointer_iteration(folder: JobFolder) -> int | None:
    """The iteration `latest.json` names, or None when it is absent or unreadable."""
    content = folder.read(LATEST_NAME)
    pointer = read_pointer_bytes(content) if content is not None else None
    return pointer.iteration if pointer is not None else None


class FailingStore(LocalStore):
    """Local disk that refuses every write whose key `fails` picks."""

    def __init__(self, root: Path, fails: Callable[[str], bool]) -> None:
        super().__init__(root)
        self.fails = fails

    def write_bytes(self, key: str, data: bytes) -> None:
        if self.fails(key):
            raise OSError(f"no space left on device writing {key}")
        super().write_bytes(key, data)


class RecordingStore(LocalStore):
    """Local disk that records each write (its file name) and each sync, in order."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.events: list[str] = []

    def write_bytes(self, key: str, data: bytes) -> None:
        self.events.append(key.rpartition("/")[2])
        super().write_bytes(key, data)

    def sync(self) -> None:
        self.events.append("sync")
        super().sync()


class NoObserver:
    """An observer that ignores every step and checkpoint."""

    def after_step(self, iteration: int, metrics: dict[str, float], loop: LoopState) -> None:
        """Ignore the step."""

    def after_checkpoint(self, name: str) -> None:
        """Ignore the checkpoint."""


def never_stop() -> StopReason | None:
    """No drain and no quota."""
    return None


def hill_climb_job(iterations: int, **fields: Any) -> IterateJob:
    """A small, fast hill climb that checkpoints every 5 iterations unless told otherwise."""
    settings: dict[str, Any] = {"job": "job", "program": HILL_CLIMB, "params": {"size": "8"},
                                "checkpoint_every_iterations": 5, **fields}
    return IterateJob(iterations=iterations, **settings)


def run_job(request: IterateJob, folder: JobFolder, stop: Callable[[], StopReason | None] = never_stop,
            warnings: list[str] | None = None) -> IterationRun:
    """One plain run of the job, its warnings collected in `warnings`."""
    collected = warnings if warnings is not None else []
    return run_iterations(request, folder, stop, NoObserver(), collected.append)
