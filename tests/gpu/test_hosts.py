"""The machine a worker runs on: GPU class detection, LocalHost, and ColabHost against a stand-in google.colab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tasks.errors import RemoteUnavailableError
from tasks.gpu.devices import detect_gpu_name, gpu_class_of, nvidia_driver_present
from tasks.hosts import (
    COLAB_RUNTIME_LIMIT_SECONDS,
    ColabHost,
    LocalHost,
    container_started,
)
from tests.machines import needs_cuda

ROOT = Path(__file__).parents[2]
FAKE_COLAB = Path(__file__).parents[1] / "fake_colab"
FAKE_GPU = Path(__file__).parents[1] / "fake_gpu"
SMI_ARGUMENTS = "--query-gpu=name --format=csv,noheader\n"
# google.colab is made unimportable first: on a Colab runtime the real one would make the host a ColabHost.
DETECT = ("import json, sys; sys.modules['google.colab'] = None; "
          "from tasks.hosts import current_host; from deployments.bootstrap import queues_for; "
          "host = current_host(); gpu_class = host.gpu_class(); "
          "print(json.dumps([type(host).__name__, gpu_class, list(queues_for(gpu_class, None))]))")


def detect_in_subprocess(tmp_path: Path, torch: str, smi_output: str | None, smi_exit: int = 0) -> list[str]:
    """Run GPU detection in a fresh Python off Colab, whose torch is the stand-in and whose PATH holds
    only a fake nvidia-smi (or none), so the host's own GPU never shows; return [host type, GPU class, queues]."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if smi_output is not None:
        smi = bin_dir / "nvidia-smi"
        smi.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "smi-calls"}\nprintf "%s" "{smi_output}"\nexit {smi_exit}\n')
        smi.chmod(0o755)
    env = {**os.environ, "PATH": str(bin_dir), "FAKE_GPU_TORCH": torch, "PYTHONPATH": f"{FAKE_GPU}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, "-c", DETECT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    detected: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return detected


@pytest.mark.parametrize(
    ("torch", "gpu_class", "queues"),
    [("NVIDIA A100-SXM4-40GB", "a100", ["a100", "any"]), ("Tesla T4", "t4", ["t4", "any"]),
     ("NVIDIA H100 80GB HBM3", "any", ["any"])],
)
def test_torch_cuda_names_the_gpu(tmp_path: Path, torch: str, gpu_class: str, queues: list[str]) -> None:
    """With CUDA in torch, the GPU's name from torch.cuda picks the class and its queues."""
    assert detect_in_subprocess(tmp_path, torch, None) == ["LocalHost", gpu_class, queues]


def test_torch_cuda_comes_before_nvidia_smi(tmp_path: Path) -> None:
    """When torch.cuda answers, nvidia-smi is never asked, even if it would name another GPU."""
    assert detect_in_subprocess(tmp_path, "NVIDIA L4", "Tesla T4\n") == ["LocalHost", "l4", ["l4", "any"]]
    assert not (tmp_path / "smi-calls").exists()


@pytest.mark.parametrize(
    ("torch", "smi_output", "gpu_class"),
    [("no-cuda", "NVIDIA L4\n", "l4"), ("missing", "Tesla T4\n", "t4"),
     ("missing", "NVIDIA A100-SXM4-40GB\nNVIDIA A100-SXM4-40GB\n", "a100")],
)
def test_nvidia_smi_names_the_gpu_when_torch_cannot(tmp_path: Path, torch: str, smi_output: str, gpu_class: str) -> None:
    """Without torch, or with a torch that has no CUDA, the first GPU nvidia-smi lists picks the class."""
    assert detect_in_subprocess(tmp_path, torch, smi_output) == ["LocalHost", gpu_class, [gpu_class, "any"]]
    assert (tmp_path / "smi-calls").read_text() == SMI_ARGUMENTS


@pytest.mark.parametrize(("torch", "smi_output", "smi_exit"),
                         [("no-cuda", None, 0), ("missing", None, 0), ("missing", "", 0),
                          ("missing", "NVIDIA-SMI has failed because it couldn't communicate with the driver", 9)])
def test_no_gpu_found_means_cpu(tmp_path: Path, torch: str, smi_output: str | None, smi_exit: int) -> None:
    """No CUDA, and no nvidia-smi (or one that lists nothing or fails): the class is cpu, serving cpu and any."""
    assert detect_in_subprocess(tmp_path, torch, smi_output, smi_exit) == ["LocalHost", "cpu", ["cpu", "any"]]


@pytest.mark.gpu
@needs_cuda
def test_a_real_gpu_gives_its_class_through_torch() -> None:
    """On a real GPU: the driver is found, and the host's class is that of the GPU torch.cuda names."""
    import torch

    name = torch.cuda.get_device_name(0)
    assert nvidia_driver_present() and detect_gpu_name() == name
    assert LocalHost().gpu_class() == gpu_class_of(name) != "cpu"


def test_with_google_colab_importable_the_host_is_colab(tmp_path: Path) -> None:
    """Where google.colab imports, current_host() is a ColabHost."""
    env = {**os.environ, "FAKE_COLAB_STATE": str(tmp_path), "PYTHONPATH": f"{FAKE_COLAB}{os.pathsep}{ROOT}"}
    code = "from tasks.hosts import current_host; print(type(current_host()).__name__)"
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.strip() == "ColabHost", result.stderr


@pytest.fixture
def colab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tests/fake_colab importable as google.colab, its state in a fresh folder; gone again after the test."""
    state = tmp_path / "colab-state"
    state.mkdir()
    monkeypatch.setenv("FAKE_COLAB_STATE", str(state))
    monkeypatch.syspath_prepend(str(FAKE_COLAB))
    yield state
    for name in [name for name in sys.modules if name == "google.colab" or name.startswith("google.colab.")]:
        del sys.modules[name]
    google = sys.modules.get("google")
    if google is not None and hasattr(google, "colab"):
        delattr(google, "colab")


def test_colab_budget_counts_from_the_runtime_start(colab: Path) -> None:
    """The budget is 24 h from the runtime's start: 1 h left after 23 h, none after 25 h."""
    started = 1_700_000_000.0
    assert ColabHost(lambda: started, lambda: started + 23 * 3600).time_budget_seconds() == 3600.0
    assert ColabHost(lambda: started, lambda: started + 25 * 3600).time_budget_seconds() == 0.0


def test_colab_budget_by_default_counts_from_the_container_not_the_worker(colab: Path) -> None:
    """By default the runtime's start is PID 1's, which is older than this process: less than 24 h remain."""
    assert container_started() <= psutil.Process().create_time()
    this_process_age = time.time() - psutil.Process().create_time()
    budget = ColabHost().time_budget_seconds()
    assert budget is not None and 0.0 <= budget <= COLAB_RUNTIME_LIMIT_SECONDS - this_process_age


def test_colab_secrets_come_from_userdata_else_the_environment(colab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared Colab secret is read; an unshared or missing one falls back to the environment, else None."""
    (colab / "secrets.json").write_text(json.dumps({"PREFECT_API_URL": "https://prefect.example.org/api",
                                                    "PREFECT_API_KEY": None}))
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_from-the-environment")
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    host = ColabHost()
    assert host.secret("PREFECT_API_URL") == "https://prefect.example.org/api"
    assert host.secret("PREFECT_API_KEY") == "pnu_from-the-environment"
    assert host.secret("PREFECT_API_AUTH_STRING") is None


def test_colab_release_unassigns_the_runtime_once(colab: Path) -> None:
    """release() calls google.colab.runtime.unassign() exactly once."""
    ColabHost().release()
    assert (colab / "calls.log").read_text() == "unassign\n"


def test_colab_release_from_a_worker_process_survives_the_page_error(colab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """unassign() failing after its request (no kernel to tell the page) still counts as released."""
    (colab / "unassign.mode").write_text("no-kernel")
    ColabHost().release()
    assert (colab / "calls.log").read_text() == "unassign\n"
    assert "runtime released; its page was not told (AttributeError)" in capsys.readouterr().out


def test_colab_release_refused_says_the_runtime_still_costs(colab: Path) -> None:
    """A refused unassign raises an error that says the runtime is still assigned and how to end it."""
    (colab / "unassign.mode").write_text("rejected")
    with pytest.raises(RemoteUnavailableError, match=r"did not release .*Unable to request VM unassignment.*Disconnect and delete runtime"):
        ColabHost().release()
    assert not (colab / "calls.log").exists()


def test_colab_mounts_drive_through_google_colab(colab: Path) -> None:
    """mount_drive() mounts Drive at /content/drive with google.colab.drive.mount."""
    assert ColabHost().mount_drive() is True
    assert (colab / "calls.log").read_text() == "mount /content/drive\n"


def test_local_host_reads_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """LocalHost's secrets are environment variables; a missing one is None."""
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_local")
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    assert LocalHost().secret("PREFECT_API_KEY") == "pnu_local"
    assert LocalHost().secret("PREFECT_API_AUTH_STRING") is None


def test_local_host_has_no_drive_to_mount(tmp_path: Path) -> None:
    """LocalHost mounts nothing and says so: mount_drive() is False and the mountpoint stays absent."""
    mountpoint = tmp_path / "drive"
    assert LocalHost().mount_drive(str(mountpoint)) is False
    assert not mountpoint.exists()


def test_local_host_release_runs_its_command_or_nothing(tmp_path: Path) -> None:
    """release() runs the configured command once; without one it does nothing and the budget is unlimited."""
    marker = tmp_path / "released"
    LocalHost(["sh", "-c", f"echo released >> {marker}"]).release()
    LocalHost().release()
    assert marker.read_text() == "released\n"
    assert LocalHost().time_budget_seconds() is None
