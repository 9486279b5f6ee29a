"""Device telemetry per batch: a Prefect event plus one line in the job's `telemetry/` segments.

After each batch the worker reads its device (tasks/gpu/readings.py). Each reading, with the
batch's figures, goes out as the Prefect event `colabflow.batch.completed` and is added to
`<job>/telemetry/<writer>-<n>.jsonl`. Every process (every attempt) writes its own segments,
so no two writers share a file, and a segment holds at most `SEGMENT_LINES` lines, so writing
it whole after each batch stays linear in the job's length. The write is atomic and done before
the call returns: the last reading before a killed process survives it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from prefect.events import emit_event
from prefect.runtime import flow_run as current_flow_run
from pydantic import AliasChoices, BaseModel, Field

from tasks.engine.models import parse_json_lines
from tasks.gpu.readings import DeviceReading
from tasks.storage.places import open_place
from tasks.storage.stores import StorageAccess, read_optional

EVENT = "colabflow.batch.completed"
TELEMETRY_DIR = "telemetry"
LEGACY_TELEMETRY_NAME = "telemetry.jsonl"  # one file per job, rewritten whole, before segments
SEGMENT_LINES = 64
EmitEvent = Callable[..., object]


@dataclass
class _Segment:
    """The segment a process is filling: its number and its lines so far."""

    number: int = 0
    lines: list[bytes] = field(default_factory=list)


_WRITER = f"{time.time_ns():x}-{os.getpid()}"  # each process writes its own segments: no shared file
_SEGMENTS: dict[str, _Segment] = {}
_SEGMENT_LOCK = threading.Lock()  # batches of a job may finish together


class BatchTelemetry(DeviceReading):
    """One telemetry line: a reading and the batch it followed."""

    job: str
    batch_index: int = Field(ge=0)
    items: int = Field(ge=0, validation_alias=AliasChoices("items", "chunks"), description="Items the batch did.")
    bytes_in: int = Field(ge=0)
    bytes_out: int = Field(ge=0)
    seconds: float = Field(ge=0)
    mb_s: float = Field(ge=0, description="bytes_in / 10**6 / seconds.")


def batch_telemetry(
    reading: DeviceReading, job: str, batch_index: int, items: int, bytes_in: int, bytes_out: int, seconds: float
) -> BatchTelemetry:
    """A reading joined with its batch's figures."""
    mb_s = round(bytes_in / 1e6 / seconds, 3) if seconds > 0 else 0.0
    return BatchTelemetry(
        **reading.model_dump(), job=job, batch_index=batch_index, items=items, bytes_in=bytes_in,
        bytes_out=bytes_out, seconds=round(seconds, 6), mb_s=mb_s,
    )


def segment_name(writer: str, number: int) -> str:
    """A segment's name below the job folder."""
    return f"{TELEMETRY_DIR}/{writer}-{number:06d}.jsonl"


def append_telemetry(destination: str, access: StorageAccess, telemetry: BatchTelemetry) -> None:
    """Add the line to this process's current segment of `<job>/telemetry/`; it is stored when this returns.

    Stores cannot append, so the segment is written whole, from memory: at most
    `SEGMENT_LINES` lines each time, so a job of n batches writes O(n) bytes, not O(n²).
    """
    place = open_place(destination, access)
    store = place.writable("destination")
    job_key = place.key(telemetry.job)
    with _SEGMENT_LOCK:
        segment = _SEGMENTS.setdefault(place.uri(job_key), _Segment())
        if len(segment.lines) == SEGMENT_LINES:
            segment.number, segment.lines = segment.number + 1, []
        segment.lines.append(telemetry.model_dump_json().encode() + b"\n")
        store.write_bytes(place.key(telemetry.job, segment_name(_WRITER, segment.number)), b"".join(segment.lines))


