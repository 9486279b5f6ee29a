"""The test that matters for remote storage: a job killed on one machine finishes on another.

Source on GitHub (pytest-httpserver, behind a proxy that holds batch 3's first chunk until the
test releases it, so the kill lands while that batch is in flight); destination and checkpoints
on GCS (gcp-storage-emulator) or on Google Drive (the fake Drive v3 server, reached through a
saved DriveFolder block). Each "machine" is a process with its own fresh, empty PREFECT_HOME,
temporary Prefect server, working directory and TMPDIR, all inside one folder that is deleted
after the kill.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tasks.storage.gcs import GcsStore
from tasks.storage.stores import StorageAccess, read_bytes
from tests.drive_server import FakeDrive, fake_drive
from tests.fault_proxy import Hold
from tests.gcs_emulator import BUCKET, gcs_emulator
from tests.github_fake import gated_repository
from tests.servers import server_environment, wait_until

ROOT = Path(__file__).resolve().parents[2]
GATED_BATCH = 3  # the batch in flight at the kill: three are committed before it
COLABFLOW = str(ROOT / ".venv" / "bin" / "colabflow")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
# A machine that reaches Drive: it saves the DriveFolder block in its own fresh Prefect, then runs
# each colabflow command given as a JSON list, all against that one temporary server.
DRIVE_MACHINE = """
import json, sys
from blocks.drive import DriveFolder
from flows.cli import main
DriveFolder(api_endpoint=sys.argv[1]).save(sys.argv[2])
for command in sys.argv[3:]:
    if main(json.loads(command)):
        sys.exit(1)
"""


def chunk(index: int) -> bytes:
    line = f"remote chunk {index:04d}: colabflow resumes where the last machine stopped\n".encode()
    return (line * 400)[: 16 * 1024 + index]


def machine(home: Path, **extra: str) -> dict[str, str]:
    """A fresh machine: PREFECT_HOME, TMPDIR (and the working directory) all inside `home`."""
    (home / "tmp").mkdir(parents=True)
    env = server_environment(home)
    env.pop("PREFECT_API_URL", None)
    env.update(TMPDIR=str(home / "tmp"), **extra)
    return env


@contextmanager
def gated_source(httpserver: HTTPServer, chunks: int, batch: int) -> Iterator[tuple[list[str], Hold]]:
    """`compress` arguments for a GitHub repository of `chunks` files, and the gate its batch GATED_BATCH waits at."""
    files = {f"corpus/part-{index:04d}.txt": chunk(index) for index in range(chunks)}
    with gated_repository(httpserver, files, sorted(files)[GATED_BATCH * batch]) as served:
        yield ["compress", served.location("corpus"), "--github-api-url", served.api_url], served.gate


def kill(process: subprocess.Popen[bytes], home: Path) -> None:
    """SIGKILL the machine's whole process group, then delete every file it had."""
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    shutil.rmtree(home)


def assert_resumed(report: dict[str, object], chunks: int, done_at_kill: int, checkpointed: int) -> None:
    """The second machine redid nothing that had finished: only the chunks not yet done were compressed."""
    assert report["failed"] == []
    assert (report["reused"], report["compressed"]) == (done_at_kill, chunks - done_at_kill), (
        f"finished chunks were redone: {done_at_kill} were done at the kill, {checkpointed} batches checkpointed")
    assert report["batches_reused"] == checkpointed


