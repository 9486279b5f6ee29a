"""A destination or results location inside a source is refused for every kind, before any work, naming both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tasks.engine.parameters import refuse_outputs_in_sources

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = {"PATH": "", "PREFECT_API_URL": "http://127.0.0.1:9/api"}


@pytest.mark.parametrize(("source", "destination"), [
    ("src", "src/out"), ("src", "src"), ("./src/", "src/./deep/out"), ("gs://lab/corpus", "gs://lab/corpus/out"),
    ("gdrive://FOLDER/texts", "gdrive://FOLDER/texts/jobs"),
])
def test_an_output_inside_a_source_folder_is_refused_naming_both(source: str, destination: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative, dotted, trailing-slash and remote spellings of the same nesting are all caught."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match=rf"destination {destination!r} lies inside source {source!r}"):
        refuse_outputs_in_sources([source], {"destination": destination, "results": None})


@pytest.mark.parametrize(("source", "outputs"), [
    ("src", {"destination": "src2/out", "results": None}),
    ("gs://lab/corpus", {"destination": "gs://lab/corpus-jobs", "results": "gs://other/corpus/x"}),
    ("items.jsonl", {"destination": ".", "results": None}),
])
def test_outputs_beside_a_source_or_a_source_file_are_accepted(source: str, outputs: dict[str, str | None],
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sibling whose name starts alike, another bucket, and the folder of a JSONL items file are fine."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "items.jsonl").write_text('{"id": "a"}\n')
    refuse_outputs_in_sources([source], outputs)


@pytest.mark.parametrize("command", [
    ["compress", "src", "src/out", "--job", "j"],
    ["compress", "src", "out", "--job", "j", "--results", "src/checkpoints"],
    ["map", "src", "src/out", "--job", "j", "--function", "tasks.batch_map.examples.text:measure"],
    ["analyze", "src", "src/out", "--job", "j"],
])
def test_every_kind_refuses_it_from_the_command_line_before_any_work(command: list[str], tmp_path: Path) -> None:
    """Exit 2 with the message, and nothing written under the source (no server is reachable: nothing started)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a\n")
    result = subprocess.run([sys.executable, "-m", "flows.cli", *command], capture_output=True, text=True,
                            env={**OFFLINE, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "lies inside source 'src'" in result.stderr, result.stderr[-2000:]
    assert sorted(path.name for path in (tmp_path / "src").iterdir()) == ["a.txt"]