def record_batch_telemetry(
    destination: str, access: StorageAccess, telemetry: BatchTelemetry,
    emit: EmitEvent = emit_event, flow_run_id: str | None = None,
) -> None:
    """Store the batch's line, then emit `colabflow.batch.completed` about the job.

    The event's related resource is the flow run (`flow_run_id`, else the current one) when
    there is one.
    """
    append_telemetry(destination, access, telemetry)
    run_id = flow_run_id or current_flow_run.id
    related = [{"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}] if run_id else []
    emit(
        event=EVENT,
        resource={"prefect.resource.id": f"colabflow.job.{telemetry.job}", "prefect.resource.name": telemetry.job},
        related=related,
        payload=telemetry.model_dump(mode="json"),
    )


def parse_telemetry(content: bytes, where: str) -> list[BatchTelemetry]:
    """The lines of a telemetry file; `where` names it in errors."""
    return parse_json_lines(content, BatchTelemetry, where, "telemetry line", "remove that line or the file, then rerun")


def read_telemetry(destination: str, access: StorageAccess, job: str) -> list[BatchTelemetry]:
    """The job's telemetry lines, oldest first, from every segment and any `telemetry.jsonl` of older versions."""
    place = open_place(destination, access)
    legacy = place.key(job, LEGACY_TELEMETRY_NAME)
    lines = parse_telemetry(read_optional(place.store, legacy) or b"", place.uri(legacy))
    for info in place.store.list(place.key(job, TELEMETRY_DIR)):
        if info.key.endswith(".jsonl"):
            lines += parse_telemetry(read_optional(place.store, info.key) or b"", place.uri(info.key))
    return sorted(lines, key=lambda line: line.time)


def count_batches_redone(destination: str, access: StorageAccess, job: str) -> int:
    """Batches that more than one process computed: the work crashes and drains cost the job.

    Each process writes its own segments, named after it, and a batch's line is written once it
    is computed, before its done marker. A batch loaded from its done marker writes no line, so a
    task run that a later attempt runs again without computing anything counts for nothing.
    """
    place = open_place(destination, access)
    writers_of: dict[int, set[str]] = {}
    for info in place.store.list(place.key(job, TELEMETRY_DIR)):
        if not info.key.endswith(".jsonl"):
            continue
        writer = info.key.rpartition("/")[2].rpartition("-")[0]
        for line in parse_telemetry(read_optional(place.store, info.key) or b"", place.uri(info.key)):
            writers_of.setdefault(line.batch_index, set()).add(writer)
    return sum(len(writers) > 1 for writers in writers_of.values())


class DeviceSummary(BaseModel):
    """One device's share of a job."""

    device_kind: Literal["gpu", "cpu"]
    device_name: str
    batches: int
    items: int
    bytes_in: int
    bytes_out: int
    seconds: float
    mb_s: float = Field(description="Input MB per second of batch time, over all its batches.")
    peak_memory_used_bytes: int | None
    peak_memory_reserved_bytes: int | None
    peak_allocated_bytes: int | None
    memory_total_bytes: int | None
    mean_utilization_percent: float | None
    max_temperature_c: float | None


class TelemetrySummary(BaseModel):
    """Per device, in the order the devices first appear."""

    devices: list[DeviceSummary]


def _peak(values: Iterable[int | float | None]) -> Any:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _summarize_device(lines: list[BatchTelemetry]) -> DeviceSummary:
    seconds = sum(line.seconds for line in lines)
    bytes_in = sum(line.bytes_in for line in lines)
    utilization = [line.utilization_percent for line in lines if line.utilization_percent is not None]
    return DeviceSummary(
        device_kind=lines[0].device_kind, device_name=lines[0].device_name, batches=len(lines),
        items=sum(line.items for line in lines), bytes_in=bytes_in, bytes_out=sum(line.bytes_out for line in lines),
        seconds=round(seconds, 3), mb_s=round(bytes_in / 1e6 / seconds, 3) if seconds > 0 else 0.0,
        peak_memory_used_bytes=_peak(line.memory_used_bytes for line in lines),
        peak_memory_reserved_bytes=_peak(line.memory_reserved_bytes for line in lines),
        peak_allocated_bytes=_peak(line.peak_allocated_bytes for line in lines),
        memory_total_bytes=_peak(line.memory_total_bytes for line in lines),
        mean_utilization_percent=round(sum(utilization) / len(utilization), 1) if utilization else None,
        max_temperature_c=_peak(line.temperature_c for line in lines),
    )


def summarize_telemetry(lines: Iterable[BatchTelemetry]) -> TelemetrySummary:
    """Peak memory, mean utilisation and MB/s for each device the job ran on."""
    by_device: dict[tuple[str, str], list[BatchTelemetry]] = {}
    for line in lines:
        by_device.setdefault((line.device_kind, line.device_name), []).append(line)
    return TelemetrySummary(devices=[_summarize_device(group) for group in by_device.values()])


def _gib(size: int | None) -> str:
    return "–" if size is None else f"{size / 2**30:.2f} GiB"


def _device_row(device: DeviceSummary) -> str:
    memory = _gib(device.peak_memory_used_bytes)
    if device.peak_memory_reserved_bytes is not None:
        memory += f" (torch reserved {_gib(device.peak_memory_reserved_bytes)})"
    utilization = "–" if device.mean_utilization_percent is None else f"{device.mean_utilization_percent:.1f} %"
    temperature = "–" if device.max_temperature_c is None else f"{device.max_temperature_c:.0f} °C"
    return (
        f"| {device.device_name} ({device.device_kind}) | {device.batches} | {device.items} | "
        f"{device.bytes_in / 1e6:.1f} | {device.mb_s:.1f} | {memory} | {_gib(device.memory_total_bytes)} | "
        f"{utilization} | {temperature} |"
    )


def render_telemetry_markdown(job: str, summary: TelemetrySummary) -> str:
    """The devices section of the job's final markdown artifact."""
    if not summary.devices:
        return f"## Devices\n\nNo batch telemetry was recorded for job `{job}`.\n"
    header = [
        f"## Devices of job `{job}`", "",
        "| device | batches | items | MB in | MB/s | peak memory | memory total | mean utilisation | max temperature |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    note = (
        "\nReadings are taken after each batch: memory is what was in use then, GPU utilisation is NVML's "
        "last sample and CPU utilisation the average since the previous batch.\n"
    )
    return "\n".join(header + [_device_row(device) for device in summary.devices]) + "\n" + note
