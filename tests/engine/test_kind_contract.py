"""The job-kind contract: every registered kind, through the real `colabflow` command and a real server.

A rerun does no work; a kill -9 while a batch waits at a gate the test opens (the kind's
`gated_job`), then a rerun, redoes only that batch and the ones after it and ends byte-identical
to an undisturbed run; a poison item is quarantined while the rest complete;
verify catches a tampered output; a secret set in a block reaches neither the job folder nor
the run's logs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tasks.engine.kinds import BatchKind, job_kind, registered_kinds
from tests.engine.kind_contract import KindUnderTest, contract_for
from tests.secret_checks import assert_secret_nowhere
from tests.servers import server_environment, wait_until

ROOT = Path(__file__).resolve().parents[2]
COLABFLOW = [sys.executable, "-m", "flows.cli"]
GATED_BATCH = 3  # the batch in flight at the kill: three are committed before it


@pytest.fixture(params=[name for name in registered_kinds() if isinstance(job_kind(name), BatchKind)])
def kind(request: pytest.FixtureRequest) -> KindUnderTest:
    """Each registered batch kind's adapter; a kind without one fails here (iterative jobs have their own
    suite of the same promises, tests/iterations/test_iterate_command.py)."""
    return contract_for(request.param)


@pytest.fixture
def client_env(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    """Environment of a CLI process that uses the session's server."""
    return server_environment(tmp_path / "client-home", prefect_api)


def run(arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COLABFLOW, *arguments], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def report_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def done_markers(job_dir: Path) -> dict[str, bytes]:
    folder = job_dir / ".checkpoints" / "batches"
    return {path.name: path.read_bytes() for path in folder.glob("*.json")} if folder.is_dir() else {}


def test_a_rerun_does_no_work(kind: KindUnderTest, tmp_path: Path, client_env: dict[str, str]) -> None:
    """The second run of a finished job reuses every item and every batch."""
    sources = kind.make_source(tmp_path / "source")
    command = kind.command(sources, tmp_path / "out", "again")
    first = run(command, client_env)
    assert first.returncode == 0, first.stderr[-3000:]
    second = kind.counts(report_of(run(command, client_env)))
    assert (second.done, second.reused, second.failed) == (0, kind.items, [])
    assert second.batches_reused == kind.items // kind.batch_size


def test_a_kill_mid_job_redoes_at_most_the_batch_in_flight(kind: KindUnderTest, tmp_path: Path,
                                                           client_env: dict[str, str], httpserver: HTTPServer) -> None:
    """One task run carries every batch; kill -9 it while batch GATED_BATCH waits at its gate; the rerun loads the
    commits before it, redoes the batch in flight and the rest, and ends identical to an undisturbed run."""
    with kind.gated_job(tmp_path / "source", GATED_BATCH, httpserver) as job:
        command = job.command(tmp_path / "out", "job", "--task-runs", "1")
        job_dir = tmp_path / "out" / "job"
        process = subprocess.Popen([*COLABFLOW, *command], env=client_env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_until(job.reached, 120, 0.02, f"batch {GATED_BATCH} to reach its gate")
        finally:
            os.killpg(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        committed = done_markers(job_dir)
        assert len(committed) == GATED_BATCH

        job.release()
        rerun = kind.counts(report_of(run(command, client_env)))
        reference = run(job.command(tmp_path / "reference", "job"), client_env)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert rerun.failed == [] and (rerun.reused, rerun.done) == (GATED_BATCH * kind.batch_size,
                                                                 kind.items - GATED_BATCH * kind.batch_size)
    assert rerun.batches_reused == GATED_BATCH
    assert {name: done_markers(job_dir)[name] for name in committed} == committed
    assert (job_dir / "manifest.jsonl").read_bytes() == (tmp_path / "reference" / "job" / "manifest.jsonl").read_bytes()
    assert kind.outputs(job_dir) == kind.outputs(tmp_path / "reference" / "job")


def test_a_poison_item_is_quarantined_while_the_rest_complete(kind: KindUnderTest, tmp_path: Path,
                                                              client_env: dict[str, str]) -> None:
    """The job exits 1, names the poison item alone in its report and in quarantine.jsonl."""
    sources = kind.make_source(tmp_path / "source")
    poison = kind.add_poison_item(tmp_path / "source")
    result = run(kind.command(sources, tmp_path / "out", "poison"), client_env)
    counts = kind.counts(report_of(result))
    assert result.returncode == 1
    assert (counts.done, counts.failed) == (kind.items, [poison])
    quarantine = (tmp_path / "out" / "poison" / "quarantine.jsonl").read_text().splitlines()
    assert [json.loads(line)["item_id"] for line in quarantine] == [poison]


def test_verify_catches_a_tampered_output(kind: KindUnderTest, tmp_path: Path, client_env: dict[str, str]) -> None:
    """A finished job verifies; once one output is changed, verify exits 1 and reports a problem (an output
    may hold several items: a map batch file is one output for its items)."""
    sources = kind.make_source(tmp_path / "source")
    assert run(kind.command(sources, tmp_path / "out", "tamper"), client_env).returncode == 0
    job_dir = str(tmp_path / "out" / "tamper")
    assert run(["verify", job_dir], client_env).returncode == 0
    kind.tamper(tmp_path / "out" / "tamper")
    checked = run(["verify", job_dir], client_env)
    assert checked.returncode == 1 and re.search(r", [1-9]\d* problems$", checked.stdout.strip())


def test_a_secret_in_a_block_reaches_neither_the_job_folder_nor_the_logs(
    kind: KindUnderTest, tmp_path: Path, client_env: dict[str, str], httpserver: HTTPServer,
) -> None:
    """A webhook key in a Secret block signs the callback, and appears in no job file and no log line."""
    from prefect.blocks.system import Secret

    canary = "contract-canary-7f3a9c1e5d"
    Secret(value=canary).save("contract-webhook-key", overwrite=True)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    sources = kind.make_source(tmp_path / "source")
    command = kind.command(sources, tmp_path / "out", "secret",
                           *kind.webhook_arguments(httpserver.url_for("/hook"), "contract-webhook-key"))
    result = run(command, {**client_env, "PREFECT_LOGGING_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(httpserver.log) == 1
    assert_secret_nowhere(canary, tmp_path / "out" / "secret", result.stdout + result.stderr)
