"""The pool soak's jobs: one of each kind in turn, their inputs, and what each must end with.

Each job is submitted as `prefect deployment run <deployment> --params '{"request": {...}}'`
and checked afterwards with `colabflow verify`, and for an iterative job with its metrics file,
against the number of items (chunks, records, documents, iterations) it was given.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import make_chunks

KINDS = ("compress", "map", "iterate", "analyze")
DEPLOYMENTS = {
    "compress": "compress-chunks/colab-gpu",
    "map": "map-items/colab-gpu",
    "iterate": "iterate/colab-gpu",
    "analyze": "analyze-corpus/weekly",
}
CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "corpus"
VERIFIED = re.compile(r"verified (\d+) of (\d+) items")


@dataclass(frozen=True)
class SoakJob:
    """One job of the soak: its kind, its request, where its folder lands and how many items it holds."""

    kind: str
    name: str
    request: dict[str, Any]
    items: int

    @property
    def deployment(self) -> str:
        return DEPLOYMENTS[self.kind]

    @property
    def folder(self) -> Path:
        return Path(self.request["destination"]) / self.name


def build_jobs(scratch: Path, count: int, scale: int, iterate_program: str) -> list[SoakJob]:
    """`count` jobs, the kinds in turn; `scale` sets the chunks, records, corpus copies and iterations of each."""
    return [_job(scratch, KINDS[index % len(KINDS)], f"soak-{index:02d}", scale, iterate_program, index)
            for index in range(count)]


def _job(scratch: Path, kind: str, name: str, scale: int, iterate_program: str, seed: int) -> SoakJob:
    inputs, destination = scratch / "inputs" / name, str(scratch / "out")
    if kind == "compress":
        source = make_chunks(inputs, 40 * scale, 1024)
        return SoakJob(kind, name, {"source": [str(source)], "destination": destination, "job": name,
                                    "batch_size": 10}, 40 * scale)
    if kind == "map":
        items = inputs / "items.jsonl"
        items.parent.mkdir(parents=True, exist_ok=True)
        items.write_text("".join(json.dumps({"id": f"item-{number:05d}", "text": f"record {number} " * (number % 7 + 1)})
                                 + "\n" for number in range(40 * scale)))
        return SoakJob(kind, name, {"items": str(items), "destination": destination, "job": name,
                                    "function": "tasks.batch_map.examples.text:measure", "batch_size": 10}, 40 * scale)
    if kind == "iterate":
        iterations = 2000 * scale
        return SoakJob(kind, name, {"destination": destination, "job": name, "program": iterate_program,
                                    "iterations": iterations, "checkpoint_every_iterations": 500 * scale,
                                    "seed": seed}, iterations)
    documents = _corpus_copies(inputs, scale)
    # An analysis shares its counts with every job at its destination: each soak analysis has its own.
    return SoakJob(kind, name, {"sources": [str(inputs)], "destination": str(scratch / "analyses" / name),
                                "job": name, "batch_size": 4}, documents)


def _corpus_copies(target: Path, copies: int) -> int:
    """`copies` copies of the test corpus side by side under each language's folder; the number of documents."""
    documents = 0
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file():
            for copy in range(copies):
                relative = path.relative_to(CORPUS)
                destination = target / relative.parent / f"{copy}-{relative.name}"
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)
                documents += 1
    return documents


def check_outputs(job: SoakJob, env: dict[str, str]) -> dict[str, Any]:
    """`colabflow verify` on the job folder, and the iterations in an iterative job's metrics: lost and duplicated items."""
    folder = job.folder
    verify = subprocess.run([str(Path(sys.executable).parent / "colabflow"), "verify", str(folder)], env=env,
                            capture_output=True, text=True, timeout=600)
    found = VERIFIED.search(verify.stdout)
    good, listed = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
    if job.kind == "iterate":
        metrics = folder / "metrics.jsonl"
        iterations = [json.loads(line)["iteration"] for line in metrics.read_text().splitlines()] if metrics.is_file() else []
        distinct = set(iterations)
        lost, duplicated = job.items - len(distinct & set(range(job.items))), len(iterations) - len(distinct)
    else:
        lost, duplicated = max(job.items - good, 0), max(listed - job.items, 0)
    return {"job": job.name, "kind": job.kind, "verified": verify.returncode == 0, "lost": lost,
            "duplicated": duplicated, "verify": (verify.stdout + verify.stderr).strip()[-500:]}
