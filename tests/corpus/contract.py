"""Corpus analysis under the job-kind contract suite (tests/engine/test_kind_contract.py)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer

from tests.engine.kind_contract import Counts, GatedJob, served_folder_job

WORDS = {
    "fr": "le chat dort sur la table et la rivière coule sous le vieux pont".split(),
    "en": "the old sailor told a story about the storm and the quiet harbour".split(),
    "es": "el viejo capitán miró el mar y dijo que vendría una tormenta".split(),
    "de": "der wald war still und die kinder gingen mit ihrem großvater spazieren".split(),
    "sa": "धर्मक्षेत्रे कुरुक्षेत्रे समवेता युयुत्सवः मामकाः पाण्डवाश्चैव किमकुर्वत सञ्जय".split(),
    "zh": list("春天来了公园里的花都开了孩子们在草地上放风筝"),
}
ENDS = {"fr": ".", "en": ".", "es": ".", "de": ".", "sa": " ।", "zh": "。"}
DIGITS = {"sa": "कखगघङचछजझञ", "zh": "一二三四五六七八九十"}


def document(language: str, number: int) -> str:
    """Three sentences of the language's words, then a word spelling `number`: no two documents are alike."""
    words, separator = WORDS[language], "" if language == "zh" else " "
    sentences = [separator.join(words[(number * 7 + index * 3 + step) % len(words)] for step in range(5 + index))
                 for index in range(3)]
    name = "".join(DIGITS.get(language, "abcdefghij")[int(digit)] for digit in f"{number:03d}")
    return " ".join(sentence + ENDS[language] for sentence in [*sentences, name]) + "\n"


class CorpusUnderTest:
    """120 documents, 20 per language, in batches of 10."""

    items = 120
    batch_size = 10

    def make_source(self, root: Path) -> list[str]:
        for language in WORDS:
            (root / language).mkdir(parents=True, exist_ok=True)
            for number in range(self.items // len(WORDS)):
                (root / language / f"doc-{number:03d}.txt").write_text(document(language, number), encoding="utf-8")
        return [str(root)]

    def command(self, sources: list[str], destination: Path, job: str, *extra: str) -> list[str]:
        return ["analyze", *sources, str(destination), "--job", job, "--batch-size", str(self.batch_size),
                "--device", "cpu", "--json", *extra]

    def counts(self, report: dict[str, Any]) -> Counts:
        return Counts(done=report["documents_counted"], reused=report["documents_reused"],
                      failed=[failure["item_id"] for failure in report["failed"]], batches_reused=report["batches_reused"])

    def gated_job(self, root: Path, at_batch: int, server: HTTPServer) -> AbstractContextManager[GatedJob]:
        return served_folder_job(self, root, at_batch, server)

    def add_poison_item(self, root: Path) -> str:
        (root / "fr" / "latin-1.txt").write_bytes("Le café est chaud.".encode("latin-1"))
        return "fr/latin-1.txt"

    def tamper(self, job_dir: Path) -> None:
        counts = sorted((job_dir / "counts").rglob("*.json"))[3]
        counts.write_bytes(counts.read_bytes().replace(b'"documents":10', b'"documents":11', 1))

    def outputs(self, job_dir: Path) -> dict[str, bytes]:
        return {path.relative_to(job_dir).as_posix(): path.read_bytes() for path in (job_dir / "counts").rglob("*.json")}

    def webhook_arguments(self, url: str, secret_block: str) -> list[str]:
        return ["--webhook", url, "--webhook-secret-block", secret_block]


CONTRACT = CorpusUnderTest()
