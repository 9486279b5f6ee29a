"""The small-chunk threshold of the GPU codec, measured per GPU name and kept on result storage.

A chunk smaller than the threshold is not worth a transfer to the GPU. `python -m benchmarks.codec
--results LOCATION` races the GPU codec against ISA-L on all cores and records the smallest chunk
size at which the GPU wins, or that it never won, in `.colabflow/gpu-thresholds.json` under the
result storage, next to the OOM backoff's `.colabflow/batch-sizes.json`. Every worker with that
GPU model reads it from there. An unmeasured GPU gets a labelled default, logged once.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, PositiveInt

from tasks.storage.places import Place
from tasks.storage.records import read_record, write_record

THRESHOLDS_KEY = ".colabflow/gpu-thresholds.json"
# Used until the GPU is measured: nvCOMP's default `uncomp_chunk_size`, the size its batch
# kernels are built around. A guess, not a measurement.
DEFAULT_MIN_GPU_CHUNK_BYTES = 64 * 1024

logger = logging.getLogger("colabflow.codecs")


class GpuThresholds(BaseModel):
    """GPU threshold file"""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    min_gpu_chunk_bytes: dict[str, PositiveInt | None] = {}  # None: the GPU never beat the CPU


@lru_cache(maxsize=None)
def _log_once(message: str) -> None:
    """Log at INFO the first time only: a codec is built again for every batch."""
    logger.info("%s", message)


def read_thresholds(place: Place) -> dict[str, int | None]:
    """The measured thresholds on result storage, by GPU name (None: the GPU never won)."""
    record = read_record(place, THRESHOLDS_KEY, GpuThresholds)
    return dict(record.min_gpu_chunk_bytes) if record else {}


def record_threshold(place: Place, gpu_name: str, min_chunk_bytes: int | None) -> None:
    """Keep a GPU's measured threshold (None: it never won) next to the other GPUs' ones."""
    record = read_record(place, THRESHOLDS_KEY, GpuThresholds) or GpuThresholds()
    record.min_gpu_chunk_bytes[gpu_name] = min_chunk_bytes
    write_record(place, THRESHOLDS_KEY, record)


def min_gpu_chunk_bytes(gpu_name: str, place: Place | None, never: int) -> int:
    """The smallest chunk worth sending to this GPU, as recorded under `place`.

    A GPU recorded as never beating the CPU gets `never` (a size no chunk reaches the GPU at);
    an unmeasured one gets `DEFAULT_MIN_GPU_CHUNK_BYTES`.
    """
    where = place.uri(place.key(THRESHOLDS_KEY)) if place else "no result storage"
    thresholds = read_thresholds(place) if place else {}
    if gpu_name not in thresholds:
        _log_once(
            f"small-chunk threshold for {gpu_name}: not measured ({where}), so chunks under the unmeasured "
            f"default of {DEFAULT_MIN_GPU_CHUNK_BYTES} bytes stay on the CPU; measure it with "
            "`python -m benchmarks.codec --results <result storage>` (docs/gpu.md)"
        )
        return DEFAULT_MIN_GPU_CHUNK_BYTES
    measured = thresholds[gpu_name]
    if measured is None:
        _log_once(f"small-chunk threshold for {gpu_name}: measured as never beating the CPU ({where}), so every chunk stays on the CPU")
        return never
    return measured
