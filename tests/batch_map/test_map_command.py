"""`colabflow map` from the command line: bad inputs end with exit 2 and a message, before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.servers import server_environment

ROOT = Path(__file__).resolve().parents[2]
MEASURE = "tasks.batch_map.examples.text:measure"


def colabflow(arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *arguments], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_duplicate_ids_are_refused_naming_their_lines_and_nothing_is_written(prefect_api: str, tmp_path: Path) -> None:
    """Repeated ids stop the job at planning: exit 2, the ids and lines in the message, no output file."""
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": name, "text": "t"}) + "\n" for name in ["a", "b", "a", "c"]))
    env = server_environment(tmp_path / "home", prefect_api)
    result = colabflow(["map", str(items), str(tmp_path / "out"), "--job", "dup", "--function", MEASURE], env)
    assert result.returncode == 2
    assert "error: items file" in result.stderr and "1 ids appear more than once ('a' at lines 1, 3)" in result.stderr
    assert not (tmp_path / "out" / "dup" / "outputs").exists()


def test_parameters_that_cannot_work_are_refused_before_a_flow_run() -> None:
    """A malformed --param, a function that does not import, and an unknown output format each exit 2 at once."""
    cases = [
        (["--param", "novalue"], "--param 'novalue' is not KEY=VALUE"),
        (["--function", "missing_package.module:f"], "module 'missing_package.module' does not import"),
        (["--output", "pickle"], "output: Input should be 'jsonl', 'npz' or 'safetensors' (got 'pickle')"),
    ]
    for extra, message in cases:
        arguments = ["map", "items.jsonl", "out", "--job", "j", "--function", MEASURE, *extra]
        result = colabflow(arguments, {"PATH": "", "PREFECT_API_URL": "http://127.0.0.1:9/api"})
        assert result.returncode == 2 and message in result.stderr, (extra, result.stderr[-2000:])


def run_json(arguments: list[str], env: dict[str, str]) -> tuple[int, dict[str, object]]:
    result = colabflow([*arguments, "--json"], env)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


def test_a_job_of_zero_items_is_refused_before_any_work(prefect_api: str, tmp_path: Path) -> None:
    """An empty folder, like an empty items file, exits 2 saying so; no job folder is started."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank.jsonl").write_text("\n")
    env = server_environment(tmp_path / "home", prefect_api)
    for items, message in ((tmp_path / "empty", "contains no files; point it at a folder that holds the files"),
                           (tmp_path / "blank.jsonl", "holds no records; expected one JSON object per line")):
        result = colabflow(["map", str(items), str(tmp_path / "out"), "--job", "none", "--function", MEASURE], env)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "out" / "none" / "manifest.jsonl").exists()


def test_a_record_changed_between_runs_redoes_its_batch_and_only_that_one(prefect_api: str, tmp_path: Path) -> None:
    """Batches of 4 over 12 records; record r5 changes: the rerun runs batch 2 of 3 again, reuses the others."""
    items = tmp_path / "items.jsonl"
    lines = [{"id": f"r{index}", "text": "a b"} for index in range(12)]
    items.write_text("".join(json.dumps(line) + "\n" for line in lines))
    env = server_environment(tmp_path / "home", prefect_api)
    arguments = ["map", str(items), str(tmp_path / "out"), "--job", "changed", "--function", MEASURE, "--batch-size", "4"]
    assert run_json(arguments, env)[1]["batches_run"] == 3
    lines[5]["text"] = "a b c d"
    items.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, report = run_json(arguments, env)
    assert code == 0
    assert (report["batches_run"], report["batches_reused"], report["items_done"], report["items_reused"]) == (1, 2, 4, 8)
    results = {}
    for line in (tmp_path / "out" / "changed" / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        output = tmp_path / "out" / "changed" / entry["output"]
        results.update({record["id"]: record["result"] for record in map(json.loads, output.read_text().splitlines())
                        if record["id"] == entry["item_id"]})
    assert results["r5"] == {"characters": 7, "words": 4}
    verified = colabflow(["verify", str(tmp_path / "out" / "changed")], env)
    assert verified.returncode == 0 and "verified 12 of 12 items" in verified.stdout
