"""Reading a tensors file hashed as it is read, into tensors that are views of one buffer."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import safetensors.torch
import torch

from tasks.errors import CorruptOutputError
from tasks.iterations import tensor_file
from tasks.iterations.tensor_file import read_hashed, tensors_of
from tests.storage.test_store_contract import (
    Backend,
    drive_store,
    gcs_store,
    local_store,
)

TENSORS = {
    "f32": torch.arange(12, dtype=torch.float32).reshape(3, 4), "bf16": torch.linspace(-1, 1, 7).to(torch.bfloat16),
    "f16": torch.ones(2, 2, dtype=torch.float16), "i64": torch.tensor([-(2**40), 3]), "u8": torch.tensor([0, 255], dtype=torch.uint8),
    "bool": torch.tensor([True, False]), "scalar": torch.tensor(2.5, dtype=torch.float64), "empty": torch.zeros(0, 3),
}


@pytest.fixture(params=[local_store, gcs_store, drive_store], ids=["local", "gcs", "drive"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    factory: Callable[[ExitStack, Path], Backend] = request.param
    with ExitStack() as stack:
        yield factory(stack, tmp_path)


def test_a_file_reads_whole_with_its_sha256_on_every_store(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks smaller than the file (so the hashing overlaps the reading) give the bytes and the digest."""
    monkeypatch.setattr(tensor_file, "READ_BLOCK", 1000)
    content = safetensors.torch.save(TENSORS)
    backend.store.write_bytes("job/tensors.safetensors", content)
    buffer, digest = read_hashed(backend.store, "job/tensors.safetensors")
    assert bytes(buffer) == content and digest == hashlib.sha256(content).hexdigest()


def test_the_tensors_equal_what_safetensors_loads_and_share_the_buffer() -> None:
    """Every dtype and shape, empty and 0-d included; a tensor is a view of the buffer, not a copy."""
    buffer = bytearray(safetensors.torch.save(TENSORS))
    tensors = tensors_of(buffer, "here")
    expected = safetensors.torch.load(bytes(buffer))
    assert set(tensors) == set(expected)
    for name, tensor in tensors.items():
        assert tensor.dtype == expected[name].dtype and torch.equal(tensor, expected[name]), name
    tensors["f32"][0, 0] = 99.0
    assert torch.equal(tensors_of(buffer, "here")["f32"][0, 0], torch.tensor(99.0))


def test_bytes_that_are_not_safetensors_are_refused_naming_the_checkpoint() -> None:
    """A header that is not JSON, or names an unknown dtype, is a CorruptOutputError."""
    for broken in (bytearray(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops"),
                   bytearray(b'\x2a\x00\x00\x00\x00\x00\x00\x00{"x":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}\x00')):
        with pytest.raises(CorruptOutputError, match="checkpoints/0000000005: the tensors file is not safetensors"):
            tensors_of(broken, "checkpoints/0000000005")
