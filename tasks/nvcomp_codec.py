"""GPU gzip codec: nvCOMP Deflate on the GPU, framed as standard gzip members on the host.

nvCOMP's Python API (`from nvidia import nvcomp`, wheels `nvidia-nvcomp-cu12`/`-cu13`) encodes a
batch of chunks per `Codec.encode` call. With `BitstreamKind.RAW` each output is a bare Deflate
stream (RFC 1951), which `frame_raw_deflate` wraps in a gzip header and a CRC32/ISIZE trailer.
The CRC32s are computed with ISA-L on the host while the GPU compresses: nvCOMP's CRC32 belongs
to its C API, not to its Python API. Every GPU stream is inflated on the host and compared with
its chunk before it is framed, because this path has not yet run on a GPU (docs/gpu.md).

Chunks too small to be worth a transfer (a threshold per GPU name), empty chunks and chunks over
`MAX_GPU_CHUNK_BYTES` go to the CPU codec; `device_for` tells which, so recipes say where each
chunk was really compressed.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Protocol

from isal import isal_zlib

from tasks.errors import CorruptOutputError
from tasks.gzip_framing import frame_raw_deflate, stored_deflate, stored_member_size
from tasks.oom_backoff import BatchSizeMemory, run_with_oom_backoff

ImportModule = Callable[[str], ModuleType]

OPERATION = "nvcomp-deflate"
MINIMUM_NVCOMP_MAJOR = 6  # `Codec.encode` takes and returns an `nvcomp.BatchArray` from 6.0 on
CUDA_EXTRAS = {12: "gpu", 13: "gpu-cu13"}
MAX_GPU_CHUNK_BYTES = 16 * 1024 * 1024
# nvCOMP's default `uncomp_chunk_size`, the size its batch kernels are built around. Not measured.
DEFAULT_MIN_GPU_CHUNK_BYTES = 64 * 1024
# Smallest chunk worth sending to each GPU, as `python -m benchmarks.codec` measures it on that GPU
# ("gpu_min_chunk_bytes"), keyed by torch.cuda.get_device_name(). Nothing is measured yet.
MEASURED_MIN_GPU_CHUNK_BYTES: dict[str, int] = {}
# gzip levels onto nvCOMP Deflate's algorithm_type (1 fast, 2 beats zlib-1 on ratio, 4 beats
# zlib-6, 5 best). Not measured; level 0 never reaches the GPU.
_ALGORITHM_TYPE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 2, 6: 2, 7: 4, 8: 4, 9: 5}
_SMOKE_CHUNK = b"colabflow checks that nvCOMP compresses on this GPU\n" * 2048

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
    return None if _inflates_to(raw, _SMOKE_CHUNK) else "its Deflate stream does not inflate back to the input"


def gpu_probe(import_module: ImportModule = importlib.import_module) -> GpuProbe:
    """Check torch, CUDA, nvCOMP and a test encode, in that order, and say what is missing."""
    try:
        torch = import_module("torch")
    except ImportError:
        return GpuProbe(False, "torch is not installed, so CUDA cannot be detected (Colab has it; elsewhere install a CUDA build of torch)")
    cuda_version = torch.version.cuda
    if not torch.cuda.is_available():
        build = "is a CPU-only build" if cuda_version is None else f"(CUDA {cuda_version}) finds no CUDA GPU or driver"
        return GpuProbe(False, f"no CUDA GPU: torch {torch.__version__} {build}", cuda_version=cuda_version)
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
    if int(version.split(".")[0]) < MINIMUM_NVCOMP_MAJOR:
        return f"nvCOMP {version} is older than {MINIMUM_NVCOMP_MAJOR}.0, whose batch API this codec uses; {_install_hint(cuda_version)}"
    failure = _smoke_test(nvcomp, torch)
    return None if failure is None else f"nvCOMP {version} could not compress a test chunk on {gpu_name}: {failure}"


def nvidia_driver_present() -> bool:
    """Whether this machine has an NVIDIA driver: the kernel module's /proc entry, or nvidia-smi."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


@lru_cache(maxsize=1)
def local_gpu_probe() -> GpuProbe:
    """`gpu_probe()` for this process, run once: the answer does not change while it runs.

    Without an NVIDIA driver it answers at once: importing torch to learn that costs a CPU job
    1.5 s or more per process (benchmarks/pipeline.py).
    """
    if not nvidia_driver_present():
        return GpuProbe(False, "no CUDA GPU: this machine has no NVIDIA driver (no /proc/driver/nvidia, no nvidia-smi)")
    return gpu_probe()


def min_gpu_chunk_bytes(gpu_name: str) -> int:
    """The smallest chunk worth sending to this GPU: measured if the table has it, else the default."""
    measured = MEASURED_MIN_GPU_CHUNK_BYTES.get(gpu_name)
    if measured is not None:
        return measured
    log_once(
        f"no measured small-chunk threshold for {gpu_name}: chunks under {DEFAULT_MIN_GPU_CHUNK_BYTES} "
        "bytes stay on the CPU (an unmeasured default; see docs/gpu.md)"
    )
    return DEFAULT_MIN_GPU_CHUNK_BYTES


