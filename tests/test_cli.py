"""The `colabflow` command as a user runs it: subprocesses, exit codes and output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from pytest_httpserver import HTTPServer

from flows.server_reaper import servers_of
from tests.conftest import make_chunks
from tests.github_fake import files_under, gated_repository
from tests.pool import recipes_at
from tests.servers import server_environment, wait_until

COLABFLOW = [sys.executable, "-m", "flows.cli"]
ROOT = Path(__file__).parent.parent


def colabflow(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COLABFLOW, *arguments], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


@pytest.fixture
def client_env(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    """Environment of a CLI process that uses the session's server."""
    return server_environment(tmp_path / "client-home", prefect_api)


def last_json_line(output: str) -> dict[str, object]:
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("command", ["compress", "restore", "verify"])
def test_every_command_has_help(command: str) -> None:
    """`colabflow COMMAND --help` exits 0 and describes the command."""
    result = colabflow(command, "--help")
    assert result.returncode == 0 and "usage: colabflow " + command in result.stdout


def test_compress_json_then_restore_and_verify(sample_source: Path, tmp_path: Path, client_env: dict[str, str]) -> None:
    """The last stdout line is the report; the log says which codec runs and why; restore and verify agree."""
    result = colabflow("compress", str(sample_source), str(tmp_path / "out"), "--job", "cli", "--json", env=client_env)
    assert result.returncode == 0, result.stderr
    assert "colabflow.codecs - codec auto: ISA-L on the CPU, because the GPU codec cannot run: no CUDA GPU" in result.stderr
    report = last_json_line(result.stdout)
    assert (report["compressed"], report["failed"]) == (8, [])
    restored = colabflow("restore", str(tmp_path / "out" / "cli"), str(tmp_path / "restored"))
    assert restored.returncode == 0 and "restored 8 of 8 items" in restored.stdout
    assert (tmp_path / "restored" / "données brutes" / "résumé été.txt").read_bytes() == (
        sample_source / "données brutes" / "résumé été.txt"
    ).read_bytes()
    assert colabflow("verify", str(tmp_path / "out" / "cli")).returncode == 0


def test_a_failed_chunk_makes_the_exit_status_non_zero(sample_source: Path, tmp_path: Path, client_env: dict[str, str]) -> None:
    """One bad name: the others are compressed, the report lists it, and the exit status is 1."""
    (sample_source / "tab\tname").write_bytes(b"x")
    result = colabflow("compress", str(sample_source), str(tmp_path / "out"), "--job", "j", "--json", env=client_env)
    assert result.returncode == 1
    report = last_json_line(result.stdout)
    assert report["compressed"] == 8 and report["failed"][0]["item_id"] == "tab\tname"  # type: ignore[index]
    quarantine = (tmp_path / "out" / "j" / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantine) == 1 and "control character" in json.loads(quarantine[0])["reason"]
    status = colabflow("status", str(tmp_path / "out" / "j"), env=client_env)
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)
    assert (summary["items_done"], summary["items_total"], summary["quarantined"]) == (8, 9, 1)
    assert summary["run"]["state"] == "Completed" and summary["run"]["attempts"] == 1
    assert summary["host"] and summary["attempt"] == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--level", "12"], "error: level: Input should be less than or equal to 9 (got 12)"),
        (["--codec", "brotli"], "error: codec: Input should be 'auto', 'cpu' or 'gpu' (got 'brotli')"),
        (["--webhook", "ftp://host/x"], "webhook url must be an http:// or https:// URL"),
        (["--github-repo", "o/r"], "--github-repo needs --github-token-block"),
    ],
)
def test_bad_arguments_exit_2_before_any_work(tmp_path: Path, arguments: list[str], message: str) -> None:
    """Bad parameters are refused with the field named, and nothing is written."""
    result = colabflow("compress", str(tmp_path), str(tmp_path / "out"), "--job", "j", *arguments)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_source_exits_2_naming_the_path(tmp_path: Path, client_env: dict[str, str]) -> None:
    """A source that does not exist is named in the error."""
    result = colabflow("compress", str(tmp_path / "absent"), str(tmp_path / "out"), "--job", "j", env=client_env)
    assert result.returncode == 2
    assert f"source '{tmp_path / 'absent'}' does not exist" in result.stderr


