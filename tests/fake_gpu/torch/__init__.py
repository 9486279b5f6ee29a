"""A stand-in for torch, for tests that put tests/fake_gpu first on sys.path.

FAKE_GPU_TORCH picks what it is: `missing` (importing it fails, as without torch), `no-cuda`
(torch.cuda finds no GPU), or a GPU name (torch.cuda finds that GPU).
"""

from __future__ import annotations

import os
import types

_MODE = os.environ.get("FAKE_GPU_TORCH", "missing")
if _MODE == "missing":
    raise ImportError("No module named 'torch' (tests/fake_gpu stands in for a machine without torch)")


def _is_available() -> bool:
    return _MODE != "no-cuda"


def _get_device_name(index: int = 0) -> str:
    return _MODE


cuda = types.SimpleNamespace(is_available=_is_available, get_device_name=_get_device_name)
__version__ = "2.8.0+fake"
