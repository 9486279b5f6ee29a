"""Every colabflow block passes Prefect's standard block suite and registers with `-m blocks`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

import blocks
from tests.servers import server_environment

ROOT = Path(__file__).resolve().parents[2]
OUR_BLOCKS = [getattr(blocks, name) for name in blocks.__all__]


class TestStandardBlocks(BlockStandardTestSuite):
    """Prefect's suite: description, code example with .load(), field descriptions, secrets typed."""

    @pytest.fixture(params=OUR_BLOCKS, ids=lambda block: block.__name__)
    def block(self, request: pytest.FixtureRequest) -> type[Block]:
        return request.param  # type: ignore[no-any-return]

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        """Offline stand-in for the suite's check, which downloads the logo: an https URL to an image."""
        logo = urlsplit(str(block._logo_url))
        assert logo.scheme == "https" and logo.netloc
        assert logo.path.endswith((".png", ".svg"))


def test_every_block_is_exported() -> None:
    """`prefect block register -m blocks` sees only what the package exports."""
    exported = {block.__name__ for block in OUR_BLOCKS}
    defined = {cls.__name__ for cls in Block.__subclasses__() + [
        sub for base in Block.__subclasses__() for sub in base.__subclasses__()
    ] if cls.__module__.startswith("blocks.")}
    assert defined <= exported


def test_prefect_block_register_registers_every_block(prefect_api: str, tmp_path: Path) -> None:
    """The documented command registers our block types on a real server."""
    env = server_environment(tmp_path / "home", prefect_api)
    result = subprocess.run([str(Path(sys.executable).parent / "prefect"), "block", "register", "-m", "blocks"],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        slugs = {block_type.slug for block_type in client.read_block_types()}
    assert {block.get_block_type_slug() for block in OUR_BLOCKS} <= slugs
