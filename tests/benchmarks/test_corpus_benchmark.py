"""Tests of the corpus benchmark: a 2 MiB run as a subprocess, plus its text, its batches and its counting."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.corpus import count_run, plan_batches, sample_sentences, synthetic_word, write_corpus
from tasks.corpus.documents import PIECE_BYTES
from tasks.corpus.kind import count_document
from tasks.corpus.languages import KNOWN_LANGUAGES
from tasks.corpus.tokenizers import tokenizer_for
from tasks.engine.models import ItemFingerprint
from tasks.storage.stores import StorageAccess

ROOT = Path(__file__).resolve().parents[2]
TOP_KEYS = {
    "mib", "rss_mib", "document_mib", "batch_mib", "piece_kib", "workers", "device", "seed", "documents", "batches",
    "bytes", "generate_s", "tokens", "tokens_per_s", "single_process_tokens_per_s", "baseline_tokens_per_s",
    "speedup", "single_process_speedup", "target_speedup", "speedup_met", "wall_s", "cpu_s", "tokens_per_cpu_s",
    "load_after", "breakdown_s",
    "memory", "peak_rss_growth", "rss_flat_met", "floor_rss_mib", "baseline_peak_rss_mib", "pool_peak_rss_mib",
    "languages", "unigrams_match", "cpu", "cpu_count", "python", "commit", "dirty_files", "load_average",
}
RUNS = {"path", "single_process", "baseline"}
STAGES = {"read", "tokenise", "count", "merge", "statistics"}
SIZE_KEYS = {"mib", "peak_rss_mib", "tokens", "types", "bigrams", "trigrams"}
LANGUAGE_KEYS = {"documents", "tokens", "types", "bigrams", "trigrams"}
SMALL_RUN = ["--mib", "2", "--rss-mib", "1", "--document-mib", "0.125", "--batch-mib", "0.3", "--piece-kib", "64"]


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    """One 2 MiB run (1 MiB for memory), in documents of 128 KiB read 64 KiB at a time; its JSON line."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.corpus", *SMALL_RUN, "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    found: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return found