def test_verify_names_a_corrupt_chunk_and_exits_1(sample_source: Path, tmp_path: Path, client_env: dict[str, str]) -> None:
    """A damaged member makes verify exit 1 and name the chunk."""
    colabflow("compress", str(sample_source), str(tmp_path / "out"), "--job", "j", env=client_env)
    member = tmp_path / "out" / "j" / "chunks" / "random.bin.gz"
    member.write_bytes(member.read_bytes()[:-10])
    result = colabflow("verify", str(tmp_path / "out" / "j"))
    assert result.returncode == 1
    assert "chunk 'random.bin'" in result.stderr and "1 problems" in result.stdout


def test_a_killed_run_resumes_redoing_only_what_was_unfinished(tmp_path: Path, client_env: dict[str, str],
                                                              httpserver: HTTPServer) -> None:
    """kill -9 while batch 3 waits at its gate, rerun: the 3 batches before it are reused, the rest compressed,
    and the killed attempt's spend is in the ledger."""
    chunks, batch, gated_batch = 120, 10, 3
    done_at_kill = gated_batch * batch
    files = files_under(make_chunks(tmp_path / "source", count=chunks, size=16 * 1024), "chunks")
    with gated_repository(httpserver, files, sorted(files)[gated_batch * batch]) as served:
        command = [*COLABFLOW, "compress", served.location("chunks"), str(tmp_path / "out"), "--job", "big",
                   "--batch-size", str(batch), "--github-api-url", served.api_url, "--json"]
        ledger = tmp_path / "out" / "ledger.jsonl"
        process = subprocess.Popen(command, env=client_env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_until(served.gate.reached.is_set, 120, 0.02, f"batch {gated_batch} to reach its gate")
        finally:
            os.killpg(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        killed_attempt = [json.loads(line) for line in ledger.read_text().splitlines()]
        assert len(killed_attempt) == 1 and killed_attempt[0]["seconds"] > 0
        assert len(recipes_at(tmp_path / "out" / "big")) == done_at_kill

        served.gate.release()
        result = subprocess.run(command, env=client_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = last_json_line(result.stdout)
    assert result.returncode == 0, result.stderr
    assert (report["reused"], report["compressed"], report["failed"]) == (done_at_kill, chunks - done_at_kill, [])
    assert colabflow("verify", str(tmp_path / "out" / "big")).returncode == 0
    both = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [entry["flow_run_id"] for entry in both][0] == killed_attempt[0]["flow_run_id"] and len(both) == 2


def test_a_fresh_machine_runs_on_the_embedded_temporary_server(sample_source: Path, tmp_path: Path) -> None:
    """No PREFECT_API_URL and an empty PREFECT_HOME: the first run migrates and still succeeds."""
    env = server_environment(tmp_path / "fresh-home")
    env.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    result = colabflow("compress", str(sample_source), str(tmp_path / "out"), "--job", "first", "--json", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert last_json_line(result.stdout)["compressed"] == 8


def test_the_command_module_imports_no_prefect_before_main_sets_its_environment() -> None:
    """Prefect reads its settings once, at import: `main` must set PREFECT_LOGGING_EXTRA_LOGGERS first."""
    probe = "import sys, flows.cli; print(sorted(name for name in sys.modules if name.split('.')[0] == 'prefect'))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_command_module_imports_neither_torch_nor_numpy() -> None:
    """Importing torch takes about a second; only the iterate command needs it, so no other command pays it."""
    probe = "import sys, flows.cli; print(sorted({name.split('.')[0] for name in sys.modules} & {'torch', 'numpy'}))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_a_command_killed_with_sigkill_leaves_no_temporary_server_behind(tmp_path: Path) -> None:
    """The out-of-memory killer takes the command alone: its watcher stops the orphaned server, then exits."""
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "held.py").write_text(
        "import os, time\n"
        "def hold(batch):\n"
        f"    open({str(tmp_path / 'reached')!r}, 'w').close()\n"
        "    while True:\n"
        "        time.sleep(0.05)\n"
    )
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "a"}) + "\n")
    env = {**server_environment(tmp_path / "home"), "PYTHONPATH": str(tmp_path / "lab")}
    command = subprocess.Popen([*COLABFLOW, "map", str(items), str(tmp_path / "out"), "--job", "held", "--function",
                                "held:hold"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_until(lambda: (tmp_path / "reached").exists(), 240, 0.05, "the job to reach the function")
        [server] = servers_of(psutil.Process(command.pid))
        watchers = [process for process in psutil.process_iter(["cmdline"])
                    if (process.info["cmdline"] or [])[-2:] == ["flows.server_reaper", str(command.pid)]]
        assert len(watchers) == 1
        command.kill()
        assert command.wait() == -signal.SIGKILL
        wait_until(lambda: not server.is_running() and not watchers[0].is_running(), 30, 0.1,
                   "the watcher to stop the orphaned server and exit")
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
