"""Where a benchmark ran: the CPU, the cores this process may use, the Python, the commit and its changes."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """The machine and the code a benchmark measured (the files changed since the commit, taken at the start)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False).stdout

    models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")]
    return {"cpu": models[0] if models else "unknown", "cpu_count": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "commit": git("rev-parse", "--short", "HEAD").strip(),
            "dirty_files": [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]}
