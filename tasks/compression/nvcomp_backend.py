"""The nvCOMP side of the GPU codec: raw Deflate streams for a list of chunks, on one CUDA stream.

`NvcompDeflateBackend` is the only code that calls nvCOMP's Python API to compress. It has not
yet run on a GPU (docs/gpu.md lists what is unverified); `inflates_to` is the host check that
every stream it returns must pass before it is framed as gzip.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any, Protocol

from isal import isal_zlib

BATCH_ARRAY_MAJOR = 6  # from 6.0 on, `encode` takes and returns an `nvcomp.BatchArray`, not a list


def version_tuple(version: str) -> tuple[int, ...]:
    """(major, minor) of a version such as '6.0.0.12'."""
    return tuple(int(part) for part in version.split(".")[:2])


def aligned_offsets(sizes: Sequence[int], alignment: int) -> tuple[list[int], int]:
    """Offsets that place each size at a multiple of `alignment` in one buffer, and its length."""
    offsets: list[int] = []
    end = 0
    for size in sizes:
        start = -(-end // alignment) * alignment
        offsets.append(start)
        end = start + size
    return offsets, end


def inflates_to(raw: bytes, data: bytes) -> bool:
    """True when `raw` is exactly one Deflate stream that inflates to `data`, with nothing after it."""
    inflater = isal_zlib.decompressobj(wbits=-15)
    return bool(inflater.decompress(raw) == data and inflater.eof and not inflater.unused_data)


class RawDeflateBackend(Protocol):
    """What the codec needs from a GPU: raw Deflate streams for a list of chunks."""

    lock: threading.Lock  # held from submit until the streams are back: one encode at a time

    def submit(self, chunks: Sequence[bytes]) -> Callable[[], list[bytes]]:
        """Start compressing `chunks`; the returned function waits and gives one stream per chunk."""
        ...


class NvcompDeflateBackend:
    """nvCOMP Deflate (RAW bitstream) on its own CUDA stream of the current device.

    The chunks are packed into one pinned host buffer at the codec's required alignment and
    copied to the GPU asynchronously. nvCOMP 6 takes that buffer with offsets and sizes
    (`nvcomp.as_arrays(buffer, offsets=, sizes=)`, a `BatchArray`); 5.3 to 5.x take a list of
    views of it. The copy, the encode and the copy back run in order on the stream without the
    host waiting between them. Not thread-safe: callers hold `lock`.
    """

    def __init__(self, nvcomp: ModuleType, torch: ModuleType, algorithm_type: int) -> None:
        self.nvcomp, self.torch = nvcomp, torch
        self.lock = threading.Lock()
        self.device = torch.device("cuda", torch.cuda.current_device())
        self.stream = torch.cuda.Stream(self.device)
        self.codec = nvcomp.Codec(
            algorithm="Deflate", bitstream_kind=nvcomp.BitstreamKind.RAW, algorithm_type=algorithm_type,
            device_id=self.device.index, cuda_stream=self.stream.cuda_stream,
        )
        self.alignment = max(1, int(self.codec.get_required_compression_alignment()))
        self.batch_array = version_tuple(str(nvcomp.__version__))[0] >= BATCH_ARRAY_MAJOR

    def submit(self, chunks: Sequence[bytes]) -> Callable[[], list[bytes]]:
        sizes = [len(chunk) for chunk in chunks]
        offsets, length = aligned_offsets(sizes, self.alignment)
        staging = bytearray(length)
        for offset, chunk in zip(offsets, chunks):
            staging[offset : offset + len(chunk)] = chunk
        pinned = self.torch.frombuffer(staging, dtype=self.torch.uint8).pin_memory()
        with self.torch.cuda.stream(self.stream):
            on_device = pinned.to(self.device, non_blocking=True)
        stream = self.stream.cuda_stream
        if self.batch_array:
            batch = self.nvcomp.as_arrays(on_device, offsets=offsets, sizes=sizes, cuda_stream=stream)
        else:
            batch = self.nvcomp.as_arrays([on_device[at : at + size] for at, size in zip(offsets, sizes)], cuda_stream=stream)
        return PendingEncode(self.codec.encode(batch), (pinned, on_device, batch))


@dataclass(frozen=True)
class PendingEncode:
    """An encode in flight; calling it waits and returns the streams."""

    encoded: Any
    buffers: tuple[Any, ...]  # the pinned and device copies must outlive the asynchronous work

    def __call__(self) -> list[bytes]:
        if isinstance(self.encoded, list):  # nvCOMP 5.x: each output Array is resized to its stream
            return [bytes(array.cpu()) for array in self.encoded]
        host = self.encoded.cpu()  # waits for the copy, the encode and the copy back
        sizes = host.buffer_sizes  # documented as a list; called if a build exposes it as a method
        sizes = sizes() if callable(sizes) else sizes
        # An entry's bytes should be its compressed length; cutting at its size is harmless if so,
        # and if they were the buffer's capacity, the host inflate check would refuse what is left.
        return [bytes(host[index])[: sizes[index]] for index in range(len(host))]


@lru_cache(maxsize=None)
def shared_backend(algorithm_type: int, lane: int) -> RawDeflateBackend:
    """One nvCOMP codec per process, algorithm type and lane: creating one allocates on the GPU."""
    return NvcompDeflateBackend(importlib.import_module("nvidia.nvcomp"), importlib.import_module("torch"), algorithm_type)
