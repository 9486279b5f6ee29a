"""Which checkpoint a run resumes from, what it clears after it, and whose checkpoints it accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tasks.errors import CorruptOutputError, InvalidParameterError
from tasks.iterations.checkpoints import (
    LATEST_NAME,
    STATE_NAME,
    TENSORS_NAME,
    checkpoint_name,
    checkpoint_names,
    read_checkpoint,
    write_checkpoint,
)
from tasks.iterations.resume import clear_after, find_in_force
from tasks.storage.stores import delete_object
from tests.iterations.support import (
    FailingStore,
    checkpoint_path,
    flip_byte,
    hill_climb_job,
    make_snapshot,
    pointer_iteration,
    prepared_folder,
    run_job,
    with_store,
)


def write_all(tmp_path: Path, *iterations: int) -> None:
    """Write a checkpoint after each of `iterations`, in order, each moving latest.json."""
    folder = prepared_folder(tmp_path)
    for done in iterations:
        write_checkpoint(folder, make_snapshot(done))


def test_a_new_job_has_no_checkpoint_in_force(tmp_path: Path) -> None:
    """No checkpoints and no pointer: start from zero, without a warning."""
    assert find_in_force(prepared_folder(tmp_path)) == (None, [])


def test_the_checkpoint_latest_names_is_in_force(tmp_path: Path) -> None:
    """The newest checkpoint the pointer names is taken, without a warning."""
    write_all(tmp_path, 5, 10)
    loaded, warnings = find_in_force(prepared_folder(tmp_path))
    assert (loaded.name if loaded else None, warnings) == ("0000000010", [])


def test_a_complete_checkpoint_after_the_pointer_is_not_taken(tmp_path: Path) -> None:
    """A checkpoint the pointer never reached belongs to a run killed before it moved latest.json."""
    write_all(tmp_path, 5)
    folder = prepared_folder(tmp_path)
    with pytest.raises(OSError, match="no space left"):
        write_checkpoint(with_store(folder, FailingStore(tmp_path, lambda key: key.endswith(LATEST_NAME))),
                         make_snapshot(10))
    loaded, _ = find_in_force(folder)
    assert read_checkpoint(folder, "0000000010").loop.iterations_done == 10
    assert loaded is not None and loaded.name == "0000000005"


@pytest.mark.parametrize("file", [TENSORS_NAME, STATE_NAME])
def test_a_broken_latest_checkpoint_falls_back_to_the_previous_one(tmp_path: Path, file: str) -> None:
    """A flipped byte in the newest checkpoint: the one before is taken, with a warning naming the broken one."""
    write_all(tmp_path, 5, 10)
    flip_byte(checkpoint_path(tmp_path, "0000000010", file))
    loaded, warnings = find_in_force(prepared_folder(tmp_path))
    assert loaded is not None and loaded.name == "0000000005"
    assert len(warnings) == 1
    assert re.match(rf"checkpoint checkpoints/0000000010 is broken and skipped: .*{file} does not match", warnings[0])


def test_every_checkpoint_broken_stops_instead_of_starting_again(tmp_path: Path) -> None:
    """No silent restart from zero: the error names the folder and what is wrong with each checkpoint."""
    write_all(tmp_path, 5, 10)
    folder = prepared_folder(tmp_path)
    flip_byte(checkpoint_path(tmp_path, "0000000005", TENSORS_NAME))
    flip_byte(checkpoint_path(tmp_path, "0000000010", STATE_NAME))
    with pytest.raises(CorruptOutputError, match=rf"every checkpoint of {re.escape(folder.location)} is broken, so the "
                       r"job cannot resume \(.*0000000010: state.json.*0000000005: tensors.safetensors.*\); nothing was "
                       "restarted from zero"):
        find_in_force(folder)


def test_an_unreadable_pointer_takes_the_newest_valid_checkpoint_with_a_warning(tmp_path: Path) -> None:
    """latest.json that does not parse: the newest checkpoint that verifies, and a warning saying so."""
    write_all(tmp_path, 5, 10)
    folder = prepared_folder(tmp_path)
    folder.write(LATEST_NAME, b'{"iteration": "ten"')
    loaded, warnings = find_in_force(folder)
    assert loaded is not None and loaded.name == "0000000010"
    expected = f"{folder.location}/{LATEST_NAME} is not a checkpoint pointer; taking the newest checkpoint that verifies"
    assert warnings == [expected]


def test_without_a_pointer_an_incomplete_first_checkpoint_means_a_new_job(tmp_path: Path) -> None:
    """A run killed while writing its first checkpoint (no done.json, no pointer) starts from zero."""
    folder = prepared_folder(tmp_path)
    folder.write("checkpoints/0000000005/tensors.safetensors", b"half")
    assert find_in_force(folder) == (None, [])


def test_a_pointer_to_a_vanished_checkpoint_with_none_older_is_an_error(tmp_path: Path) -> None:
    """latest.json names a checkpoint that is gone and nothing older is left: restore, or start a new job."""
    write_all(tmp_path, 5)
    folder = prepared_folder(tmp_path)
    for file in ("done.json", STATE_NAME, TENSORS_NAME):
        delete_object(folder.store, folder.key(f"checkpoints/0000000005/{file}"))
    with pytest.raises(CorruptOutputError, match="names checkpoints/0000000005, which is gone, and no older checkpoint"):
        find_in_force(folder)


def test_a_pointer_to_a_vanished_checkpoint_falls_back_with_a_warning(tmp_path: Path) -> None:
    """The checkpoint latest.json names is gone: the older one is taken, and the run says so."""
    write_all(tmp_path, 5, 10)
    folder = prepared_folder(tmp_path)
    for file in ("done.json", STATE_NAME, TENSORS_NAME):
        delete_object(folder.store, folder.key(f"checkpoints/0000000010/{file}"))
    loaded, warnings = find_in_force(folder)
    assert loaded is not None and loaded.name == "0000000005"
    assert len(warnings) == 1 and "checkpoints/0000000010" in warnings[0] and "is gone" in warnings[0]


def test_clear_after_removes_later_checkpoints_and_metrics_and_points_back(tmp_path: Path) -> None:
    """What a killed or broken run left after the checkpoint in force is removed, and latest.json names it."""
    write_all(tmp_path, 5, 10, 15)
    folder = prepared_folder(tmp_path)
    clear_after(folder, read_checkpoint(folder, "0000000010"))
    assert checkpoint_names(folder) == ["0000000010", "0000000005"]
    assert sorted(folder.sizes("metrics")) == ["metrics/0000000005.jsonl", "metrics/0000000010.jsonl"]
    assert pointer_iteration(folder) == 10


def test_clear_after_nothing_in_force_removes_every_checkpoint_and_the_pointer(tmp_path: Path) -> None:
    """A new start leaves no checkpoint, segment or pointer behind to mix with its own."""
    write_all(tmp_path, 5)
    folder = prepared_folder(tmp_path)
    folder.write("checkpoints/0000000010/tensors.safetensors", b"half")
    clear_after(folder, None)
    assert (checkpoint_names(folder), folder.sizes("metrics"), folder.read(LATEST_NAME)) == ([], {}, None)


def test_a_run_resumes_past_a_broken_checkpoint_and_ends_as_an_unbroken_run(tmp_path: Path) -> None:
    """The job resumes from the checkpoint before the broken one, warns, and ends in the same state."""
    straight = run_job(hill_climb_job(15), prepared_folder(tmp_path / "straight"))
    folder = prepared_folder(tmp_path / "broken")
    run_job(hill_climb_job(10), folder)
    flip_byte(checkpoint_path(tmp_path / "broken", checkpoint_name(10), TENSORS_NAME))
    warnings: list[str] = []
    resumed = run_job(hill_climb_job(15), folder, warnings=warnings)
    assert resumed.resumed_from == 5 and len(warnings) == 1 and "0000000010 is broken" in warnings[0]
    assert (resumed.final_state_sha256, resumed.metrics) == (straight.final_state_sha256, straight.metrics)


@pytest.mark.parametrize("change", [{"seed": 1}, {"params": {"size": "9"}}])
def test_a_run_with_another_identity_is_refused_naming_both(tmp_path: Path, change: dict[str, object]) -> None:
    """Another seed or other params cannot resume exactly: both identities are named and nothing is cleared."""
    folder = prepared_folder(tmp_path)
    first = run_job(hill_climb_job(5), folder)
    other = hill_climb_job(10, **change)
    written = {"params": {"size": "8"}, "program": other.program, "seed": 0}  # read back from sorted JSON
    asked = {"program": other.program, "params": other.params, "seed": other.seed}
    with pytest.raises(InvalidParameterError, match=re.escape(f"written by {written!r}, and this run asks for {asked!r}")):
        run_job(other, folder)
    assert checkpoint_names(folder) == first.checkpoints_written and pointer_iteration(folder) == 5