def test_corpus_benchmark_prints_every_figure_and_checks_its_counts(figures: dict[str, Any]) -> None:
    """The run ends with one JSON line: every figure, typed, and the path's unigrams equal to the Counter's."""
    assert figures.keys() == TOP_KEYS
    assert figures["unigrams_match"] is True
    assert (figures["mib"], figures["rss_mib"], figures["workers"], figures["documents"]) == (2, 1, 2, 18)
    assert figures["tokens"] == sum(language["tokens"] for language in figures["languages"].values()) > 0
    for key in ("tokens_per_s", "single_process_tokens_per_s", "baseline_tokens_per_s", "speedup", "peak_rss_growth"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["speedup"] == pytest.approx(figures["tokens_per_s"] / figures["baseline_tokens_per_s"], rel=0.01)
    assert isinstance(figures["speedup_met"], bool) and isinstance(figures["rss_flat_met"], bool)
    assert figures["wall_s"].keys() == figures["cpu_s"].keys() == figures["breakdown_s"].keys() == RUNS
    assert all(isinstance(run[name], float) and run[name] > 0 for run in (figures["wall_s"], figures["cpu_s"],
                                                                          figures["tokens_per_cpu_s"]) for name in RUNS)
    assert figures["load_after"].keys() == RUNS | {"small"}
    assert all(stages.keys() == STAGES for stages in figures["breakdown_s"].values())
    assert figures["breakdown_s"]["baseline"]["merge"] == figures["breakdown_s"]["baseline"]["statistics"] == 0
    assert isinstance(figures["commit"], str) and figures["cpu_count"] >= 1 and len(figures["load_average"]) == 2


def test_corpus_benchmark_reports_memory_and_sizes_at_both_sizes(figures: dict[str, Any]) -> None:
    """Peak RSS at 1 and 2 MiB, a vocabulary and n-grams that grow between them, and each language's sizes."""
    small, full = figures["memory"]["small"], figures["memory"]["full"]
    assert small.keys() == full.keys() == SIZE_KEYS and (small["mib"], full["mib"]) == (1, 2)
    assert all(small[key] < full[key] for key in ("tokens", "types", "bigrams", "trigrams"))
    assert full["tokens"] == figures["tokens"]
    assert figures["peak_rss_growth"] == pytest.approx(full["peak_rss_mib"] / small["peak_rss_mib"], rel=0.01)
    assert 0 < figures["floor_rss_mib"] <= small["peak_rss_mib"]
    assert figures["pool_peak_rss_mib"].keys() == {"parent", "worker_max"}
    assert all(isinstance(value, float) and value > 0 for value in figures["pool_peak_rss_mib"].values())
    assert figures["languages"].keys() == set(KNOWN_LANGUAGES)
    assert all(language.keys() == LANGUAGE_KEYS and language["documents"] == 3 and language["types"] > 0
               for language in figures["languages"].values())


def test_corpus_benchmark_rejects_a_small_size_not_below_the_full_one() -> None:
    """--rss-mib at or above --mib fails at once and says what each got."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.corpus", "--mib", "2", "--rss-mib", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 2
    assert "--rss-mib must be below --mib to compare memory at two sizes, got 2.0 and 2.0" in completed.stderr


def test_corpus_is_seeded_sized_and_grows_its_vocabulary(tmp_path: Path) -> None:
    """The same seed writes the same bytes; each language gets its share; twice the text has more words."""
    first, again = write_corpus(tmp_path / "a", 0.06, 0.004, 7), write_corpus(tmp_path / "b", 0.06, 0.004, 7)
    larger = write_corpus(tmp_path / "c", 0.12, 0.004, 7)
    assert [language for language, _ in first] == list(KNOWN_LANGUAGES)
    assert [[path.read_bytes() for path in paths] for _, paths in first] == [
        [path.read_bytes() for path in paths] for _, paths in again]
    for (_, paths), (_, more) in zip(first, larger):
        assert len(paths) == 3 and sum(path.stat().st_size for path in paths) >= int(0.01 * 2**20)
        assert paths[0].read_bytes() == more[0].read_bytes()
    english = tokenizer_for("en")
    vocabulary = [{word for path in paths for word in english.words(path.read_text())} for corpus in (first, larger)
                  for language, paths in corpus if language == "en"]
    assert len(vocabulary[1]) > len(vocabulary[0])


def test_synthetic_words_never_share_a_spelling() -> None:
    """Ranks 1..20000 over ten units give 20000 distinct words, none shorter than two units."""
    units = tuple("abcdefghij")
    words = [synthetic_word(rank, units) for rank in range(1, 20001)]
    assert len(set(words)) == len(words) and min(map(len, words)) == 2


def test_sample_sentences_carry_units_of_their_script() -> None:
    """Sanskrit's Devanagari sentences get Devanagari syllables, its IAST ones Latin letter pairs; Chinese Han characters."""
    devanagari = {any("\u0900" <= letter <= "\u097f" for letter in units[0]) for _, units in sample_sentences("sa")}
    assert devanagari == {True, False}
    assert all(len(unit) == 1 for _, units in sample_sentences("zh") for unit in units)


def test_batches_hold_consecutive_documents_of_one_language(tmp_path: Path) -> None:
    """Documents of 3, 3, 3 and 5 bytes in batches of at most 6: [a, b], [c], [d]; one too large stands alone."""
    paths = []
    for name, size in (("a", 3), ("b", 3), ("c", 3), ("d", 5)):
        (tmp_path / name).write_bytes(b"x" * size)
        paths.append(tmp_path / name)
    batches = plan_batches([("fr", paths), ("en", paths[:1])], 6)
    assert [(language, [path.name for path in run]) for language, run in batches] == [
        ("fr", ["a", "b"]), ("fr", ["c"]), ("fr", ["d"]), ("en", ["a"])]


@pytest.mark.parametrize("language", ["fr", "zh"])
def test_count_run_counts_as_the_job_counts_a_document(tmp_path: Path, language: str) -> None:
    """Read in 4 KiB pieces, a document's counts equal those of tasks/corpus/kind.py, which reads it in one piece."""
    path = dict(write_corpus(tmp_path, 0.3, 1, 5))[language][0]
    assert path.stat().st_size < PIECE_BYTES
    counts, seconds, cpu_s, rss_mib = count_run((language, [path]), 4096)
    item = ItemFingerprint(item_id=path.name, uri=path.as_uri(), size=path.stat().st_size,
                           sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    assert counts == count_document(item, tokenizer_for(language), "cpu", StorageAccess())
    assert seconds.keys() == {"read", "tokenise", "count", "merge"} and cpu_s > 0 and rss_mib > 0
