"""Batch map as a job kind: a user's function over items, one output file per batch.

The engine plans, batches, commits and reports; this module contributes what is the map's own:
the function's identity (its path, the sha256 of its source and its params) as part of every
checkpoint key, calling it on a batch, the batch's output file, the manifest line and the
verify check. A batch file is named by the batch's content, as compression's journals are, so a
batch run again writes the same file, and a plan that changed never overwrites another batch's.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from functools import partial
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, JsonValue

from tasks.batch_map.functions import CallSettings, call_batch, load_function
from tasks.batch_map.models import MapManifestEntry, MapOptions
from tasks.batch_map.outputs import OutputFormat, encode_batch
from tasks.batch_map.parameters import Device, MapJob
from tasks.batch_map.read_ahead import item_reader
from tasks.engine.user_code import parse_code_path, source_sha256
from tasks.batch_map.verify import check_map_folder
from tasks.engine.item_attempts import item_retry_policy
from tasks.engine.job_folder import (
    JobFolder,
    job_folder,
    normalize_location,
    open_job_folder,
)
from tasks.engine.kinds import BatchFigures, shared_file_figures
from tasks.engine.models import (
    BatchResult,
    ItemFailure,
    ItemFingerprint,
    ItemOutput,
    JobSettings,
)
from tasks.engine.sources import read_chunk
from tasks.engine.verify import JobCheck
from tasks.errors import ChunkChangedError, InvalidParameterError
from tasks.gpu.devices import detect_gpu_name, nvidia_driver_present
from tasks.gpu.oom_backoff import BatchSizeMemory
from tasks.storage.places import open_place
from tasks.storage.stores import StorageAccess

KIND_NAME = "batch_map"
OUTPUTS_DIR = "outputs"


def resolve_device(choice: Device, precision: str) -> str:
    """'cuda' or 'cpu' for the device asked for; refused with the reason where it cannot run."""
    has_cuda = False
    if choice != "cpu" and nvidia_driver_present():
        import torch

        has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise InvalidParameterError("device 'cuda' cannot run here: torch sees no CUDA GPU; use --device auto or cpu")
    device = "cuda" if has_cuda else "cpu"
    if precision == "fp16" and device == "cpu":
        raise InvalidParameterError("precision 'fp16' needs a CUDA GPU and this worker has none; use bf16 or fp32")
    if precision == "bf16" and device == "cuda":
        import torch

        if not torch.cuda.is_bf16_supported():
            raise InvalidParameterError(f"precision 'bf16' is not supported by {torch.cuda.get_device_name(0)}; use fp16")
    return device


def prepare_map(request: MapJob) -> JobSettings:
    """Check the function may run and loads, choose the device, prove the destination writable; before any work."""
    device = resolve_device(request.device, request.precision)
    path = parse_code_path(request.function)
    load_function(request.function, tuple(sorted(request.params.items())), device)
    options = MapOptions(
        function=request.function, function_sha256=source_sha256(path), params=request.params,
        output=request.output, precision=request.precision, device=device,
    )
    open_job_folder(request.destination, request.job, request.access).prepare()
    if request.results is not None:
        open_job_folder(request.results, request.job, request.access).prepare()
    return JobSettings(
        kind=KIND_NAME, options=options.model_dump(), destination=normalize_location(request.destination),
        results=normalize_location(request.results or request.destination), access=request.access,
        job=request.job, device=(detect_gpu_name() or "cuda") if device == "cuda" else "cpu",
        started_at=datetime.now(timezone.utc),
    )


@task(name="prepare-map", cache_policy=NO_CACHE, persist_result=False)
def prepare_map_task(request: MapJob) -> JobSettings:
    """Fail fast on code that may not run or does not load, a device that cannot run, or a destination."""
    return prepare_map(request)


def batch_file_name(batch: list[ItemFingerprint], output: OutputFormat) -> str:
    """A batch's output file below the job folder, named by its items and their contents."""
    content = "\n".join(f"{item.item_id}\0{item.sha256}" for item in batch)
    return f"{OUTPUTS_DIR}/batch-{hashlib.sha256(content.encode()).hexdigest()[:24]}.{output}"


