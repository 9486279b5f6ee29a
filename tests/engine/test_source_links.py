"""Symlinks in a local source, for every kind that reads one: left out and reported, or taken with --follow-symlinks.

Outputs are checked with tools colabflow does not use: `gzip -d` for the members, hashlib for sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flows.analyze_command import analyze_request
from flows.cli import build_parser, compress_request
from flows.map_command import map_request
from tasks.batch_map.parameters import MapJob
from tasks.compression.parameters import CompressJob
from tasks.corpus.parameters import AnalyzeJob
from tasks.storage.stores import StorageAccess
from tests.servers import server_environment

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"outside the source: hunter2 is the password of the lab bucket\n"
PASSWD = Path("/etc/passwd").read_bytes()
ALPHA = b"alpha beta gamma\n" * 50
OUTSIDE = "outside the source; --follow-symlinks includes it"


@pytest.fixture
def env(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    return server_environment(tmp_path / "client-home", prefect_api)


@pytest.fixture
def linked_source(tmp_path: Path) -> Path:
    """The issue's source: links to a secret beside it and to /etc/passwd, plus one inside, a dangling link and loops."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(ALPHA)
    (source / "leak.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    (source / "passwd").symlink_to("/etc/passwd")
    (source / "latest.txt").symlink_to("a.txt")
    (source / "gone.txt").symlink_to("missing.txt")
    (source / "loop-a").symlink_to("loop-b")
    (source / "loop-b").symlink_to("loop-a")
    (source / "sub" / "up").symlink_to("..")
    return source


def colabflow(arguments: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = subprocess.run([sys.executable, "-m", "flows.cli", *arguments, "--json"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def traces(folder: Path, content: bytes) -> list[str]:
    """Files below `folder` that hold `content` or its sha256, read as they are and, for .gz, through `gzip -d`."""
    digest = hashlib.sha256(content).hexdigest().encode()
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data += subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout
        if content in data or digest in data:
            found.append(str(path.relative_to(folder)))
    return found


def gunzip(path: Path) -> bytes:
    return subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout


def manifest_ids(job: Path, field: str) -> list[str]:
    return sorted(json.loads(line)[field] for line in (job / "manifest.jsonl").read_text().splitlines())


def report_artifact_rows(job: str) -> list[dict[str, Any]]:
    """The rows of the job's report table, read back from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"colabflow-{job}-report"])),
        )
    return json.loads(str(artifact.data))  # type: ignore[no-any-return]


def test_compress_leaves_out_links_outside_and_reports_them_with_no_trace_in_the_job(
    linked_source: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    """Exit 0; each link is named with its reason in the report, the artifact and one log line; nothing of theirs is written."""
    result, report = colabflow(["compress", str(linked_source), str(tmp_path / "out"), "--job", "links-default"], env)
    secret = os.path.realpath(tmp_path / "outside" / "secret.txt")
    root = os.path.realpath(linked_source)
    skipped = {entry["item_id"]: entry["reason"] for entry in report["skipped"]}
    assert skipped == {
        "gone.txt": f"a symlink to {root}/missing.txt, which does not exist",
        "leak.txt": f"a symlink to {secret}, {OUTSIDE}",
        "loop-a": "a symlink loop: 'loop-b' leads back to it, never followed",
        "loop-b": "a symlink loop: 'loop-a' leads back to it, never followed",
        "passwd": f"a symlink to /etc/passwd, {OUTSIDE}",
        "sub/up": f"a symlink to {root}, a folder above it: a loop, never entered",
    }
    assert (report["compressed"], report["chunks_total"], report["failed"]) == (2, 2, [])
    assert result.stderr.count("6 symlinks left out: gone.txt: a symlink to") == 1, result.stderr[-3000:]
    rows = report_artifact_rows("links-default")
    assert {"field": "skipped", "value": 6} in rows
    assert {"field": "skipped: passwd", "value": f"a symlink to /etc/passwd, {OUTSIDE}"} in rows
    job = tmp_path / "out" / "links-default"
    assert manifest_ids(job, "chunk_id") == ["a.txt", "latest.txt"]
    assert gunzip(job / "chunks" / "latest.txt.gz") == ALPHA
    assert hashlib.sha256(gunzip(job / "chunks" / "latest.txt.gz")).hexdigest() == hashlib.sha256(ALPHA).hexdigest()
    assert traces(tmp_path / "out", SECRET) == [] and traces(tmp_path / "out", PASSWD) == []
    assert traces(tmp_path / "out", ALPHA), "the trace check finds the content of a file that was taken"


def test_compress_with_follow_symlinks_takes_the_links_outside(
    linked_source: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    """The secret and /etc/passwd are compressed under the links' names; dangling links and loops stay out."""
    _, report = colabflow(["compress", str(linked_source), str(tmp_path / "out"), "--job", "links-followed",
                           "--follow-symlinks"], env)
    assert (report["compressed"], report["failed"]) == (4, [])
    assert sorted(entry["item_id"] for entry in report["skipped"]) == ["gone.txt", "loop-a", "loop-b", "sub/up"]
    chunks = tmp_path / "out" / "links-followed" / "chunks"
    assert gunzip(chunks / "leak.txt.gz") == SECRET and gunzip(chunks / "passwd.gz") == PASSWD
    assert traces(tmp_path / "out", SECRET) != []


def test_map_leaves_out_a_link_outside_its_folder_of_items(tmp_path: Path, env: dict[str, str]) -> None:
    """The folder's one file is mapped; the link is reported, and neither its bytes nor its sha256 are written."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "a.txt").write_bytes(ALPHA)
    (tmp_path / "items" / "leak.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    _, report = colabflow(["map", str(tmp_path / "items"), str(tmp_path / "out"), "--job", "map-links",
                           "--function", "tasks.batch_map.examples.text:measure"], env)
    assert (report["items_total"], report["items_done"], report["failed"]) == (1, 1, [])
    assert [entry["item_id"] for entry in report["skipped"]] == ["leak.txt"]
    assert report["skipped"][0]["reason"].endswith(OUTSIDE)
    assert manifest_ids(tmp_path / "out" / "map-links", "item_id") == ["a.txt"]
    assert traces(tmp_path / "out", SECRET) == []


def test_analyze_leaves_out_a_link_outside_its_corpus(tmp_path: Path, env: dict[str, str]) -> None:
    """The link's words are not counted anywhere: not in the report, the counts or the shared results."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)
    (tmp_path / "corpus" / "en").mkdir(parents=True)
    (tmp_path / "corpus" / "en" / "harbour.txt").write_text("The boats came into the harbour at dawn. " * 20)
    (tmp_path / "corpus" / "en" / "leak.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    _, summary = colabflow(["analyze", str(tmp_path / "corpus"), str(tmp_path / "out"), "--job", "corpus-links",
                            "--languages", "en", "--device", "cpu"], env)
    assert (summary["documents_total"], summary["failed"]) == (1, [])
    assert [entry["item_id"] for entry in summary["skipped"]] == ["en/leak.txt"]
    assert traces(tmp_path / "out", SECRET) == []
    assert not [path for path in (tmp_path / "out").rglob("*") if path.is_file() and b"hunter2" in path.read_bytes()]


@pytest.mark.parametrize("command", [
    ["compress", "src", "out", "--job", "j"],
    ["map", "src", "out", "--job", "j", "--function", "tasks.batch_map.examples.text:measure"],
    ["analyze", "src", "out", "--job", "j"],
])
def test_follow_symlinks_is_a_flag_of_every_command_that_reads_a_folder(command: list[str]) -> None:
    """Absent, the request's field is False; given, True."""
    builders = {"compress": lambda arguments: compress_request(arguments),
                "map": lambda arguments: map_request(arguments, StorageAccess()),
                "analyze": lambda arguments: analyze_request(arguments, StorageAccess())}
    build = builders[command[0]]
    assert build(build_parser().parse_args(command)).follow_symlinks is False
    assert build(build_parser().parse_args([*command, "--follow-symlinks"])).follow_symlinks is True


@pytest.mark.parametrize("model", [CompressJob, MapJob, AnalyzeJob])
def test_the_ui_form_shows_follow_symlinks_off_with_its_description(model: type[BaseModel]) -> None:
    """Each parameter model's schema, which the Prefect UI renders, has the field, off by default."""
    field = model.model_json_schema()["properties"]["follow_symlinks"]
    assert field["default"] is False and "outside it" in field["description"]
