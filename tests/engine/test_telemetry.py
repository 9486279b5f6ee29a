"""Telemetry: readings through injected torch/NVML (and a real GPU's, marked gpu), the JSONL file, the event, the summary."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.events import Event
from pytest_httpserver import HTTPServer

from flows.compress_chunks import compress_chunks
from tasks.compression.parameters import CompressJob
from tasks.engine.telemetry import (
    EVENT,
    LEGACY_TELEMETRY_NAME,
    SEGMENT_LINES,
    TELEMETRY_DIR,
    BatchTelemetry,
    append_telemetry,
    batch_telemetry,
    count_batches_redone,
    parse_telemetry,
    read_telemetry,
    record_batch_telemetry,
    render_telemetry_markdown,
    segment_name,
    summarize_telemetry,
)
from tasks.errors import CorruptOutputError
from tasks.gpu.readings import DeviceReading, read_device_telemetry
from tasks.storage.stores import StorageAccess
from tests.conftest import make_chunks
from tests.github_fake import files_under, gated_repository
from tests.machines import needs_cuda
from tests.pool import ROOT, kill_machine
from tests.servers import server_environment, wait_until

GIB = 2**30
ACCESS = StorageAccess()


class NVMLError(Exception):
    pass


def fake_torch() -> SimpleNamespace:
    """A torch on a T4 with 2 GiB in tensors, 3 GiB reserved and 4 GiB in use on the device."""
    return SimpleNamespace(cuda=SimpleNamespace(
        is_available=lambda: True, current_device=lambda: 0, get_device_name=lambda index: "Tesla T4",
        mem_get_info=lambda index: (11 * GIB, 15 * GIB), memory_reserved=lambda index: 3 * GIB,
        memory_allocated=lambda index: 2 * GIB, max_memory_allocated=lambda index: 5 * GIB / 2,
    ))


def fake_pynvml(fail: bool = False) -> SimpleNamespace:
    """NVML reporting 4.5 GiB used, 87 % busy and 71 °C; or failing at init."""
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if fail:
            raise NVMLError("NVML Shared Library Not Found")

    return SimpleNamespace(
        NVMLError=NVMLError, NVML_TEMPERATURE_GPU=0, calls=calls, nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"), nvmlDeviceGetHandleByIndex=lambda index: f"handle-{index}",
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(used=9 * GIB // 2, total=15 * GIB, free=0),
        nvmlDeviceGetUtilizationRates=lambda handle: SimpleNamespace(gpu=87, memory=40),
        nvmlDeviceGetTemperature=lambda handle, sensor: 71,
    )


def importer(**modules: object) -> Callable[[str], Any]:
    def import_module(name: str) -> Any:
        if name in modules:
            if modules[name] is None:
                raise ModuleNotFoundError(f"No module named {name!r}")
            return modules[name]
        return importlib.import_module(name)

    return import_module


def test_a_gpu_reading_takes_memory_utilisation_and_temperature_from_nvml() -> None:
    """NVML's device-wide figures win; torch adds its allocator's; NVML is shut down after."""
    pynvml = fake_pynvml()
    reading = read_device_telemetry(importer(torch=fake_torch(), pynvml=pynvml))
    assert (reading.device_kind, reading.device_name, reading.sources) == ("gpu", "Tesla T4", ("torch", "nvml"))
    assert (reading.memory_used_bytes, reading.memory_total_bytes) == (9 * GIB // 2, 15 * GIB)
    assert (reading.memory_reserved_bytes, reading.memory_allocated_bytes, reading.peak_allocated_bytes) == (
        3 * GIB, 2 * GIB, 5 * GIB // 2,
    )
    assert (reading.utilization_percent, reading.temperature_c) == (87.0, 71.0)
    assert pynvml.calls == ["init", "shutdown"]


@pytest.mark.parametrize("pynvml", [None, fake_pynvml(fail=True)], ids=["not installed", "NVML fails"])
def test_without_nvml_a_gpu_reading_has_torch_figures_only(pynvml: object) -> None:
    """No nvidia-ml-py, or an NVML that fails: memory from cudaMemGetInfo, no utilisation."""
    reading = read_device_telemetry(importer(torch=fake_torch(), pynvml=pynvml))
    assert reading.sources == ("torch",)
    assert (reading.memory_used_bytes, reading.memory_total_bytes) == (4 * GIB, 15 * GIB)
    assert (reading.utilization_percent, reading.temperature_c) == (None, None)


@pytest.mark.parametrize("torch", [None, SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: False))])
def test_a_cpu_host_reports_cpu_and_ram(torch: object) -> None:
    """Without torch or without CUDA the reading is the host's CPU % and RAM, from psutil."""
    reading = read_device_telemetry(importer(torch=torch))
    assert (reading.device_kind, reading.device_name, reading.sources) == ("cpu", "cpu", ("psutil",))
    assert reading.memory_total_bytes and 0 < reading.memory_used_bytes <= reading.memory_total_bytes  # type: ignore[operator]
    assert reading.utilization_percent is not None and 0 <= reading.utilization_percent <= 100
    assert reading.memory_reserved_bytes is None and reading.temperature_c is None


