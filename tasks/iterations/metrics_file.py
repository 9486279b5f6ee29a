"""`<job>/metrics.jsonl`: one line per iteration, put together from the checkpoints' segments.

Each checkpoint writes the lines of the iterations since the previous one to
`metrics/<iteration>.jsonl` before its done marker, and a resumed run removes the segments after
the checkpoint in force (tasks/iterations/resume.py). So the segments, in order, hold every
iteration once, and the file is their concatenation, rewritten when a run ends.
"""

from __future__ import annotations

import json

from tasks.engine.job_folder import JobFolder
from tasks.iterations.checkpoints import METRICS_DIR

METRICS_NAME = "metrics.jsonl"


def segment_keys(folder: JobFolder, upto: str) -> list[str]:
    """The segments of checkpoints up to `upto` (a checkpoint name), in order, from one listing."""
    keys = [key for key in folder.sizes(METRICS_DIR) if key.endswith(".jsonl")]
    return sorted(key for key in keys if key.rpartition("/")[2].removesuffix(".jsonl") <= upto)


def write_metrics_file(folder: JobFolder, upto: str) -> bytes:
    """Rewrite `metrics.jsonl` from the segments up to checkpoint `upto`; its content."""
    content = b"".join(folder.read(key) or b"" for key in segment_keys(folder, upto))
    folder.write(METRICS_NAME, content)
    return content


def parse_metrics(content: bytes) -> list[dict[str, float]]:
    """The lines of a metrics file as dicts (the iteration number included)."""
    return [json.loads(line) for line in content.splitlines() if line.strip()]
