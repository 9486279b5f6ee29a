"""Reading a checkpoint's tensors file at the speed of the disk: hashed while it is read, never copied.

A resume verifies the file's sha256 before trusting it. Read, then hashed, then parsed by
`safetensors.torch.load` (which copies every tensor out of the bytes), a 100 MiB state loaded
at 30 % of the disk's speed here (docs/benchmarks.md). So the file is read block by block into
one buffer while a second thread hashes the block before (both let go of the GIL), and the
tensors are views of that buffer (`torch.frombuffer`), laid out as the safetensors format says:
an 8-byte little-endian header length, a JSON header of `{name: {dtype, shape, data_offsets}}`,
then the data (https://github.com/huggingface/safetensors#format). The header is read only after
the digest matched the one written with the file, so it is the one `safetensors.torch.save` wrote.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy
import torch
from numpy.typing import NDArray

from tasks.errors import CorruptOutputError
from tasks.storage.stores import ReadableStore

READ_BLOCK = 8 * 1024 * 1024
FIRST_BLOCK = 256 * 1024
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "C64": torch.complex64,
}


def read_hashed(store: ReadableStore, key: str) -> tuple[NDArray[numpy.uint8], str]:
    """The whole object in one writable buffer, and its sha256, hashed as it is read.

    The buffer is a numpy array left uninitialised (a `bytearray` would first be zeroed: a
    fifth of the load's time at 100 MiB).
    """
    info = store.stat(key)
    if info is None:
        raise CorruptOutputError(f"{store.location}/{key} is missing")
    buffer = numpy.empty(info.size, dtype=numpy.uint8)
    view = buffer.data
    hasher = hashlib.sha256()
    offset = 0
    with ThreadPoolExecutor(max_workers=1) as pool, store.open_read(key) as stream:
        hashing: Future[None] | None = None
        readinto: Callable[[memoryview], int] = stream.readinto  # type: ignore[attr-defined]  # every store's stream is a file
        block = FIRST_BLOCK  # small, so the hashing starts early; then doubling up to READ_BLOCK
        while offset < info.size:
            read = readinto(view[offset:offset + block])
            block = min(2 * block, READ_BLOCK)
            if not read:
                break
            if hashing is not None:
                hashing.result()
            hashing = pool.submit(hasher.update, view[offset:offset + read])
            offset += read
        if hashing is not None:
            hashing.result()
        if offset != info.size or stream.read(1):
            raise CorruptOutputError(f"{store.location}/{key} changed size while it was read; read it again")
    return buffer, hasher.hexdigest()


def tensors_of(buffer: NDArray[numpy.uint8] | bytearray, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, as views of `buffer` (which must not be reused)."""
    if sys.byteorder == "big":
        raise CorruptOutputError("checkpoints are little-endian and this machine is big-endian")
    try:
        length = int.from_bytes(bytes(buffer[:8]), "little")
        header = json.loads(bytes(buffer[8:8 + length]))
        header.pop("__metadata__", None)
        start = 8 + length
        return {name: _view(buffer, start, entry) for name, entry in header.items()}
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise CorruptOutputError(f"{where}: the tensors file is not safetensors ({error})") from None


def _view(buffer: NDArray[numpy.uint8] | bytearray, start: int, entry: dict[str, object]) -> torch.Tensor:
    dtype = DTYPES[str(entry["dtype"])]
    shape = [int(size) for size in entry["shape"]]  # type: ignore[attr-defined]
    begin, end = (int(offset) for offset in entry["data_offsets"])  # type: ignore[attr-defined]
    if begin == end:
        return torch.empty(shape, dtype=dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    flat = torch.frombuffer(buffer, dtype=dtype, count=(end - begin) // itemsize, offset=start + begin)
    return flat.reshape(shape)