@pytest.mark.gpu
@needs_cuda
def test_a_real_gpu_reading_comes_from_torch_and_nvml() -> None:
    """On a real GPU with the gpu extra (nvidia-ml-py): NVML and torch both read the GPU torch works on."""
    import torch

    block = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
    reading = read_device_telemetry()
    assert (reading.device_kind, reading.device_name) == ("gpu", torch.cuda.get_device_name())
    assert reading.sources == ("torch", "nvml")
    assert reading.peak_allocated_bytes >= reading.memory_allocated_bytes >= block.numel()  # type: ignore[operator]
    assert 0 < reading.memory_used_bytes <= reading.memory_total_bytes  # type: ignore[operator]
    assert 0 <= reading.utilization_percent <= 100 and reading.temperature_c > 0  # type: ignore[operator]


def line(batch_index: int, device: str = "Tesla T4", **figures: Any) -> BatchTelemetry:
    reading = DeviceReading(
        time=datetime(2026, 5, 1, 12, tzinfo=timezone.utc) + timedelta(minutes=batch_index), device_kind="cpu" if device == "cpu" else "gpu",
        device_name=device, **figures,
    )
    return batch_telemetry(reading, "job-1", batch_index, items=10, bytes_in=50_000_000, bytes_out=20_000_000, seconds=0.5)


def test_a_batch_counts_as_redone_when_a_second_process_computed_it(tmp_path: Path) -> None:
    """Batches 0-2 by one process, 2-3 by the next and 3 again by a third: batches 2 and 3 were redone."""
    folder = tmp_path / "job-1"
    (folder / TELEMETRY_DIR).mkdir(parents=True)
    for writer, batches in (("18ee-101", [0, 1, 2]), ("18ef-202", [2, 3]), ("18f0-303", [3])):
        content = b"".join(line(index).model_dump_json().encode() + b"\n" for index in batches)
        (folder / segment_name(writer, 0)).write_bytes(content)
    (folder / segment_name("18ef-202", 1)).write_bytes(line(4).model_dump_json().encode() + b"\n")
    assert count_batches_redone(str(tmp_path), StorageAccess(), "job-1") == 2


def test_a_job_without_telemetry_redid_nothing(tmp_path: Path) -> None:
    assert count_batches_redone(str(tmp_path), StorageAccess(), "job-1") == 0


def test_batch_figures_include_the_throughput() -> None:
    """MB/s is input MB over the batch's seconds; a zero-second batch reports 0, not a crash."""
    assert line(0).mb_s == 100.0
    reading = DeviceReading(time=datetime.now(timezone.utc), device_kind="cpu", device_name="cpu")
    assert batch_telemetry(reading, "job-1", 0, 0, 0, 0, 0.0).mb_s == 0.0


def test_each_batch_appends_a_line_and_emits_an_event_about_the_job_and_run(tmp_path: Path) -> None:
    """Two batches: two lines in the process's segment of <job>/telemetry/, two valid Prefect events related to the run."""
    events: list[Event] = []
    run_id = str(uuid.uuid4())
    for index in range(2):
        record_batch_telemetry(str(tmp_path), ACCESS, line(index), emit=lambda **event: events.append(Event(**event)), flow_run_id=run_id)
    [segment] = (tmp_path / "job-1" / TELEMETRY_DIR).iterdir()
    assert [json.loads(text)["batch_index"] for text in segment.read_bytes().splitlines()] == [0, 1]
    assert read_telemetry(str(tmp_path), ACCESS, "job-1") == [line(0), line(1)]
    assert [event.event for event in events] == [EVENT, EVENT]
    assert events[1].resource.id == "colabflow.job.job-1"
    assert [(related.id, related.role) for related in events[1].related] == [(f"prefect.flow-run.{run_id}", "flow-run")]
    assert events[1].payload == line(1).model_dump(mode="json")


