"""`colabflow analyze` end to end on the six-language sample: counts checked by Counter, week over week, bad inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tasks.corpus.tokenizers import tokenizer_for
from tests.servers import server_environment

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "corpus"
LANGUAGES = ["fr", "en", "es", "de", "sa", "zh"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def env(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    return server_environment(tmp_path / "client-home", prefect_api)


def analyze(env: dict[str, str], *arguments: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = subprocess.run([sys.executable, "-m", "flows.cli", "analyze", *arguments, "--device", "cpu", "--json"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    lines = result.stdout.strip().splitlines()
    return result, json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}


def plain_counts(folder: Path) -> Counter[str]:
    """The same tokeniser, then collections.Counter: the independent count."""
    tokenizer = tokenizer_for(folder.name)
    counts: Counter[str] = Counter()
    for path in sorted(folder.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        counts.update(word for sentence in tokenizer.sentences(text) for word in tokenizer.words(sentence))
    return counts


def test_six_languages_are_counted_as_counter_counts_them_with_four_plots(env: dict[str, str], tmp_path: Path) -> None:
    """Every language's tokens, types and most frequent words match Counter's; the report has its plots; verify passes."""
    result, summary = analyze(env, str(SAMPLE), str(tmp_path / "out"), "--job", "week-1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (summary["documents_total"], summary["unassigned"], summary["failed"]) == (12, [], [])
    report = json.loads((tmp_path / "out" / "week-1" / "report.json").read_text())
    for language in LANGUAGES:
        expected = plain_counts(SAMPLE / language)
        statistics = report["languages"][language]
        assert (statistics["documents"], statistics["tokens"], statistics["types"]) == (2, expected.total(), len(expected))
        assert summary["languages"][language] == {"documents": 2, "tokens": expected.total(), "types": len(expected)}
        top = [(entry["ngram"][0], entry["count"]) for entry in statistics["top_unigrams"]][:5]
        assert top == sorted(expected.items(), key=lambda pair: (-pair[1], pair[0]))[:5]
    assert len(report["plots"]) == 4
    for name in report["plots"]:
        image = (tmp_path / "out" / "week-1" / name).read_bytes()
        assert image.startswith(PNG_SIGNATURE) and 10_000 < len(image) < 2_000_000
    verified = subprocess.run([sys.executable, "-m", "flows.cli", "verify", str(tmp_path / "out" / "week-1")],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert verified.returncode == 0 and "verified 12 of 12 items" in verified.stdout

    again, rerun = analyze(env, str(SAMPLE), str(tmp_path / "out"), "--job", "week-1")
    assert again.returncode == 0 and (rerun["batches_run"], rerun["batches_reused"]) == (0, 6)


def test_next_week_counts_only_the_changed_document_and_reports_what_changed(env: dict[str, str], tmp_path: Path) -> None:
    """Week 2 adds a sentence to one German document: it alone is counted; the report compares with week 1."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus)
    assert analyze(env, str(corpus), str(tmp_path / "out"), "--job", "week-1")[0].returncode == 0
    with (corpus / "de" / "wald.txt").open("a", encoding="utf-8") as document:
        document.write("Der Fluss fließt ruhig durch das Tal.\n")
    result, summary = analyze(env, str(corpus), str(tmp_path / "out"), "--job", "week-2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (summary["documents_counted"], summary["documents_reused"]) == (1, 11)
    comparison = json.loads((tmp_path / "out" / "week-2" / "report.json").read_text())["comparison"]
    assert comparison["previous_job"] == "week-1"
    tokens = {language: next(change for change in found["statistics"] if change["statistic"] == "tokens")["change"]
              for language, found in comparison["languages"].items()}
    assert tokens == {"fr": 0, "en": 0, "es": 0, "de": 7, "sa": 0, "zh": 0}
    assert "## Week over week" in (tmp_path / "out" / "week-2" / "report.md").read_text()


def test_documents_that_are_not_text_or_have_no_language_are_named_and_the_rest_go_on(
    env: dict[str, str], tmp_path: Path,
) -> None:
    """A binary file and a Latin-1 file fail alone (exit 1) with their reasons; a stray folder is unassigned;
    a language without documents reports 0."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus, ignore=shutil.ignore_patterns("zh"))
    (corpus / "en" / "figure.txt").write_bytes(PNG_SIGNATURE + b"\0\0\0\rIHDR")
    (corpus / "fr" / "latin-1.txt").write_bytes("Le café est chaud.".encode("latin-1"))
    (corpus / "notes").mkdir()
    (corpus / "notes" / "todo.txt").write_text("buy bread\n")
    result, summary = analyze(env, str(corpus), str(tmp_path / "out"), "--job", "messy")
    assert result.returncode == 1
    reasons = {failure["item_id"]: failure["reason"] for failure in summary["failed"]}
    assert "binary (a NUL byte in its first 8192 bytes)" in reasons["en/figure.txt"]
    assert "not UTF-8 (byte 0xe9 at offset 6)" in reasons["fr/latin-1.txt"]
    assert [entry["item_id"] for entry in summary["unassigned"]] == ["notes/todo.txt"]
    assert "folder 'notes' is not a known language code" in summary["unassigned"][0]["reason"]
    assert summary["languages"]["zh"] == {"documents": 0, "tokens": 0, "types": 0}
    assert summary["languages"]["en"]["documents"] == 2 and summary["documents_total"] == 13
    quarantined = (tmp_path / "out" / "messy" / "quarantine.jsonl").read_text()
    assert "en/figure.txt" in quarantined and "fr/latin-1.txt" in quarantined


def test_an_unknown_language_code_and_an_empty_source_are_refused_before_any_work(
    env: dict[str, str], tmp_path: Path,
) -> None:
    (tmp_path / "empty").mkdir()
    unknown, _ = analyze(env, str(SAMPLE), str(tmp_path / "out"), "--job", "j", "--languages", "fr,xx")
    assert unknown.returncode == 2 and "unknown language code(s) 'xx'" in unknown.stderr
    empty, _ = analyze(env, str(tmp_path / "empty"), str(tmp_path / "out"), "--job", "j")
    assert empty.returncode == 2 and f"source '{tmp_path / 'empty'}' contains no files" in empty.stderr
    assert not (tmp_path / "out" / "j" / "manifest.jsonl").exists() and not (tmp_path / "out" / "j" / "report.json").exists()


def test_detected_languages_give_the_same_counts_as_the_folders(env: dict[str, str], tmp_path: Path) -> None:
    """The twelve documents in one folder, named without their language: detection files each where it belongs."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in SAMPLE.glob("*/*.txt"):
        shutil.copy(path, flat / f"{path.parent.name}-{path.name}")
    result, summary = analyze(env, str(flat), str(tmp_path / "out"), "--job", "detected", "--language-from", "detect")
    assert result.returncode == 0 and summary["unassigned"] == []
    for language in LANGUAGES:
        expected = plain_counts(SAMPLE / language)
        assert summary["languages"][language] == {"documents": 2, "tokens": expected.total(), "types": len(expected)}


PEAK_RSS = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); " \
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def peak_rss_kib(env: dict[str, str], *arguments: str) -> int:
    """The peak resident memory of one `colabflow analyze` process, in KiB."""
    command = [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "flows.cli", "analyze", *arguments, "--device", "cpu"]
    return int(subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=True).stdout)


def test_a_large_document_is_counted_in_pieces_with_memory_that_does_not_grow_with_it(
    env: dict[str, str], tmp_path: Path,
) -> None:
    """One English document of 4 MiB (one piece), then one of 16 MiB (four): the second run's peak memory is not
    much above the first's. Held whole, the 16 MiB document's tokens would take several hundred MiB more."""
    line = " ".join(f"word{index % 9973} and the harbour." for index in range(20)) + "\n"
    peaks = []
    for mib in (4, 16):
        (tmp_path / f"c{mib}" / "en").mkdir(parents=True)
        with (tmp_path / f"c{mib}" / "en" / "big.txt").open("w") as document:
            document.write(line * (mib * 1024 * 1024 // len(line)))
        peaks.append(peak_rss_kib(env, str(tmp_path / f"c{mib}"), str(tmp_path / "out"), "--job", f"big-{mib}",
                                  "--languages", "en"))
    assert peaks[1] - peaks[0] < 100 * 1024, f"peak RSS {peaks[0] // 1024} MiB at 4 MiB, {peaks[1] // 1024} MiB at 16 MiB"