def item_payload(item: ItemFingerprint, access: StorageAccess) -> dict[str, Any]:
    """What the function gets for an item: a record's object, or a file's id and bytes (checked against the plan)."""
    if item.content is not None:
        return dict(item.content)
    data = read_chunk(item.uri, access)
    if hashlib.sha256(data).hexdigest() != item.sha256:
        raise ChunkChangedError(f"item {item.item_id!r} changed while the job ran; rerun the job once it is stable")
    return {"id": item.item_id, "bytes": data}


def call_settings(options: MapOptions, settings: JobSettings) -> CallSettings:
    """How this job calls its function; sizes that fit the GPU are remembered on result storage."""
    params = ",".join(f"{key}={value}" for key, value in sorted(options.params.items()))
    return CallSettings(
        precision=options.precision, device=options.device, operation=f"map {options.function}({params})",
        gpu_name=settings.device, sizes=BatchSizeMemory(open_place(settings.results, settings.access)),
    )


def map_batch(batch: list[ItemFingerprint], settings: JobSettings) -> BatchResult:
    """Call the function on the batch, write the batch's file, describe each item's output."""
    options = MapOptions.of(settings)
    function = load_function(options.function, tuple(sorted(options.params.items())), options.device)
    loaded = list(zip(batch, item_reader().read(batch, partial(item_payload, access=settings.access), item_retry_policy())))
    unread = [payload for _, payload in loaded if isinstance(payload, ItemFailure)]
    ready = [(item, payload) for item, payload in loaded if not isinstance(payload, ItemFailure)]
    if not ready:
        return BatchResult(outputs=[], failures=unread)
    results, failures = call_batch(function, [item.item_id for item, _ in ready], [payload for _, payload in ready],
                                   call_settings(options, settings))
    failures = unread + failures
    failed = {failure.item_id for failure in failures}
    kept = [(item, result) for (item, _), result in zip(ready, results) if item.item_id not in failed]
    if not kept:
        return BatchResult(outputs=[], failures=failures)
    content = encode_batch([item.item_id for item, _ in kept], [result for _, result in kept], options.output)
    folder = job_folder(settings)
    name = batch_file_name([item for item, _ in kept], options.output)
    folder.write(name, content)
    digest, created_at = hashlib.sha256(content).hexdigest(), datetime.now(timezone.utc)
    return BatchResult(
        outputs=[
            ItemOutput(item_id=item.item_id, input_sha256=item.sha256, input_size=item.size, output=name,
                       output_size=len(content), output_sha256=digest, created_at=created_at,
                       details={"batch": name.removeprefix(f"{OUTPUTS_DIR}/")})
            for item, _ in kept
        ],
        failures=failures,
    )


class BatchMapKind:
    """The batch-map job kind, as the engine sees it (tasks/engine/kinds.py)."""

    name = KIND_NAME

    def identity(self, settings: JobSettings) -> list[JsonValue]:
        options = MapOptions.of(settings)
        return [options.function, options.function_sha256, [[key, value] for key, value in sorted(options.params.items())],
                options.output,
                options.precision]

    def run_batch(self, batch: list[ItemFingerprint], settings: JobSettings) -> BatchResult:
        return map_batch(batch, settings)

    def read_ahead(self, batches: list[list[ItemFingerprint]], settings: JobSettings) -> None:
        item_reader().ahead(batches, partial(item_payload, access=settings.access))

    def find_finished(self, item: ItemFingerprint, settings: JobSettings) -> ItemOutput | None:
        return None

    def manifest_entry(self, output: ItemOutput) -> BaseModel:
        return MapManifestEntry(item_id=output.item_id, batch=str(output.details["batch"]), output=output.output,
                                output_sha256=output.output_sha256)

    def batch_figures(self, outputs: list[ItemOutput]) -> BatchFigures:
        return shared_file_figures(outputs)

    def verify(self, folder: JobFolder, access: StorageAccess) -> JobCheck:
        return check_map_folder(folder)


JOB_KIND = BatchMapKind()
