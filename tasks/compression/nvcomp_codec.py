"""GPU gzip codec: nvCOMP Deflate on the GPU, framed as standard gzip members on the host.

nvCOMP's Python API (`from nvidia import nvcomp`, wheels `nvidia-nvcomp-cu12`/`-cu13`) encodes a
batch of chunks per `Codec.encode` call. With `BitstreamKind.RAW` each chunk is one input of the
batch and comes back as one bare Deflate stream (RFC 1951), which `frame_raw_deflate` wraps in a
gzip header and a CRC32/ISIZE trailer. The CRC32s are computed with ISA-L on the host while the
GPU compresses: nvCOMP's CRC32 belongs to its C API, not to its Python API. Every GPU stream is
inflated on the host and compared with its chunk before it is framed, because this path has not
yet run on a GPU (docs/gpu.md).

A batch's GPU share goes out as two sub-batches on two CUDA streams, so the second one's copy to
the GPU overlaps the first one's compression. Chunks too small to be worth a transfer (a
threshold measured per GPU name, `tasks.compression.gpu_thresholds`), empty chunks and chunks over
`MAX_GPU_CHUNK_BYTES` go to the CPU codec; `device_for` tells which, so recipes say where each
chunk was really compressed.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache, partial
from types import ModuleType
from typing import BinaryIO, Protocol

from isal import isal_zlib

from tasks.compression.gpu_thresholds import min_gpu_chunk_bytes
from tasks.compression.gzip_framing import (
    frame_raw_deflate,
    stored_deflate,
    stored_member_size,
)
from tasks.compression.nvcomp_backend import (
    NvcompDeflateBackend,
    RawDeflateBackend,
    inflates_to,
    shared_backend,
    version_tuple,
)
from tasks.errors import CorruptOutputError
from tasks.gpu.devices import nvidia_driver_present
from tasks.gpu.oom_backoff import BatchSizeMemory, run_with_oom_backoff

ImportModule = Callable[[str], ModuleType]

OPERATION = "nvcomp-deflate"
# The OOM backoff's budget for this codec is in bytes, so it fits batches of any chunk size.
BACKOFF_OPERATION = "nvcomp-deflate-bytes"
# Batch encode of a list of arrays, asynchronous, with "Deflate" and RAW: read in 5.3.0.16's docstrings.
MINIMUM_NVCOMP = (5, 3)
CUDA_EXTRAS = {12: "gpu", 13: "gpu-cu13"}
MAX_GPU_CHUNK_BYTES = 16 * 1024 * 1024
LANES = 2  # CUDA streams, each with its own nvCOMP codec: one copies while the other compresses
# gzip levels onto nvCOMP Deflate's algorithm_type (1 fast, 2 beats zlib-1 on ratio, 4 beats
# zlib-6, 5 best). Not measured; level 0 never reaches the GPU.
_ALGORITHM_TYPE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 2, 7: 4, 8: 4, 9: 5}
_SMOKE_CHUNK = b"colabflow checks that nvCOMP compresses on this GPU\n" * 2048
_BACKEND_CREATION = threading.Lock()

logger = logging.getLogger("colabflow.codecs")


@lru_cache(maxsize=None)
def log_once(message: str) -> None:
    """Log `message` at INFO the first time only: a codec is resolved again for every batch."""
    logger.info("%s", message)


@dataclass(frozen=True)
class GpuProbe:
    """Whether the GPU codec can run here, and if not, what is missing."""

    usable: bool
    reason: str = ""
    gpu_name: str | None = None
    cuda_version: str | None = None
    nvcomp_version: str | None = None


def _install_hint(cuda_version: str) -> str:
    extra = CUDA_EXTRAS.get(int(cuda_version.split(".")[0]))
    if extra is None:
        return f"colabflow's GPU codec supports CUDA 12 and 13, and torch uses CUDA {cuda_version}"
    return f'pip install "colabflow[{extra}]"'


def _smoke_test(nvcomp: ModuleType, torch: ModuleType) -> str | None:
    """Compress one chunk on the GPU; None when its stream inflates back, else what went wrong."""
    try:
        raw = NvcompDeflateBackend(nvcomp, torch, 1).submit([_SMOKE_CHUNK])()[0]
    except Exception as error:  # noqa: BLE001 - any failure here means the GPU codec cannot run
        return f"{type(error).__name__}: {error}"
    return None if inflates_to(raw, _SMOKE_CHUNK) else "its Deflate stream does not inflate back to the input"


def _torch_problem(torch: ModuleType) -> str | None:
    """Why this torch cannot drive an NVIDIA GPU, or None when it has one with CUDA."""
    hip = getattr(torch.version, "hip", None)
    if hip:
        return (
            f"no CUDA GPU: torch {torch.__version__} is a ROCm build (HIP {hip}), and nvCOMP runs only on "
            "NVIDIA GPUs through CUDA; use --codec cpu, or a CUDA build of torch on an NVIDIA GPU"
        )
    cuda_version = torch.version.cuda
    if not torch.cuda.is_available():
        build = "is a CPU-only build" if cuda_version is None else f"(CUDA {cuda_version}) finds no CUDA GPU or driver"
        return f"no CUDA GPU: torch {torch.__version__} {build}"
    if cuda_version is None:
        return (
            f"no CUDA GPU: torch {torch.__version__} reports a GPU but no CUDA version (torch.version.cuda is None); "
            "nvCOMP needs a CUDA build of torch"
        )
    return None


def gpu_probe(import_module: ImportModule = importlib.import_module) -> GpuProbe:
    """Check torch, CUDA, nvCOMP and a test encode, in that order, and say what is missing."""
    try:
        torch = import_module("torch")
    except ImportError:
        return GpuProbe(False, "torch is not installed, so CUDA cannot be detected (Colab has it; elsewhere install a CUDA build of torch)")
    problem = _torch_problem(torch)
    cuda_version = torch.version.cuda
    if problem is not None or cuda_version is None:
        return GpuProbe(False, problem or "", cuda_version=cuda_version)
    gpu_name = str(torch.cuda.get_device_name(torch.cuda.current_device()))
    try:
        nvcomp = import_module("nvidia.nvcomp")
    except (ImportError, OSError) as error:
        return GpuProbe(False, f"nvCOMP is not installed ({error}); {_install_hint(cuda_version)}", gpu_name, cuda_version)
    version = str(nvcomp.__version__)
    problem = _nvcomp_problem(nvcomp, torch, version, cuda_version, gpu_name)
    return GpuProbe(problem is None, problem or "", gpu_name, cuda_version, version)


def _nvcomp_problem(nvcomp: ModuleType, torch: ModuleType, version: str, cuda_version: str, gpu_name: str) -> str | None:
    """What keeps this nvCOMP from working with this torch and GPU, or None."""
    wheel_cuda = int(nvcomp.__cuda_version__) // 1000
    if wheel_cuda != int(cuda_version.split(".")[0]):
        return (
            f"nvCOMP {version} is built for CUDA {wheel_cuda} but torch uses CUDA {cuda_version}; "
            f"pip uninstall -y nvidia-nvcomp-cu{wheel_cuda} nvidia-libnvcomp-cu{wheel_cuda}, then {_install_hint(cuda_version)}"
        )
    if version_tuple(version) < MINIMUM_NVCOMP:
        oldest = ".".join(map(str, MINIMUM_NVCOMP))
        return f"nvCOMP {version} is older than {oldest}, whose batch encode this codec uses; {_install_hint(cuda_version)}"
    failure = _smoke_test(nvcomp, torch)
    return None if failure is None else f"nvCOMP {version} could not compress a test chunk on {gpu_name}: {failure}"


@lru_cache(maxsize=1)
def local_gpu_probe() -> GpuProbe:
    """`gpu_probe()` for this process, run once: the answer does not change while it runs.

    Without an NVIDIA driver it answers at once: importing torch to learn that costs a CPU job
    1.5 s or more per process (benchmarks/pipeline.py).
    """
    if not nvidia_driver_present():
        return GpuProbe(False, "no CUDA GPU: this machine has no NVIDIA driver (no /proc/driver/nvidia, no nvidia-smi)")
    return gpu_probe()


def split_by_bytes(chunks: Sequence[bytes], parts: int) -> list[list[bytes]]:
    """Up to `parts` consecutive, non-empty runs of `chunks` with about equal bytes each."""
    total, done = sum(map(len, chunks)), 0
    runs: list[list[bytes]] = []
    current: list[bytes] = []
    for chunk in chunks:
        current.append(chunk)
        done += len(chunk)
        if len(runs) < parts - 1 and done * parts >= total * (len(runs) + 1):
            runs.append(current)
            current = []
    return [run for run in [*runs, current] if run]


class HostCodec(Protocol):
    """The CPU codec that takes the chunks the GPU should not."""

    @property
    def version(self) -> str: ...

    def compress(self, data: bytes) -> bytes: ...

    def compress_stream(self, reader: BinaryIO, writer: BinaryIO, size: int) -> None: ...


class NvcompGzipCodec:
    """nvCOMP Deflate on the GPU in batches, framed as gzip; small, empty and huge chunks on the CPU."""

    name = OPERATION

    def __init__(
        self,
        level: int,
        gpu_name: str,
        nvcomp_version: str,
        cpu: HostCodec,
        memory: BatchSizeMemory | None = None,
        backend: Callable[[int], RawDeflateBackend] | None = None,
        min_chunk_bytes: int | None = None,
    ) -> None:
        self.level = level
        self.device = gpu_name
        self.version = f"{nvcomp_version}+isal-{cpu.version}"
        self.cpu = cpu
        self.memory = memory or BatchSizeMemory()
        if min_chunk_bytes is None:
            min_chunk_bytes = min_gpu_chunk_bytes(gpu_name, self.memory.place, never=MAX_GPU_CHUNK_BYTES + 1)
        self.min_chunk_bytes = max(1, min_chunk_bytes)
        self._make_backend = backend or partial(shared_backend, _ALGORITHM_TYPE.get(level, 1))
        self._backends: dict[int, RawDeflateBackend] = {}

    def device_for(self, size: int) -> str:
        """Where a chunk of `size` bytes is compressed: this GPU, or 'cpu' when it is not worth it."""
        return self.device if self.level > 0 and self.min_chunk_bytes <= size <= MAX_GPU_CHUNK_BYTES else "cpu"

    def compress(self, data: bytes) -> bytes:
        """One chunk: a batch of one, so prefer `compress_many` for throughput."""
        return self.compress_many([data])[0]

    def compress_many(self, chunks: Sequence[bytes]) -> list[bytes]:
        """One gzip member per chunk, in order; the GPU's share goes in as few encode calls as fit."""
        on_gpu = [index for index, chunk in enumerate(chunks) if self.device_for(len(chunk)) != "cpu"]
        gpu_chunks = [chunks[index] for index in on_gpu]
        with ThreadPoolExecutor() as pool:
            members = {index: pool.submit(self.cpu.compress, chunk) for index, chunk in enumerate(chunks)
                       if self.device_for(len(chunk)) == "cpu"}
            compressed = run_with_oom_backoff(
                BACKOFF_OPERATION, gpu_chunks, partial(self._compress_on_gpu, pool), self.device, self.memory, weigh=len,
            )
            done = dict(zip(on_gpu, compressed)) | {index: future.result() for index, future in members.items()}
        return [done[index] for index in range(len(chunks))]

    def compress_stream(self, reader: BinaryIO, writer: BinaryIO, size: int) -> None:
        """A chunk the GPU takes is read whole (at most MAX_GPU_CHUNK_BYTES); others stream on the CPU."""
        if self.device_for(size) == "cpu":
            self.cpu.compress_stream(reader, writer, size)
        else:
            writer.write(self.compress(reader.read(size)))

    def _backend(self, lane: int) -> RawDeflateBackend:
        with _BACKEND_CREATION:
            if lane not in self._backends:
                self._backends[lane] = self._make_backend(lane)
            return self._backends[lane]

    def _compress_on_gpu(self, pool: Executor, chunks: list[bytes]) -> list[bytes]:
        """Submit every sub-batch before waiting for any, so one's copy overlaps another's encode."""
        runs = split_by_bytes(chunks, LANES)
        backends = [self._backend(lane) for lane in range(len(runs))]
        with ExitStack() as held:
            for backend in backends:  # always in lane order, so two threads cannot deadlock
                held.enter_context(backend.lock)
            waits = [backend.submit(run) for backend, run in zip(backends, runs)]
            crcs = list(pool.map(isal_zlib.crc32, chunks))
            streams = [stream for wait in waits for stream in wait()]
        return list(pool.map(self._member, chunks, streams, crcs))

    def _member(self, data: bytes, raw: bytes, crc32: int) -> bytes:
        """Frame a checked GPU stream as a gzip member, or store the chunk if that is smaller."""
        if not inflates_to(raw, data):
            raise CorruptOutputError(
                f"nvCOMP ({self.version}) on {self.device} returned a Deflate stream that does not inflate "
                f"back to its {len(data)}-byte chunk; nothing was written for it: rerun with --codec cpu, "
                "and report this with the GPU name and nvCOMP version"
            )
        member = frame_raw_deflate(raw, crc32, len(data))
        if len(member) > stored_member_size(len(data)):
            return frame_raw_deflate(stored_deflate(data), crc32, len(data))
        return member
