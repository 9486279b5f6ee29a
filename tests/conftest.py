"""Shared fixtures: one real Prefect server per test session, and sample chunk folders."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="colabflow-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "client-home")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)

import pytest  # noqa: E402

from tests.servers import prefect_server  # noqa: E402

SAMPLE = Path(__file__).parent / "data" / "sample"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the `slow` tests first, so their files start first and overlap the short ones.

    xdist hands out whole files (`--dist loadfile`) in this order (`--no-loadscope-reorder`);
    its own order, most tests first, left the slow files, which hold one or two tests, for the end.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real `prefect server start` shared by the session; the settings point at it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with prefect_server(_SESSION_HOME / "server-home") as api_url:
        os.environ["PREFECT_API_URL"] = api_url
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield api_url
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=30)
            EventsWorker.drain_all(timeout=30)
        os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture
def sample_source(tmp_path: Path) -> Path:
    """A copy of the shipped sample chunks that a test may change."""
    target = tmp_path / "source"
    for path in SAMPLE.rglob("*"):
        if path.is_file():
            copy = target / path.relative_to(SAMPLE)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
    return target


def make_chunks(root: Path, count: int, size: int) -> Path:
    """Write `count` deterministic, compressible chunk files of `size` bytes under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        line = f"chunk {index:05d}: the quick brown fox jumps over the lazy dog\n".encode()
        (root / f"part-{index:05d}.txt").write_bytes((line * (size // len(line) + 1))[:size])
    return root