def test_segments_roll_over_so_each_write_stays_small(tmp_path: Path) -> None:
    """Past SEGMENT_LINES lines a new segment starts: no write carries more than SEGMENT_LINES lines."""
    count = 2 * SEGMENT_LINES + 5
    for index in range(count):
        append_telemetry(str(tmp_path), ACCESS, line(index))
    segments = sorted((tmp_path / "job-1" / TELEMETRY_DIR).iterdir())
    assert [len(path.read_bytes().splitlines()) for path in segments] == [SEGMENT_LINES, SEGMENT_LINES, 5]
    assert [entry.batch_index for entry in read_telemetry(str(tmp_path), ACCESS, "job-1")] == list(range(count))


def test_a_telemetry_file_of_an_older_version_is_read_with_the_segments(tmp_path: Path) -> None:
    """`<job>/telemetry.jsonl`, written whole by older versions (with `chunks`), joins the segments, oldest first."""
    legacy = line(0).model_dump_json().replace('"items"', '"chunks"')
    (tmp_path / "job-1").mkdir()
    (tmp_path / "job-1" / LEGACY_TELEMETRY_NAME).write_text(legacy + "\n")
    append_telemetry(str(tmp_path), ACCESS, line(1))
    assert read_telemetry(str(tmp_path), ACCESS, "job-1") == [line(0), line(1)]


def test_inside_a_run_the_event_names_the_current_flow_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run comes from prefect.runtime (here its PREFECT__FLOW_RUN_ID); outside a run there is none."""
    events: list[Event] = []
    record_batch_telemetry(str(tmp_path), ACCESS, line(0), emit=lambda **event: events.append(Event(**event)))
    run_id = str(uuid.uuid4())
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", run_id)
    record_batch_telemetry(str(tmp_path), ACCESS, line(1), emit=lambda **event: events.append(Event(**event)))
    assert [list(event.related) for event in events][0] == []
    assert events[1].related[0].id == f"prefect.flow-run.{run_id}"


def test_a_job_without_telemetry_reads_as_empty(tmp_path: Path) -> None:
    """No file yet is no lines, not an error."""
    assert read_telemetry(str(tmp_path), ACCESS, "job-1") == []


def test_a_damaged_line_is_reported_with_its_number() -> None:
    """A line that is not telemetry names the file and the line."""
    content = line(0).model_dump_json().encode() + b"\n\n{\"batch_index\": 1}\n"
    with pytest.raises(CorruptOutputError, match=r"^/out/job-1/telemetry.jsonl line 3 is not a telemetry line"):
        parse_telemetry(content, "/out/job-1/telemetry.jsonl")


def test_the_summary_gives_peak_memory_mean_utilisation_and_mb_s_per_device() -> None:
    """Per device: peaks over readings, mean over readings that have utilisation, MB/s over batch time."""
    lines = [
        line(0, memory_used_bytes=3 * GIB, memory_reserved_bytes=GIB, memory_total_bytes=15 * GIB, utilization_percent=60.0, temperature_c=60),
        line(1, memory_used_bytes=5 * GIB, memory_reserved_bytes=2 * GIB, memory_total_bytes=15 * GIB, utilization_percent=90.0, temperature_c=70),
        line(2, device="cpu", memory_used_bytes=8 * GIB, memory_total_bytes=32 * GIB, utilization_percent=50.0),
        line(3, memory_used_bytes=4 * GIB),
    ]
    gpu, cpu = summarize_telemetry(lines).devices
    assert (gpu.device_name, gpu.batches, gpu.items, gpu.bytes_in, gpu.seconds, gpu.mb_s) == ("Tesla T4", 3, 30, 150_000_000, 1.5, 100.0)
    assert (gpu.peak_memory_used_bytes, gpu.peak_memory_reserved_bytes, gpu.memory_total_bytes) == (5 * GIB, 2 * GIB, 15 * GIB)
    assert (gpu.mean_utilization_percent, gpu.max_temperature_c) == (75.0, 70.0)
    assert (cpu.device_kind, cpu.batches, cpu.peak_memory_reserved_bytes, cpu.mean_utilization_percent) == ("cpu", 1, None, 50.0)


def test_the_markdown_has_one_row_per_device() -> None:
    """The artifact section lists each device with its figures, and says when there are none."""
    summary = summarize_telemetry([
        line(0, memory_used_bytes=3 * GIB, memory_reserved_bytes=GIB, memory_total_bytes=15 * GIB, utilization_percent=80.0, temperature_c=65),
        line(1, device="cpu", memory_used_bytes=8 * GIB, memory_total_bytes=32 * GIB, utilization_percent=50.0),
    ])
    markdown = render_telemetry_markdown("job-1", summary)
    assert "| Tesla T4 (gpu) | 1 | 10 | 50.0 | 100.0 | 3.00 GiB (torch reserved 1.00 GiB) | 15.00 GiB | 80.0 % | 65 °C |" in markdown
    assert "| cpu (cpu) | 1 | 10 | 50.0 | 100.0 | 8.00 GiB | 32.00 GiB | 50.0 % | – |" in markdown
    assert "No batch telemetry" in render_telemetry_markdown("job-1", summarize_telemetry([]))


def batch_events_at_the_api(flow_run_id: uuid.UUID, expected: int) -> list[Event]:
    """The run's `colabflow.batch.completed` events the server has stored, once there are `expected`."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    related = EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"])
    with get_client(sync_client=True) as client:
        page = client.read_events(EventFilter(event=EventNameFilter(name=[EVENT]), related=related), limit=50)
    return page.events if len(page.events) >= expected else []


