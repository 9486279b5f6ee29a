"""Corpus benchmark: the per-language statistics path on a mixed six-language text, against a Counter.

Run from the repo root: `python -m benchmarks.corpus --mib 200 --json`.
It writes a seeded corpus of `--mib` MiB to a temporary folder: as many bytes in each of fr, en,
es, de, sa (Devanagari and IAST) and zh, one folder per language, in documents of `--document-mib`
MiB. Each sentence is a sample sentence of tests/data/corpus in which each word (each Han
character) is, with probability NEW_WORD_SHARE, replaced by a synthetic word: its rank drawn from
a Zipf law of exponent ZIPF_EXPONENT, spelled with the samples' letter pairs (Devanagari or Han
syllables), so the vocabulary keeps growing with the text as a real corpus's does (Heaps' law).

Then, each in a fresh process and timed from the first byte read to the last statistic:
the path with `--workers` processes (batches of consecutive documents of one language, up to
`--batch-mib`; each document read with `text_pieces`, tokenised, and counted piece by piece with
`count_batch` and `merge_counts` as tasks/corpus/kind.py `count_document` does; the batch's
documents merged; the parent merges the batches in document order and runs `compute_statistics`
once a language is complete), the same path in one process, and the baseline in one process: the
same pieces and tokeniser calls, then `collections.Counter`. Last, the one-process path on a
`--rss-mib` MiB corpus of the same generator, for its peak RSS (VmHWM) against the `--mib` run's.
Each run also reports its CPU seconds (the pool's processes added up), which others' work on a
shared machine disturbs less than wall time. Each language's unigram counts must equal the
baseline's Counter exactly, and the pool's statistics the one-process path's, else it exits 1.
With `--json` the last stdout line is one JSON object; the corpus is removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import cache, reduce
from itertools import chain, pairwise
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import regex

from benchmarks.machine import machine
from tasks.corpus.counting import (
    PartialCounts,
    count_batch,
    default_device,
    merge_counts,
)
from tasks.corpus.documents import PIECE_BYTES, text_pieces
from tasks.corpus.languages import KNOWN_LANGUAGES
from tasks.corpus.statistics import compute_statistics
from tasks.corpus.tokenizers import tokenizer_for

Result = TypeVar("Result")
Batch = tuple[str, list[Path]]
REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "tests" / "data" / "corpus"
MIB = 1024 * 1024
SEED = 13
NEW_WORD_SHARE = 0.3
ZIPF_EXPONENT = 1.5
SENTENCES_PER_LINE = 4
TARGET_SPEEDUP = 3.0
# Peak RSS counts as flat when the large run's is at most this much above the small run's.
FLAT_RSS_GROWTH = 1.1
_WORD = regex.compile(r"[\p{L}\p{M}]+")
_GRAPHEME = regex.compile(r"\X")
_UNSPACED = regex.compile(r"\p{Script=Devanagari}|\p{Script=Han}")


@cache
def sample_sentences(language: str) -> list[tuple[list[str], tuple[str, ...]]]:
    """The language's sample sentences as tokens (Han: characters), each with the units of its synthetic words.

    Units are pairs of letters for Latin script, Devanagari syllables (grapheme clusters) and Han characters.
    """
    tokenizer = tokenizer_for(language)
    text = "\n".join(path.read_text(encoding="utf-8") for path in sorted((SAMPLES / language).glob("*.txt")))
    sentences = [sentence.replace("\n", " ") for sentence in tokenizer.sentences(text)]
    found: list[tuple[list[str], str]] = []
    units_by_script: dict[str, set[str]] = {}
    for sentence in sentences:
        tokens = list(sentence) if language == "zh" else sentence.split(" ")
        script = "unspaced" if _UNSPACED.search(sentence) else "latin"
        found.append((tokens, script))
        words = [word.casefold() for word in _WORD.findall(sentence)]
        clusters = [_GRAPHEME.findall(word) for word in words]
        units = {"".join(pair) for word in clusters for pair in pairwise(word)} if script == "latin" else {
            cluster for word in clusters for cluster in word if _UNSPACED.search(cluster)}
        units_by_script.setdefault(script, set()).update(units)
    return [(tokens, tuple(sorted(units_by_script[script]))) for tokens, script in found]


def synthetic_word(rank: int, units: tuple[str, ...]) -> str:
    """Word number `rank`: the base-len(units) digits of rank + len(units) (so at least two), as units.

    Each unit also depends on the one before it, so frequent words do not all share their first unit;
    the digits can be recovered from the units, so two ranks never share a spelling.
    """
    number, spelled, previous = rank + len(units), [], 0
    while number:
        number, digit = divmod(number, len(units))
        previous = (digit + 31 * previous + 7) % len(units)
        spelled.append(units[previous])
    return "".join(spelled)


def generated_line(language: str, rng: np.random.Generator) -> str:
    """SENTENCES_PER_LINE sample sentences with some words replaced by synthetic ones, and a line break."""
    sentences = sample_sentences(language)
    picked = [sentences[index] for index in rng.integers(len(sentences), size=SENTENCES_PER_LINE)]
    slots = sum(len(tokens) for tokens, _ in picked)
    replace, ranks = (rng.random(slots) < NEW_WORD_SHARE).tolist(), rng.zipf(ZIPF_EXPONENT, slots).tolist()
    joiner, position, written = ("" if language == "zh" else " "), 0, []
    for tokens, units in picked:
        words = []
        for token in tokens:
            new = replace[position] and _WORD.fullmatch(token) is not None
            words.append(synthetic_word(ranks[position], units) if new else token)
            position += 1
        written.append(joiner.join(words))
    return joiner.join(written) + "\n"


def write_corpus(root: Path, mib: float, document_mib: float, seed: int) -> list[Batch]:
    """`mib` MiB of seeded text, as much in each language, in documents of `document_mib`; each language's documents."""
    per_language, per_document = int(mib * MIB) // len(KNOWN_LANGUAGES), max(1, int(document_mib * MIB))
    corpus: list[Batch] = []
    for number, language in enumerate(KNOWN_LANGUAGES):
        (root / language).mkdir(parents=True)
        paths = []
        for index, start in enumerate(range(0, per_language, per_document)):
            rng, size = np.random.default_rng([seed, number, index]), min(per_document, per_language - start)
            path = root / language / f"doc-{index:04d}.txt"
            with path.open("wb") as handle:
                while handle.tell() < size:
                    handle.write(generated_line(language, rng).encode())
            paths.append(path)
        corpus.append((language, paths))
    return corpus


