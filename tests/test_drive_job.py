"""A whole job with its destination and checkpoints on Google Drive (the fake Drive v3 server)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

from blocks.drive import DriveFolder
from tests.drive_server import fake_drive
from tests.servers import server_environment

ROOT = Path(__file__).resolve().parents[1]
COLABFLOW = str(ROOT / ".venv" / "bin" / "colabflow")


def run(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COLABFLOW, *arguments], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_job_on_drive_resumes_from_drive_and_verifies_there(
    prefect_api: str, sample_source: Path, tmp_path: Path
) -> None:
    """compress to gdrive://, rerun (every batch from Drive checkpoints), verify and restore from Drive."""
    with fake_drive() as drive:
        block = f"fake-drive-{uuid.uuid4().hex[:8]}"
        DriveFolder(api_endpoint=drive.endpoint).save(block)
        env = server_environment(tmp_path / "home", prefect_api)
        job = f"gdrive://{drive.root}/jobs/drive-job"
        compress = [str(sample_source), f"gdrive://{drive.root}/jobs", "--job", "drive-job", "--drive", block,
                    "--batch-size", "3", "--json"]

        first = run("compress", *compress, env=env)
        assert first.returncode == 0, first.stderr[-3000:]
        report = json.loads(first.stdout.strip().splitlines()[-1])
        assert (report["compressed"], report["failed"]) == (8, [])
        assert drive.file_at("jobs/drive-job/manifest.jsonl").content.count(b"\n") == 8
        checkpoints = [item for item in drive.files.values() if item.name.startswith("batch-")]
        assert len(checkpoints) == report["batches_total"] == 3

        again = run("compress", *compress, env=env)
        rerun = json.loads(again.stdout.strip().splitlines()[-1])
        assert (rerun["compressed"], rerun["reused"], rerun["batches_reused"]) == (0, 8, 3)
        names = [(tuple(item.parents), item.name) for item in drive.files.values() if not item.trashed]
        assert len(names) == len(set(names)), "a name appears twice in one Drive folder"

        verify = run("verify", job, "--drive", block, env=env)
        assert verify.returncode == 0 and "verified 8 of 8 chunks" in verify.stdout, verify.stderr
        restored = tmp_path / "restored"
        assert run("restore", job, str(restored), "--drive", block, env=env).returncode == 0
        for original in sample_source.rglob("*"):
            if original.is_file():
                copy = restored / original.relative_to(sample_source)
                assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()
        member = drive.file_at("jobs/drive-job/chunks/random.bin.gz").content
        (tmp_path / "member.gz").write_bytes(member)
        assert subprocess.run(["gzip", "-t", str(tmp_path / "member.gz")]).returncode == 0