def test_a_real_run_sends_batch_events_and_the_telemetry_artifact_to_the_server(prefect_api: str, sample_source: Path, tmp_path: Path) -> None:
    """Three batches: three stored events about the job and run, equal to the file's lines, and the devices artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    request = CompressJob(source=[str(sample_source)], destination=str(tmp_path / "out"), job="telemetry-run", batch_size=3, codec="cpu")
    flow_run_id = compress_chunks(request, return_state=True).state_details.flow_run_id
    assert flow_run_id is not None
    events = wait_until(lambda: batch_events_at_the_api(flow_run_id, 3), 60, 0.5, "three batch events at the API")
    lines = read_telemetry(str(tmp_path / "out"), ACCESS, "telemetry-run")
    assert sorted(event.payload["batch_index"] for event in events) == [line.batch_index for line in lines] == [0, 1, 2]
    assert {event.resource.id for event in events} == {"colabflow.job.telemetry-run"}
    by_index = {event.payload["batch_index"]: event.payload for event in events}
    assert all(by_index[line.batch_index] == line.model_dump(mode="json") for line in lines)
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["colabflow-telemetry-run-telemetry"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )
    assert artifact.type == "markdown"
    assert "## Devices of job `telemetry-run`" in str(artifact.data)
    assert "| cpu (cpu) | 3 | 8 |" in str(artifact.data)


def test_telemetry_survives_a_sigkill_mid_job(prefect_api: str, tmp_path: Path, httpserver: HTTPServer) -> None:
    """A job process killed with SIGKILL while batch 3 waits at its gate leaves telemetry segments whose every
    line parses: one for each of the 3 batches before it."""
    files = files_under(make_chunks(tmp_path / "source", 20, 32 * 1024), "chunks")
    telemetry = tmp_path / "out" / "killed" / TELEMETRY_DIR

    def stored() -> bytes:
        return b"".join(path.read_bytes() for path in sorted(telemetry.glob("*.jsonl")))

    with gated_repository(httpserver, files, sorted(files)[3]) as served, (tmp_path / "job.log").open("wb") as log:
        command = [sys.executable, "-m", "flows.cli", "compress", served.location("chunks"), str(tmp_path / "out"),
                   "--job", "killed", "--batch-size", "1", "--codec", "cpu", "--github-api-url", served.api_url]
        job = subprocess.Popen(command, env=server_environment(tmp_path / "client-home", prefect_api), cwd=ROOT,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(served.gate.reached.is_set, 180, 0.02, "batch 3 to reach its gate")
        finally:
            kill_machine(job)
    lines = parse_telemetry(stored(), str(telemetry))
    assert sorted(line.batch_index for line in lines) == [0, 1, 2]
    assert all(line.job == "killed" and line.device_name == "cpu" for line in lines)
