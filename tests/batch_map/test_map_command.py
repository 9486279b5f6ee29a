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