def aligned_offsets(sizes: Sequence[int], alignment: int) -> tuple[list[int], int]:
    """Offsets that place each size at a multiple of `alignment` in one buffer, and its length."""
    offsets: list[int] = []
    end = 0
    for size in sizes:
        start = -(-end // alignment) * alignment
        offsets.append(start)
        end = start + size
    return offsets, end


def _inflates_to(raw: bytes, data: bytes) -> bool:
    """True when `raw` is exactly one Deflate stream that inflates to `data`."""
    inflater = isal_zlib.decompressobj(wbits=-15)
    return bool(inflater.decompress(raw) == data and inflater.eof and not inflater.unused_data)


class RawDeflateBackend(Protocol):
    """What the codec needs from a GPU: raw Deflate streams for a list of chunks."""

    def submit(self, chunks: Sequence[bytes]) -> Callable[[], list[bytes]]:
        """Start compressing `chunks`; the returned function waits and gives one stream per chunk."""
        ...


class NvcompDeflateBackend:
    """nvCOMP Deflate (RAW bitstream) on the current CUDA device, one `encode` per sub-batch.

    The chunks are packed into one pinned host buffer at the codec's required alignment, copied
    to the GPU asynchronously, encoded and copied back, all on one CUDA stream, so the steps run
    in order without the host waiting between them. Not thread-safe: `NvcompGzipCodec` serializes.
    """

    def __init__(self, nvcomp: ModuleType, torch: ModuleType, algorithm_type: int) -> None:
        self.nvcomp, self.torch = nvcomp, torch
        self.device = torch.device("cuda", torch.cuda.current_device())
        self.stream = torch.cuda.Stream(self.device)
        self.codec = nvcomp.Codec(
            algorithm="Deflate", bitstream_kind=nvcomp.BitstreamKind.RAW, algorithm_type=algorithm_type,
            device_id=self.device.index, cuda_stream=self.stream.cuda_stream,
        )
        self.alignment = max(1, int(self.codec.get_required_compression_alignment()))

    def submit(self, chunks: Sequence[bytes]) -> Callable[[], list[bytes]]:
        offsets, length = aligned_offsets([len(chunk) for chunk in chunks], self.alignment)
        staging = bytearray(length)
        for offset, chunk in zip(offsets, chunks):
            staging[offset : offset + len(chunk)] = chunk
        pinned = self.torch.frombuffer(staging, dtype=self.torch.uint8).pin_memory()
        with self.torch.cuda.stream(self.stream):
            on_device = pinned.to(self.device, non_blocking=True)
        views = [on_device[offset : offset + len(chunk)] for offset, chunk in zip(offsets, chunks)]
        encoded = self.codec.encode(self.nvcomp.as_arrays(views, cuda_stream=self.stream.cuda_stream))
        return _PendingEncode(encoded, (pinned, on_device, views))


@dataclass(frozen=True)
class _PendingEncode:
    """An encode in flight; calling it waits and returns the streams."""

    encoded: Any
    buffers: tuple[Any, ...]  # the pinned and device copies must outlive the asynchronous work

    def __call__(self) -> list[bytes]:
        host = self.encoded.cpu()  # waits for the copy, the encode and the copy back
        return [bytes(host[index]) for index in range(len(host))]


@lru_cache(maxsize=None)
def _shared_backend(algorithm_type: int) -> RawDeflateBackend:
    """One nvCOMP codec per process and algorithm type: creating one allocates on the GPU."""
    return NvcompDeflateBackend(importlib.import_module("nvidia.nvcomp"), importlib.import_module("torch"), algorithm_type)


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
        backend: Callable[[], RawDeflateBackend] | None = None,
        min_chunk_bytes: int | None = None,
    ) -> None:
        self.level = level
        self.device = gpu_name
        self.version = f"{nvcomp_version}+isal-{cpu.version}"
        self.cpu = cpu
        self.memory = memory or BatchSizeMemory()
        self.min_chunk_bytes = max(1, min_gpu_chunk_bytes(gpu_name) if min_chunk_bytes is None else min_chunk_bytes)
        self._make_backend = backend or partial(_shared_backend, _ALGORITHM_TYPE.get(level, 1))
        self._backend: RawDeflateBackend | None = None
        self._gpu_lock = threading.Lock()

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
            compressed = run_with_oom_backoff(OPERATION, gpu_chunks, partial(self._compress_on_gpu, pool), self.device, self.memory)
            done = dict(zip(on_gpu, compressed)) | {index: future.result() for index, future in members.items()}
        return [done[index] for index in range(len(chunks))]

    def compress_stream(self, reader: BinaryIO, writer: BinaryIO, size: int) -> None:
        """A chunk the GPU takes is read whole (at most MAX_GPU_CHUNK_BYTES); others stream on the CPU."""
        if self.device_for(size) == "cpu":
            self.cpu.compress_stream(reader, writer, size)
        else:
            writer.write(self.compress(reader.read(size)))

    def _compress_on_gpu(self, pool: Executor, chunks: list[bytes]) -> list[bytes]:
        with self._gpu_lock:
            if self._backend is None:
                self._backend = self._make_backend()
            wait = self._backend.submit(chunks)
            crcs = list(pool.map(isal_zlib.crc32, chunks))
            streams = wait()
        return list(pool.map(self._member, chunks, streams, crcs))

    def _member(self, data: bytes, raw: bytes, crc32: int) -> bytes:
        """Frame a checked GPU stream as a gzip member, or store the chunk if that is smaller."""
        if not _inflates_to(raw, data):
            raise CorruptOutputError(
                f"nvCOMP ({self.version}) on {self.device} returned a Deflate stream that does not inflate "
                f"back to its {len(data)}-byte chunk; nothing was written for it: rerun with --codec cpu, "
                "and report this with the GPU name and nvCOMP version"
            )
        member = frame_raw_deflate(raw, crc32, len(data))
        if len(member) > stored_member_size(len(data)):
            return frame_raw_deflate(stored_deflate(data), crc32, len(data))
        return member
