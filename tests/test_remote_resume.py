"""The test that matters for remote storage: a job killed on one machine finishes on another.

Source on GitHub (pytest-httpserver), destination and checkpoints on GCS (gcp-storage-emulator).
Each "machine" is a process with its own fresh, empty PREFECT_HOME and a temporary Prefect
server; the first one's files are all deleted after the kill.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from pytest_httpserver import HTTPServer

from tasks.gcs import GcsStore
from tasks.stores import StorageAccess
from tests.gcs_emulator import BUCKET, gcs_emulator
from tests.github_fake import serve_repository
from tests.servers import server_environment, wait_until

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = 300
BATCH = 10


def chunk(index: int) -> bytes:
    line = f"remote chunk {index:04d}: colabflow resumes where the last machine stopped\n".encode()
    return (line * 400)[: 16 * 1024 + index]


def machine(home: Path, emulator: str) -> dict[str, str]:
    env = server_environment(home)
    env.pop("PREFECT_API_URL", None)
    env["STORAGE_EMULATOR_HOST"] = emulator
    return env


def test_a_job_killed_on_one_machine_finishes_on_another_redoing_one_batch(tmp_path: Path, httpserver: HTTPServer) -> None:
    repository = serve_repository(httpserver, {f"corpus/part-{index:04d}.txt": chunk(index) for index in range(CHUNKS)})
    with gcs_emulator() as emulator:
        command = [
            str(ROOT / ".venv" / "bin" / "colabflow"), "compress", f"github://{repository}@main/corpus",
            f"gs://{BUCKET}/jobs", "--job", "remote", "--batch-size", str(BATCH), "--json",
            "--github-api-url", httpserver.url_for("").rstrip("/"),
        ]
        first_home = tmp_path / "machine-1"
        first = subprocess.Popen(command, env=machine(first_home, emulator), cwd=tmp_path, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.environ["STORAGE_EMULATOR_HOST"] = emulator
        try:
            bucket = GcsStore(BUCKET, StorageAccess())

            def checkpoints() -> int:
                return sum(1 for _ in bucket.list("jobs/remote/.checkpoints"))

            wait_until(lambda: checkpoints() >= 3, 240, 0.05, "3 batch checkpoints on GCS")
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        assert first.wait() == -signal.SIGKILL
        shutil.rmtree(first_home)
        checkpointed = sum(1 for _ in bucket.list("jobs/remote/.checkpoints"))
        done_at_kill = sum(1 for info in bucket.list("jobs/remote/chunks") if info.key.endswith(".recipe.json"))
        assert BATCH * checkpointed <= done_at_kill < CHUNKS

        second = subprocess.run(command, env=machine(tmp_path / "machine-2", emulator), cwd=tmp_path,
                                capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]
        report = json.loads(second.stdout.strip().splitlines()[-1])
        assert report["failed"] == []
        assert (report["reused"], report["compressed"]) == (done_at_kill, CHUNKS - done_at_kill), "finished chunks were redone"
        assert report["batches_reused"] == checkpointed
        verify = subprocess.run([command[0], "verify", f"gs://{BUCKET}/jobs/remote"], env=machine(tmp_path / "v", emulator),
                                capture_output=True, text=True, timeout=300)
        assert verify.returncode == 0, verify.stderr
        assert f"verified {CHUNKS} of {CHUNKS} chunks" in verify.stdout
        status = subprocess.run([command[0], "status", f"gs://{BUCKET}/jobs/remote", "--offline"],
                                env=machine(tmp_path / "s", emulator), capture_output=True, text=True, timeout=300)
        assert status.returncode == 0, status.stderr
        summary = json.loads(status.stdout)
        assert (summary["chunks_done"], summary["chunks_total"], summary["quarantined"]) == (CHUNKS, CHUNKS, 0)
