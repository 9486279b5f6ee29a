"""Smoke test of the chaos benchmark: one kill on a small job, as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_chaos_benchmark_loses_nothing_after_one_kill() -> None:
    """One kill of the worker mid-job: the run completes with nothing lost, duplicated or changed."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--kills", "1", "--chunks", "300", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (figures["chunks"], figures["kills"]) == (300, 1), figures
    assert (figures["lost"], figures["duplicates"], figures["changed_after_kill"]) == (0, 0, 0), figures
    assert figures["identical"] is True, figures
    assert max(figures["redone_batches"], figures["batches_run_again"]) <= figures["kills"], figures
    assert figures["recovery_s_median"] > 0, figures
