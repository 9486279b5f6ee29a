"""Checkpoints in a job folder: round trips, the order of writes, pruning and the pointer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tasks.errors import CorruptOutputError
from tasks.iterations.checkpoints import (
    DONE_NAME,
    LATEST_NAME,
    STATE_NAME,
    TENSORS_NAME,
    LatestPointer,
    checkpoint_key,
    checkpoint_name,
    checkpoint_names,
    point_latest,
    prune_checkpoints,
    read_checkpoint,
    write_checkpoint,
)
from tasks.iterations.models import BestValue
from tasks.iterations.state_digest import state_digest
from tasks.iterations.state_format import decode_state
from tests.iterations.support import (
    IDENTITY,
    FailingStore,
    RecordingStore,
    checkpoint_path,
    flip_byte,
    make_snapshot,
    pointer_iteration,
    prepared_folder,
    with_store,
)


def pointer_to(iterations_done: int) -> LatestPointer:
    """A pointer to the checkpoint after `iterations_done` iterations."""
    name = checkpoint_name(iterations_done)
    return LatestPointer(iteration=iterations_done, checkpoint=checkpoint_key(name), state_sha256="0" * 64)


def test_a_checkpoint_name_sorts_as_its_iteration() -> None:
    """Ten digits, so names sort as the iterations they hold."""
    assert checkpoint_name(1000) == "0000001000"
    assert sorted([checkpoint_name(9), checkpoint_name(10)]) == ["0000000009", "0000000010"]


def test_a_checkpoint_reads_back_as_written(tmp_path: Path) -> None:
    """Identity, loop state and every tensor come back; the state digest is the one written."""
    folder = prepared_folder(tmp_path)
    best = BestValue(metric="loss", value=0.5, iteration=6)
    snapshot = make_snapshot(7, value=2.5, best=best, early_stop_best=0.5, reports_without_improvement=1)
    name = write_checkpoint(folder, snapshot)
    loaded = read_checkpoint(folder, name)
    assert (loaded.name, loaded.identity, loaded.loop) == ("0000000007", IDENTITY, snapshot.loop)
    assert state_digest(loaded.encoded) == state_digest(snapshot.encoded)
    program = decode_state(loaded.encoded)["program"]
    assert isinstance(program, dict) and torch.equal(program["weights"], torch.full((3,), 2.5))
    assert (program["step"], program["nested"]) == (7, {"name": "w"})


def test_a_checkpoint_writes_its_metrics_segment_and_moves_the_pointer(tmp_path: Path) -> None:
    """The segment holds the lines since the last checkpoint, and latest.json names the new checkpoint."""
    folder = prepared_folder(tmp_path)
    write_checkpoint(folder, make_snapshot(4))
    assert folder.read("metrics/0000000004.jsonl") == b'{"iteration":3,"loss":1.0}\n'
    assert pointer_iteration(folder) == 4


def test_the_pointer_moves_only_after_the_done_marker_is_durable(tmp_path: Path) -> None:
    """Data files, a sync, done.json, a sync, and only then latest.json."""
    store = RecordingStore(tmp_path)
    write_checkpoint(with_store(prepared_folder(tmp_path), store), make_snapshot(3))
    events = store.events
    assert events[:4] == [TENSORS_NAME, STATE_NAME, "0000000003.jsonl", "sync"]
    assert events[4:7] == [DONE_NAME, "sync", LATEST_NAME]


def test_a_failed_pointer_write_leaves_the_previous_checkpoint_in_force(tmp_path: Path) -> None:
    """A kill before latest.json moves leaves a complete new checkpoint, and the old one still in force."""
    folder = prepared_folder(tmp_path)
    write_checkpoint(folder, make_snapshot(5))
    failing = with_store(folder, FailingStore(tmp_path, lambda key: key.endswith(LATEST_NAME)))
    with pytest.raises(OSError, match="no space left on device"):
        write_checkpoint(failing, make_snapshot(10))
    assert read_checkpoint(folder, "0000000010").loop.iterations_done == 10
    assert pointer_iteration(folder) == 5


def test_a_failed_done_marker_leaves_no_pointer_to_the_new_checkpoint(tmp_path: Path) -> None:
    """Without done.json the checkpoint is incomplete: read refuses it and the pointer stays."""
    folder = prepared_folder(tmp_path)
    write_checkpoint(folder, make_snapshot(5))
    failing = with_store(folder, FailingStore(tmp_path, lambda key: key.endswith(DONE_NAME)))
    with pytest.raises(OSError, match="no space left on device"):
        write_checkpoint(failing, make_snapshot(10))
    assert pointer_iteration(folder) == 5
    with pytest.raises(CorruptOutputError, match=r"checkpoints/0000000010 is incomplete \(no valid done.json\)"):
        read_checkpoint(folder, "0000000010")


@pytest.mark.parametrize("file", [TENSORS_NAME, STATE_NAME])
def test_a_changed_file_is_refused_against_its_digest(tmp_path: Path, file: str) -> None:
    """One flipped byte fails the sha256 in done.json; the message names the checkpoint and the file."""
    folder = prepared_folder(tmp_path)
    write_checkpoint(folder, make_snapshot(2))
    flip_byte(checkpoint_path(tmp_path, "0000000002", file))
    with pytest.raises(CorruptOutputError, match=rf"checkpoints/0000000002: {file} does not match its sha256 in done"):
        read_checkpoint(folder, "0000000002")


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    """A checkpoint whose tensors are gone says which file is missing."""
    folder = prepared_folder(tmp_path)
    write_checkpoint(folder, make_snapshot(2))
    checkpoint_path(tmp_path, "0000000002", TENSORS_NAME).unlink()
    with pytest.raises(CorruptOutputError, match=rf"checkpoints/0000000002: {TENSORS_NAME} is missing"):
        read_checkpoint(folder, "0000000002")


def test_prune_keeps_the_newest_checkpoints(tmp_path: Path) -> None:
    """All but the newest `keep_last` go, and the names removed are returned."""
    folder = prepared_folder(tmp_path)
    for done in range(1, 7):
        write_checkpoint(folder, make_snapshot(done))
    removed = prune_checkpoints(folder, 3, checkpoint_name(6))
    assert removed == [checkpoint_name(3), checkpoint_name(2), checkpoint_name(1)]
    assert checkpoint_names(folder) == [checkpoint_name(6), checkpoint_name(5), checkpoint_name(4)]
    assert not (tmp_path / "job" / "checkpoints" / checkpoint_name(1)).exists()


def test_prune_never_removes_the_checkpoint_in_force_or_any_after_it(tmp_path: Path) -> None:
    """With one kept, the checkpoint in force stays, and newer ones (another run's) are not touched."""
    folder = prepared_folder(tmp_path)
    for done in range(1, 7):
        write_checkpoint(folder, make_snapshot(done))
    prune_checkpoints(folder, 1, checkpoint_name(3))
    assert checkpoint_names(folder) == [checkpoint_name(done) for done in (6, 5, 4, 3)]


def test_prune_keeps_the_metrics_segments(tmp_path: Path) -> None:
    """Removing a checkpoint keeps its metrics, which metrics.jsonl is made of."""
    folder = prepared_folder(tmp_path)
    for done in range(1, 4):
        write_checkpoint(folder, make_snapshot(done))
    prune_checkpoints(folder, 1, checkpoint_name(3))
    assert sorted(folder.sizes("metrics")) == [f"metrics/{checkpoint_name(done)}.jsonl" for done in (1, 2, 3)]


def test_point_latest_forward_only_never_moves_the_pointer_back(tmp_path: Path) -> None:
    """Another run of the job that is ahead keeps its checkpoint in force."""
    folder = prepared_folder(tmp_path)
    point_latest(folder, pointer_to(10), forward_only=True)
    point_latest(folder, pointer_to(5), forward_only=True)
    assert pointer_iteration(folder) == 10


def test_point_latest_forward_only_moves_the_pointer_on(tmp_path: Path) -> None:
    """A newer checkpoint takes over, and so does any pointer where there was none."""
    folder = prepared_folder(tmp_path)
    point_latest(folder, pointer_to(5), forward_only=True)
    point_latest(folder, pointer_to(10), forward_only=True)
    assert pointer_iteration(folder) == 10


def test_point_latest_without_forward_only_moves_the_pointer_back(tmp_path: Path) -> None:
    """A resume that clears a broken checkpoint points back at the one it takes."""
    folder = prepared_folder(tmp_path)
    point_latest(folder, pointer_to(10), forward_only=True)
    point_latest(folder, pointer_to(5), forward_only=False)
    assert pointer_iteration(folder) == 5


def test_point_latest_forward_only_replaces_an_unreadable_pointer(tmp_path: Path) -> None:
    """A pointer that does not parse is not 'ahead', so it is replaced."""
    folder = prepared_folder(tmp_path)
    folder.write(LATEST_NAME, b"{not json")
    point_latest(folder, pointer_to(5), forward_only=True)
    assert pointer_iteration(folder) == 5


def test_checkpoint_names_lists_digit_folders_newest_first(tmp_path: Path) -> None:
    """Folders named other than by digits, and loose files, are not checkpoints."""
    folder = prepared_folder(tmp_path)
    for key in ("checkpoints/0000000003/done.json", "checkpoints/0000000012/state.json", "checkpoints/notes/a.txt",
                "checkpoints/0000000004-old/done.json", "checkpoints/README", "checkpoints/.0000000005/x"):
        folder.write(key, b"{}")
    assert checkpoint_names(folder) == ["0000000012", "0000000003"]


def test_checkpoint_names_of_a_new_folder_is_empty(tmp_path: Path) -> None:
    """No checkpoints folder at all: no names."""
    assert checkpoint_names(prepared_folder(tmp_path)) == []
