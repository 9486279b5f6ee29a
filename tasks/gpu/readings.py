"""Device readings after a batch: the GPU through NVML and torch.cuda, or the CPU host through psutil.

On a GPU, NVML (`pynvml` from nvidia-ml-py) gives the device's memory, utilisation and
temperature and torch.cuda its allocator's figures; a CPU host reports CPU % and RAM.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime, timezone
from types import ModuleType
from typing import Any, Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field

ImportModule = Callable[[str], ModuleType]

psutil.cpu_percent(interval=None)  # opens the window that the first CPU reading averages over


class DeviceReading(BaseModel):
    """What the device looked like right after a batch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time: datetime
    device_kind: Literal["gpu", "cpu"]
    device_name: str = Field(description="The GPU's name, as recipes record it, or 'cpu'.")
    memory_used_bytes: int | None = Field(default=None, description="GPU: in use on the whole device; CPU: RAM in use.")
    memory_reserved_bytes: int | None = Field(default=None, description="Held by torch's caching allocator (GPU).")
    memory_allocated_bytes: int | None = Field(default=None, description="In live torch tensors (GPU).")
    peak_allocated_bytes: int | None = Field(default=None, description="torch's peak since the worker started (GPU).")
    memory_total_bytes: int | None = None
    utilization_percent: float | None = Field(default=None, description="GPU: NVML's last sample; CPU: since the last reading.")
    temperature_c: float | None = None
    sources: tuple[str, ...] = Field(default=(), description="What the figures came from: nvml, torch, psutil.")


def _optional_module(import_module: ImportModule, name: str) -> ModuleType | None:
    try:
        return import_module(name)
    except ImportError:
        return None


def _nvml_figures(pynvml: ModuleType, index: int) -> dict[str, Any]:
    """Memory, utilisation and temperature from NVML; empty when NVML cannot answer.

    NVML counts devices in PCI order and CUDA may not (CUDA_DEVICE_ORDER); with one GPU, as on
    Colab, index 0 is the same device for both.
    """
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return {}
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return {
            "memory_used_bytes": int(memory.used), "memory_total_bytes": int(memory.total),
            "utilization_percent": float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            "temperature_c": float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
        }
    except pynvml.NVMLError:
        return {}
    finally:
        pynvml.nvmlShutdown()


def _gpu_reading(torch: ModuleType, pynvml: ModuleType | None, now: datetime) -> DeviceReading:
    index = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(index)
    figures: dict[str, Any] = {
        "memory_used_bytes": int(total - free), "memory_total_bytes": int(total),
        "memory_reserved_bytes": int(torch.cuda.memory_reserved(index)),
        "memory_allocated_bytes": int(torch.cuda.memory_allocated(index)),
        "peak_allocated_bytes": int(torch.cuda.max_memory_allocated(index)),
    }
    nvml = _nvml_figures(pynvml, index) if pynvml is not None else {}
    return DeviceReading(
        time=now, device_kind="gpu", device_name=str(torch.cuda.get_device_name(index)), **(figures | nvml),
        sources=("torch", "nvml") if nvml else ("torch",),
    )


def read_device_telemetry(import_module: ImportModule = importlib.import_module) -> DeviceReading:
    """Read the GPU torch works on, or the CPU host when there is none."""
    now = datetime.now(timezone.utc)
    torch = _optional_module(import_module, "torch")
    if torch is not None and torch.cuda.is_available():
        return _gpu_reading(torch, _optional_module(import_module, "pynvml"), now)
    ram = psutil.virtual_memory()
    return DeviceReading(
        time=now, device_kind="cpu", device_name="cpu", memory_used_bytes=int(ram.total - ram.available),
        memory_total_bytes=int(ram.total), utilization_percent=float(psutil.cpu_percent(interval=None)),
        sources=("psutil",),
    )
