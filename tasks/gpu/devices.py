"""The machine's GPU, found without importing torch where it can be: driver, name and work-queue class."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

GPU_CLASSES = ("a100", "l4", "t4")


def gpu_class_of(device_name: str) -> str:
    """Map a GPU's name to a work queue: a100, l4, t4, or any for other GPUs."""
    lowered = device_name.lower()
    for gpu_class in GPU_CLASSES:
        if gpu_class in lowered.replace(" ", ""):
            return gpu_class
    return "any"


def detect_gpu_name() -> str | None:
    """The first GPU's name, through torch.cuda when torch is there, else nvidia-smi; None without one."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    if shutil.which("nvidia-smi") is None:
        return None
    query = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=False
    )
    names = query.stdout.strip().splitlines()
    return names[0].strip() if query.returncode == 0 and names else None


def nvidia_driver_present() -> bool:
    """Whether this machine has an NVIDIA driver: the kernel module's /proc entry, or nvidia-smi."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None