@pytest.mark.slow
def test_a_job_killed_on_one_machine_finishes_on_another_redoing_one_batch(tmp_path: Path, httpserver: HTTPServer) -> None:
    """github:// to gs://: killed while batch 3 waits at its gate, resumed on a fresh machine, verified and read back."""
    chunks, batch = 120, 10
    with gcs_emulator() as emulator, gated_source(httpserver, chunks, batch) as (source, gate):
        command = [COLABFLOW, *source, f"gs://{BUCKET}/jobs", "--job", "remote", "--batch-size", str(batch), "--json"]
        first_home = tmp_path / "machine-1"
        first = subprocess.Popen(command, env=machine(first_home, STORAGE_EMULATOR_HOST=emulator), cwd=first_home,
                                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(gate.reached.is_set, 240, 0.05, f"batch {GATED_BATCH} to reach its gate")
        finally:
            kill(first, first_home)
        os.environ["STORAGE_EMULATOR_HOST"] = emulator
        try:
            bucket = GcsStore(BUCKET, StorageAccess())
            checkpointed = sum(1 for _ in bucket.list("jobs/remote/.checkpoints/batches"))
            done_at_kill = sum(len(read_bytes(bucket, info.key).splitlines()) for info in bucket.list("jobs/remote/recipes"))
        finally:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        assert (checkpointed, done_at_kill) == (GATED_BATCH, GATED_BATCH * batch)

        gate.release()

        second_home = tmp_path / "machine-2"
        second = subprocess.run(command, env=machine(second_home, STORAGE_EMULATOR_HOST=emulator), cwd=second_home,
                                capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]
        assert_resumed(json.loads(second.stdout.strip().splitlines()[-1]), chunks, done_at_kill, checkpointed)
        verify = subprocess.run([COLABFLOW, "verify", f"gs://{BUCKET}/jobs/remote"],
                                env=machine(tmp_path / "v", STORAGE_EMULATOR_HOST=emulator),
                                capture_output=True, text=True, timeout=300)
        assert verify.returncode == 0, verify.stderr
        assert f"verified {chunks} of {chunks} items" in verify.stdout
        status = subprocess.run([COLABFLOW, "status", f"gs://{BUCKET}/jobs/remote", "--offline"],
                                env=machine(tmp_path / "s", STORAGE_EMULATOR_HOST=emulator),
                                capture_output=True, text=True, timeout=300)
        assert status.returncode == 0, status.stderr
        summary = json.loads(status.stdout)
        assert (summary["items_done"], summary["items_total"], summary["quarantined"]) == (chunks, chunks, 0)


def count(drive: FakeDrive, wanted: Callable[[str], bool]) -> int:
    """Files (not folders, not trashed) of the fake Drive whose names are `wanted`."""
    with drive.lock:
        return sum(1 for item in drive.files.values()
                   if item.content is not None and not item.trashed and wanted(item.name))


JOURNAL_NAME = re.compile(r"[0-9a-f]{40}\.jsonl")  # tasks.compression.outputs.journal_name


def journaled_on(drive: FakeDrive) -> int:
    """Chunks the recipe journals on the fake Drive mark done."""
    with drive.lock:
        return sum(len(item.content.splitlines()) for item in drive.files.values()
                   if item.content is not None and not item.trashed and JOURNAL_NAME.fullmatch(item.name))


def checkpoints_on(drive: FakeDrive) -> int:
    return count(drive, lambda name: name.startswith("batch-"))


@pytest.mark.slow
def test_a_job_killed_on_one_machine_finishes_on_another_from_google_drive(tmp_path: Path,
                                                                           httpserver: HTTPServer) -> None:
    """github:// to gdrive://: killed while batch 3 waits at its gate, resumed on a fresh machine, verified on Drive."""
    chunks, batch = 40, 4
    with fake_drive() as drive, gated_source(httpserver, chunks, batch) as (source, gate):
        job = f"gdrive://{drive.root}/jobs/remote"
        compress = [*source, f"gdrive://{drive.root}/jobs", "--job", "remote", "--drive", "fake-drive",
                    "--batch-size", str(batch), "--json"]
        command = [PYTHON, "-c", DRIVE_MACHINE, drive.endpoint, "fake-drive", json.dumps(compress)]
        first_home = tmp_path / "machine-1"
        first = subprocess.Popen(command, env=machine(first_home), cwd=first_home, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(gate.reached.is_set, 240, 0.02, f"batch {GATED_BATCH} to reach its gate")
        finally:
            kill(first, first_home)
        wait_until(lambda: drive.busy == 0, 30, 0.01, "the fake Drive done with the killed machine's last request")
        checkpointed = checkpoints_on(drive)
        done_at_kill = journaled_on(drive)
        assert (checkpointed, done_at_kill) == (GATED_BATCH, GATED_BATCH * batch)

        gate.release()

        second_home = tmp_path / "machine-2"
        verify = json.dumps(["verify", job, "--drive", "fake-drive"])
        second = subprocess.run([*command, verify], env=machine(second_home), cwd=second_home,
                                capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]
        lines = second.stdout.strip().splitlines()
        assert_resumed(json.loads(next(line for line in lines if line.startswith("{"))), chunks, done_at_kill,
                       checkpointed)
        assert f"verified {chunks} of {chunks} items" in lines[-1], second.stdout[-2000:]
        names = Counter((tuple(item.parents), item.name) for item in drive.files.values() if not item.trashed)
        assert [name for name, seen in names.items() if seen > 1] == [], "a name appears twice in one Drive folder"