def plan_batches(corpus: list[Batch], batch_bytes: int) -> list[Batch]:
    """Each language's documents in runs of consecutive documents of at most `batch_bytes` (at least one each)."""
    batches: list[Batch] = []
    for language, paths in corpus:
        run: list[Path] = []
        for path in paths:
            if run and sum(part.stat().st_size for part in run) + path.stat().st_size > batch_bytes:
                batches.append((language, run))
                run = []
            run.append(path)
        batches.append((language, run))
    return batches


@contextmanager
def stage(seconds: defaultdict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block to `seconds[name]`."""
    started = time.perf_counter()
    yield
    seconds[name] += time.perf_counter() - started


def timed_pieces(path: Path, piece_bytes: int, seconds: defaultdict[str, float]) -> Iterator[str]:
    """The document's `text_pieces`, the time spent reading and decoding them added to seconds['read']."""
    with path.open("rb") as stream:
        pieces = text_pieces(stream, path.name, piece_bytes)
        while True:
            with stage(seconds, "read"):
                piece = next(pieces, None)
            if piece is None:
                return
            yield piece


def tokenised(language: str, path: Path, piece_bytes: int, seconds: defaultdict[str, float]) -> Iterator[list[list[str]]]:
    """Each piece of the document as its sentences' words, as tasks/corpus/kind.py `count_document` splits it."""
    tokenizer = tokenizer_for(language)
    for piece in timed_pieces(path, piece_bytes, seconds):
        with stage(seconds, "tokenise"):
            sentences = [tokenizer.words(sentence) for sentence in tokenizer.sentences(piece)]
        yield sentences


def count_run(batch: Batch, piece_bytes: int) -> tuple[PartialCounts, dict[str, float], float, float]:
    """A batch's counts (each document counted piece by piece, then the documents merged), its stage times,
    the CPU seconds this process spent on it, and this process's peak RSS."""
    language, paths = batch
    seconds, cpu_started = defaultdict[str, float](float), time.process_time()
    documents = []
    for path in paths:
        counts = PartialCounts()
        for sentences in tokenised(language, path, piece_bytes, seconds):
            with stage(seconds, "count"):
                piece = count_batch([sentences], default_device())
            with stage(seconds, "merge"):
                counts = merge_counts(counts, piece)
        documents.append(counts.model_copy(update={"documents": 1}))
    with stage(seconds, "merge"):
        merged = reduce(merge_counts, documents, PartialCounts())
    return merged, dict(seconds), time.process_time() - cpu_started, peak_rss_mib()


def warm_up(*_: object) -> None:
    """Load jieba's dictionary (about 0.7 s) before anything is timed."""
    tokenizer_for("zh").words("春天来了")


def unigram_digest(pairs: Iterable[tuple[str, int]]) -> str:
    """sha256 of (token, count) pairs in code-point order."""
    return hashlib.sha256(json.dumps(sorted(pairs), ensure_ascii=False).encode()).hexdigest()


def finish_language(counts: PartialCounts, seconds: defaultdict[str, float]) -> dict[str, Any]:
    """A language's statistics (timed), reduced to its sizes and the digests that the checks compare."""
    with stage(seconds, "statistics"):
        statistics = compute_statistics(counts)
    return {
        "documents": counts.documents, "tokens": statistics.tokens, "types": statistics.types,
        "bigrams": len(counts.bigrams.counts), "trigrams": len(counts.trigrams.counts),
        "unigram_sha256": unigram_digest(zip(counts.vocabulary, counts.unigram_counts)),
        "statistics_sha256": hashlib.sha256(statistics.model_dump_json().encode()).hexdigest(),
    }


def path_child(batches: list[Batch], workers: int, piece_bytes: int) -> dict[str, Any]:
    """The whole path: batches counted (in a pool of `workers` when above 1), merged per language, statistics."""
    warm_up()
    pool = ProcessPoolExecutor(workers, get_context("spawn"), initializer=warm_up) if workers > 1 else None
    if pool is not None:
        list(pool.map(time.sleep, [0.5] * workers))  # every worker started and warmed before the clock starts
    started, cpu_started = time.perf_counter(), time.process_time()
    results = pool.map(count_run, batches, [piece_bytes] * len(batches)) if pool else (
        count_run(batch, piece_bytes) for batch in batches)
    seconds, languages, worker_cpu_s, worker_rss = defaultdict[str, float](float), {}, 0.0, [0.0]
    merged: dict[str, PartialCounts] = {}
    for index, ((language, _), (counts, parts, cpu_s, rss)) in enumerate(zip(batches, results)):
        for name, value in parts.items():
            seconds[name] += value
        worker_cpu_s, worker_rss = worker_cpu_s + cpu_s, [*worker_rss, rss]
        with stage(seconds, "merge"):
            merged[language] = merge_counts(merged.get(language, PartialCounts()), counts)
        if index + 1 == len(batches) or batches[index + 1][0] != language:
            languages[language] = finish_language(merged.pop(language), seconds)
    wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    if pool is not None:
        pool.shutdown()
    return {"wall_s": wall_s, "cpu_s": cpu_s + (worker_cpu_s if pool else 0.0), "seconds": dict(seconds),
            "languages": languages, "rss_mib": peak_rss_mib(), "worker_rss_mib": max(worker_rss) if pool else None}


def baseline_child(batches: list[Batch], piece_bytes: int) -> dict[str, Any]:
    """The same documents, pieces and tokeniser calls, counted with one `collections.Counter` per language."""
    warm_up()
    started, cpu_started, seconds = time.perf_counter(), time.process_time(), defaultdict[str, float](float)
    counters: dict[str, Counter[str]] = {}
    for language, paths in batches:
        counter = counters.setdefault(language, Counter())
        for path in paths:
            for sentences in tokenised(language, path, piece_bytes, seconds):
                with stage(seconds, "count"):
                    counter.update(chain.from_iterable(sentences))
    wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    languages = {language: {"tokens": counter.total(), "types": len(counter), "unigram_sha256": unigram_digest(
        counter.items())} for language, counter in counters.items()}
    return {"wall_s": wall_s, "cpu_s": cpu_s, "seconds": dict(seconds), "languages": languages,
            "rss_mib": peak_rss_mib()}


def floor_child() -> dict[str, Any]:
    """Nothing but this module's imports (torch, the tokenisers) and jieba's dictionary."""
    warm_up()
    return {"rss_mib": peak_rss_mib()}


def peak_rss_mib() -> float:
    """This process's peak RSS from /proc (VmHWM); not ru_maxrss, which a spawned child inherits from its parent."""
    status = Path("/proc/self/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(int(kib) / 1024, 1)


def in_fresh_process(function: Callable[..., Result], *args: Any) -> Result:
    """Run `function(*args)` in a new interpreter (spawn), so its peak RSS and its timing are its own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def measured(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """`function(*args)` in a fresh process, with the 1-minute load average once it is done (others' work shows)."""
    return {**in_fresh_process(function, *args), "load_after": round(os.getloadavg()[0], 2)}


def check_counts(pooled: dict[str, Any], single: dict[str, Any], baseline: dict[str, Any]) -> None:
    """Fail unless each language's unigrams match the Counter's and the pool's statistics the one process's."""
    for language, expected in baseline["languages"].items():
        got = pooled["languages"][language]
        if [got[key] for key in ("tokens", "types", "unigram_sha256")] != list(expected.values()):
            raise RuntimeError(f"{language}: the path counted {got['tokens']} tokens of {got['types']} types, the "
                               f"Counter {expected['tokens']} of {expected['types']}, or their unigram counts differ")
        if got["statistics_sha256"] != single["languages"][language]["statistics_sha256"]:
            raise RuntimeError(f"{language}: the statistics of the pool's run differ from the one-process run's")


def sizes(mib: float, run: dict[str, Any]) -> dict[str, Any]:
    """A one-process run's peak RSS and the size of its merged counts, summed over the languages."""
    totals = {key: sum(language[key] for language in run["languages"].values())
              for key in ("tokens", "types", "bigrams", "trigrams")}
    return {"mib": mib, "peak_rss_mib": run["rss_mib"], **totals}


def rounded(seconds: dict[str, float]) -> dict[str, float]:
    """Stage times to the millisecond, in a fixed order."""
    return {name: round(seconds.get(name, 0.0), 3) for name in ("read", "tokenise", "count", "merge", "statistics")}


def run_benchmark(scratch: Path, options: argparse.Namespace) -> dict[str, Any]:
    """Write the corpus, time the pool, one process and the baseline on it, then the small corpus for memory."""
    load_before, checkout = os.getloadavg()[0], machine()
    piece_bytes, batch_bytes = options.piece_kib * 1024, int(options.batch_mib * MIB)
    started = time.perf_counter()
    corpus = write_corpus(scratch / "full", options.mib, options.document_mib, options.seed)
    generate_s = time.perf_counter() - started
    batches = plan_batches(corpus, batch_bytes)
    floor = in_fresh_process(floor_child)
    pooled = measured(path_child, batches, options.workers, piece_bytes)
    single = measured(path_child, batches, 1, piece_bytes)
    baseline = measured(baseline_child, batches, piece_bytes)
    check_counts(pooled, single, baseline)
    small_corpus = write_corpus(scratch / "small", options.rss_mib, options.document_mib, options.seed)
    small = measured(path_child, plan_batches(small_corpus, batch_bytes), 1, piece_bytes)
    tokens = sum(language["tokens"] for language in baseline["languages"].values())
    runs = {"path": pooled, "single_process": single, "baseline": baseline}
    rates = {name: tokens / run["wall_s"] for name, run in runs.items()}
    memory = {"small": sizes(options.rss_mib, small), "full": sizes(options.mib, single)}
    growth = memory["full"]["peak_rss_mib"] / memory["small"]["peak_rss_mib"]
    speedup = rates["path"] / rates["baseline"]
    return {
        "mib": options.mib, "rss_mib": options.rss_mib, "document_mib": options.document_mib,
        "batch_mib": options.batch_mib, "piece_kib": options.piece_kib, "workers": options.workers,
        "device": default_device(), "seed": options.seed, "documents": sum(len(paths) for _, paths in corpus),
        "batches": len(batches), "bytes": sum(path.stat().st_size for _, paths in corpus for path in paths),
        "generate_s": round(generate_s, 3), "tokens": tokens,
        "tokens_per_s": round(rates["path"], 1), "single_process_tokens_per_s": round(rates["single_process"], 1),
        "baseline_tokens_per_s": round(rates["baseline"], 1), "speedup": round(speedup, 3),
        "single_process_speedup": round(rates["single_process"] / rates["baseline"], 3),
        "target_speedup": TARGET_SPEEDUP, "speedup_met": speedup >= TARGET_SPEEDUP,
        "wall_s": {name: round(run["wall_s"], 3) for name, run in runs.items()},
        "cpu_s": {name: round(run["cpu_s"], 3) for name, run in runs.items()},
        "tokens_per_cpu_s": {name: round(tokens / run["cpu_s"], 1) for name, run in runs.items()},
        "load_after": {name: run["load_after"] for name, run in {**runs, "small": small}.items()},
        "breakdown_s": {"path": rounded(pooled["seconds"]), "single_process": rounded(single["seconds"]),
                        "baseline": rounded(baseline["seconds"])},
        "memory": memory, "peak_rss_growth": round(growth, 3), "rss_flat_met": growth <= FLAT_RSS_GROWTH,
        "floor_rss_mib": floor["rss_mib"], "baseline_peak_rss_mib": baseline["rss_mib"],
        "pool_peak_rss_mib": {"parent": pooled["rss_mib"], "worker_max": pooled["worker_rss_mib"]},
        "languages": {language: {key: figures[key] for key in ("documents", "tokens", "types", "bigrams", "trigrams")}
                      for language, figures in pooled["languages"].items()},
        "unigrams_match": True, **checkout, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark, print the figures (with --json as one JSON line)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=float, default=200, help="MiB of text, all languages together (default 200)")
    parser.add_argument("--rss-mib", type=float, default=50, help="MiB of the smaller corpus, for memory (default 50)")
    parser.add_argument("--document-mib", type=float, default=3, help="MiB of each document (default 3)")
    parser.add_argument("--batch-mib", type=float, default=12, help="most MiB of documents in one batch (default 12)")
    parser.add_argument("--piece-kib", type=int, default=PIECE_BYTES // 1024,
                        help=f"KiB read at a time from a document (default {PIECE_BYTES // 1024})")
    parser.add_argument("--workers", type=int, default=2, help="processes that count batches (default 2)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the text (default {SEED})")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args(argv)
    if min(args.mib, args.rss_mib, args.document_mib, args.batch_mib, args.piece_kib, args.workers) <= 0:
        parser.error("need --mib, --rss-mib, --document-mib, --batch-mib, --piece-kib and --workers above 0")
    if args.rss_mib >= args.mib:
        parser.error(f"--rss-mib must be below --mib to compare memory at two sizes, got {args.rss_mib} and {args.mib}")
    with tempfile.TemporaryDirectory(prefix="colabflow-corpus-bench-") as scratch:
        figures = run_benchmark(Path(scratch), args)
    for name, value in figures.items():
        for key, item in (value.items() if isinstance(value, dict) else [("", value)]):
            print(f"{name + ('.' + key if key else ''):<32}{item}")
    if args.json:
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
