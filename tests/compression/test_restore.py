from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.compression.restore import check_job
from tasks.errors import CorruptOutputError
from tests.jobs import build_job


@pytest.fixture
def job_dir(sample_source: Path, tmp_path: Path) -> Path:
    build_job(sample_source, tmp_path / "out")
    return tmp_path / "out" / "job"


def sha256_tree(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*") if path.is_file()
    }


def test_restore_gives_back_the_exact_source_tree(job_dir: Path, sample_source: Path, tmp_path: Path) -> None:
    """Every chunk restores byte for byte, checked by sha256 of the original files."""
    check = check_job(job_dir, tmp_path / "restored")
    assert check.problems == []
    assert sha256_tree(tmp_path / "restored") == sha256_tree(sample_source)


def test_system_gzip_restores_every_member(job_dir: Path, sample_source: Path) -> None:
    """Plain `gzip -dc` (not our code) restores each .gz to the original bytes."""
    for member in (job_dir / "chunks").rglob("*.gz"):
        chunk_id = member.relative_to(job_dir / "chunks").as_posix()[: -len(".gz")]
        restored = subprocess.run(["gzip", "-dc", str(member)], capture_output=True, check=True).stdout
        assert restored == (sample_source / chunk_id).read_bytes()


def test_verify_of_a_good_job_finds_nothing(job_dir: Path) -> None:
    """verify checks every manifest line and reports no problem."""
    check = check_job(job_dir)
    assert (check.items, check.problems) == (8, [])


def damage(path: Path, change: str) -> None:
    data = bytearray(path.read_bytes())
    if change == "flip":
        data[len(data) // 2] ^= 0xFF
    elif change == "truncate":
        del data[len(data) // 2 :]
    else:
        data += b"garbage"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [("flip", "is corrupt"), ("truncate", "truncated"), ("append", "data after the end of its gzip member")],
)
def test_a_damaged_member_is_named_and_never_restored(job_dir: Path, tmp_path: Path, change: str, message: str) -> None:
    """A corrupt, truncated or extended .gz names its chunk; no file appears under its name."""
    damage(job_dir / "chunks" / "logs" / "worker.jsonl.gz", change)
    check = check_job(job_dir, tmp_path / "restored")
    assert [p.item_id for p in check.problems] == ["logs/worker.jsonl"]
    assert "chunk 'logs/worker.jsonl'" in check.problems[0].reason and message in check.problems[0].reason
    assert not (tmp_path / "restored" / "logs" / "worker.jsonl").exists()
    assert not list((tmp_path / "restored").rglob(".partial-*"))


def test_a_damaged_journal_line_is_named_and_its_chunk_reported(job_dir: Path) -> None:
    """A journal line that is not a recipe is reported with its place, and its chunk as missing its recipe."""
    [journal] = [path for path in (job_dir / "recipes").iterdir() if b'"random.bin"' in path.read_bytes()]
    journal.write_bytes(b"".join(b"{\n" if b'"random.bin"' in line else line + b"\n"
                                 for line in journal.read_bytes().splitlines()))
    check = check_job(job_dir)
    assert [p.item_id for p in check.problems] == ["recipes", "random.bin"]
    assert "is not a recipe" in check.problems[0].reason and "rerun the job" in check.problems[0].reason
    assert "its recipe is missing" in check.problems[1].reason


def test_a_corrupt_per_chunk_recipe_of_an_older_folder_is_named(tmp_path: Path) -> None:
    """In a folder written before the journals, a recipe that is not JSON is reported for its chunk, with the fix."""
    job = tmp_path / "format-1"
    shutil.copytree(Path(__file__).parents[1] / "data" / "format-1-jobs" / "format-1", job)
    (job / "chunks" / "random.bin.recipe.json").write_text("{")
    check = check_job(job)
    assert [p.item_id for p in check.problems] == ["random.bin"]
    assert "is not a valid recipe" in check.problems[0].reason


def test_a_manifest_line_with_a_traversal_id_is_refused(job_dir: Path, tmp_path: Path) -> None:
    """A manifest that tries to write outside OUT_DIR is reported, and nothing is written there."""
    line = {"chunk_id": "../../escaped", "original_sha256": "0" * 64, "original_size": 1,
            "compressed_sha256": "0" * 64, "compressed_size": 1}
    with (job_dir / "manifest.jsonl").open("a") as manifest:
        manifest.write(json.dumps(line) + "\n")
    check = check_job(job_dir, tmp_path / "restored")
    assert check.problems[0].item_id == "manifest line 9"
    assert "has the segment '..'" in check.problems[0].reason
    assert not (tmp_path / "escaped").exists()


def test_a_folder_without_manifest_says_what_to_give(tmp_path: Path) -> None:
    """Pointing restore at the wrong folder explains what a job folder is."""
    with pytest.raises(CorruptOutputError, match="give a job folder"):
        check_job(tmp_path)
