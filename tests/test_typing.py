from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_source_passes_strict_mypy() -> None:
    """flows/, tasks/ and blocks/ type-check under `mypy --strict` (pyproject's settings)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=Path(__file__).parent.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
