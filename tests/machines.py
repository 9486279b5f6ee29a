"""The machine a test assumes, on any host: no GPU or a stand-in GPU, made so; or a real CUDA GPU, required.

The suite runs on CPU-only machines and on the GPU hosts colabflow targets (Colab runtimes, lab
boxes). A test that needs the CPU-only view forces it through the seams detection reads, whatever
the host has: torch.cuda (hidden by `CUDA_VISIBLE_DEVICES=""` in a child process, or by
`torch.cuda.is_available` in this one) and the `nvidia-smi` first on PATH. The NVIDIA driver's
/proc entry stays visible; with both seams saying no GPU, nothing is detected through it.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

try:
    import torch
except ImportError:  # a venv without torch (`make demo`'s) has no CUDA either
    torch = None  # type: ignore[assignment]

NO_DRIVER = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."

# Next to the `gpu` marker: the test is skipped, saying why, where torch sees no CUDA GPU.
needs_cuda = pytest.mark.skipif(
    torch is None or not torch.cuda.is_available(),
    reason="needs a CUDA GPU: " + ("torch is not installed" if torch is None else f"torch {torch.__version__} sees none"),
)


def fake_nvidia_smi(folder: Path, gpu_names: Sequence[str] = ()) -> Path:
    """Write `folder/nvidia-smi`, which lists `gpu_names` one a line, or fails as without a driver when
    there are none; return `folder`, to go first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    if gpu_names:
        smi.write_text(f"#!/bin/sh\nprintf '%s\\n' {' '.join(shlex.quote(name) for name in gpu_names)}\n")
    else:
        smi.write_text(f"#!/bin/sh\necho {shlex.quote(NO_DRIVER)}\nexit 9\n")
    smi.chmod(0o755)
    return folder


def without_gpu(env: Mapping[str, str], folder: Path) -> dict[str, str]:
    """`env` for a child process that finds no GPU on any host: torch sees no CUDA, nvidia-smi fails."""
    return {**env, "CUDA_VISIBLE_DEVICES": "", "PATH": f"{fake_nvidia_smi(folder)}{os.pathsep}{env['PATH']}"}


def with_gpu_named(env: Mapping[str, str], folder: Path, name: str) -> dict[str, str]:
    """`env` for a child process whose only GPU is `name`, seen through nvidia-smi: torch sees no CUDA."""
    return {**env, "CUDA_VISIBLE_DEVICES": "", "PATH": f"{fake_nvidia_smi(folder, [name])}{os.pathsep}{env['PATH']}"}


def _forget_this_machine() -> None:
    """Drop what this process remembers of its GPU: the codec's probe and the GPU its runtime is billed for.

    Only modules already imported can remember anything, so none is imported here.
    """
    probe = sys.modules.get("tasks.compression.nvcomp_codec")
    if probe is not None:
        probe.local_gpu_probe.cache_clear()
    spend = sys.modules.get("tasks.engine.spend")
    if spend is not None:
        spend._runtime_gpu_name.cache_clear()


@contextmanager
def gpu_hidden(folder: Path) -> Iterator[None]:
    """Inside, this process finds no GPU on any host: torch.cuda sees none and nvidia-smi fails.

    What the process remembered of its GPU is forgotten on the way in and out, so the code inside
    detects the hidden machine and the code after it the real one again.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{fake_nvidia_smi(folder)}{os.pathsep}{os.environ['PATH']}")
        if torch is not None:
            patch.setattr(torch.cuda, "is_available", lambda: False)
        _forget_this_machine()
        try:
            yield
        finally:
            _forget_this_machine()
