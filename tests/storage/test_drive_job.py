"""A whole job with its source, destination and checkpoints on Google Drive (the fake Drive v3 server)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import uuid
from pathlib import Path

from blocks.drive import DriveFolder
from tests.drive_server import DriveFile, FakeDrive, fake_drive
from tests.servers import server_environment

ROOT = Path(__file__).resolve().parents[2]
COLABFLOW = str(ROOT / ".venv" / "bin" / "colabflow")


def run(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COLABFLOW, *arguments], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def upload_tree(drive: FakeDrive, parent: str, folder: Path) -> None:
    """Put a local folder's files on the fake Drive below `parent`, folders as Drive folders."""
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            upload_tree(drive, drive.add_folder(path.name, parent), path)
        else:
            drive.add_file(path.name, parent, path.read_bytes())


def files_below(drive: FakeDrive, folder: str) -> list[DriveFile]:
    """Every file (not folder) below a folder of the fake Drive."""
    found: list[DriveFile] = []
    for item in list(drive.files.values()):
        if folder in item.parents:
            found += [item] if item.content is not None else files_below(drive, item.id)
    return found


def test_a_job_on_drive_resumes_from_drive_and_verifies_there(
    prefect_api: str, sample_source: Path, tmp_path: Path
) -> None:
    """compress gdrive:// to gdrive://, rerun (every batch from Drive checkpoints), verify and restore from Drive."""
    with fake_drive() as drive:
        block = f"fake-drive-{uuid.uuid4().hex[:8]}"
        DriveFolder(api_endpoint=drive.endpoint).save(block)
        inputs = drive.add_folder("inputs", drive.root)
        upload_tree(drive, inputs, sample_source)
        drive.add_document("meeting notes", inputs)
        env = server_environment(tmp_path / "home", prefect_api)
        job = f"gdrive://{drive.root}/jobs/drive-job"
        compress = [f"gdrive://{drive.root}/inputs", f"gdrive://{drive.root}/jobs", "--job", "drive-job",
                    "--drive", block, "--batch-size", "3", "--json"]

        first = run("compress", *compress, env=env)
        assert first.returncode == 0, first.stderr[-3000:]
        report = json.loads(first.stdout.strip().splitlines()[-1])
        assert (report["compressed"], report["failed"]) == (8, [])
        assert "skipping inputs/meeting notes: a Google Docs/Sheets/Slides file" in first.stderr
        assert drive.file_at("jobs/drive-job/manifest.jsonl").content.count(b"\n") == 8
        checkpoints = [item for item in drive.files.values() if item.name.startswith("batch-")]
        assert len(checkpoints) == report["batches_total"] == 3
        job_files = files_below(drive, drive.file_at("jobs/drive-job").id)
        assert {item.name for item in job_files} >= {"manifest.jsonl", "random.bin.gz"}
        assert len([item for item in job_files if re.fullmatch(r"[0-9a-f]{40}\.jsonl", item.name)]) == 3
        assert {(item.name, item.app_properties.get("colabflow_job")) for item in job_files} == {
            (item.name, "drive-job") for item in job_files}

        again = run("compress", *compress, env=env)
        rerun = json.loads(again.stdout.strip().splitlines()[-1])
        assert (rerun["compressed"], rerun["reused"], rerun["batches_reused"]) == (0, 8, 3)
        names = [(tuple(item.parents), item.name) for item in drive.files.values() if not item.trashed]
        assert len(names) == len(set(names)), "a name appears twice in one Drive folder"

        verify = run("verify", job, "--drive", block, env=env)
        assert verify.returncode == 0 and "verified 8 of 8 items" in verify.stdout, verify.stderr
        restored = tmp_path / "restored"
        assert run("restore", job, str(restored), "--drive", block, env=env).returncode == 0
        for original in sample_source.rglob("*"):
            if original.is_file():
                copy = restored / original.relative_to(sample_source)
                assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()
        member = drive.file_at("jobs/drive-job/chunks/random.bin.gz").content
        (tmp_path / "member.gz").write_bytes(member)
        assert subprocess.run(["gzip", "-t", str(tmp_path / "member.gz")]).returncode == 0
