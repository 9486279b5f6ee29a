"""Tests of the tree benchmark: a 60-file run as a subprocess, plus the tree builder on a fake stdlib."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.tree import argument_batches, build_tree, list_files

ROOT = Path(__file__).resolve().parents[2]
TREE_KEYS = {
    "files", "bytes", "median_file_bytes", "colabflow_s", "cold_s", "gzip_s", "pigz_s",
    "vs_gzip", "vs_pigz", "gzip_t_ok", "cpu_count", "rounds", "colabflow_rounds_s",
}


@pytest.fixture
def fake_stdlib(tmp_path: Path) -> Path:
    """A small stand-in for the stdlib: three files to copy, and things the builder must skip."""
    root = tmp_path / "lib"
    (root / "json" / "__pycache__").mkdir(parents=True)
    (root / "site-packages").mkdir()
    (root / "abc.py").write_text("import os\n")
    (root / "json" / "decoder.py").write_text("def decode(): ...\n")
    (root / "json" / "__pycache__" / "decoder.cpython-311.pyc").write_bytes(b"\xa7\r\r\n" + bytes(12))
    (root / "site-packages" / "third_party.py").write_text("x = 1\n")
    (root / "archive.tar.gz").write_bytes(b"\x1f\x8b")
    (root / "link.py").symlink_to(root / "abc.py")
    return root


@pytest.mark.slow
def test_tree_benchmark_prints_every_figure_and_checks_its_output() -> None:
    """A 60-file run ends with one JSON line: every key, 60 files, gzip -t passed, positive ratios."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.tree", "--files", "60", "--rounds", "1", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    assert figures.keys() == TREE_KEYS
    assert figures["files"] == 60
    assert figures["gzip_t_ok"] is True
    assert isinstance(figures["vs_gzip"], float) and figures["vs_gzip"] > 0
    if figures["pigz_s"] is None:
        assert figures["vs_pigz"] is None and "pigz is not on PATH" in completed.stderr
    else:
        assert isinstance(figures["vs_pigz"], float) and figures["vs_pigz"] > 0


def test_list_files_skips_site_packages_links_and_gzip_endings(fake_stdlib: Path) -> None:
    """Only regular files outside site-packages, not ending as gzip would skip them, are listed, sorted."""
    assert list_files(fake_stdlib) == ["abc.py", "json/__pycache__/decoder.cpython-311.pyc", "json/decoder.py"]


def test_build_tree_copies_exactly_n_files_at_their_relative_paths(fake_stdlib: Path, tmp_path: Path) -> None:
    """Asking for fewer files than the source has copies the first ones, byte for byte, under copy-0/."""
    written = build_tree(fake_stdlib, tmp_path / "tree", 2)
    assert written == [tmp_path / "tree" / "copy-0" / "abc.py",
                       tmp_path / "tree" / "copy-0" / "json" / "__pycache__" / "decoder.cpython-311.pyc"]
    assert sorted(path for path in (tmp_path / "tree").rglob("*") if path.is_file()) == sorted(written)
    for path in written:
        assert path.read_bytes() == (fake_stdlib / path.relative_to(tmp_path / "tree" / "copy-0")).read_bytes()


def test_build_tree_cycles_into_further_copies(fake_stdlib: Path, tmp_path: Path) -> None:
    """Seven files from a three-file source fill copy-0/ and copy-1/, then start copy-2/."""
    tree = tmp_path / "tree"
    build_tree(fake_stdlib, tree, 7)
    relative = sorted(path.relative_to(tree).as_posix() for path in tree.rglob("*") if path.is_file())
    assert relative == sorted(
        [f"copy-{copy}/{name}" for copy in (0, 1) for name in list_files(fake_stdlib)] + ["copy-2/abc.py"]
    )


def test_build_tree_names_the_source_without_files(tmp_path: Path) -> None:
    """A source with nothing to copy is refused with its path, not turned into an empty tree."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: found no regular files to copy; expected a folder such as"):
        build_tree(tmp_path / "empty", tmp_path / "tree", 1)


def test_argument_batches_keep_every_path_in_order_within_the_budget() -> None:
    """Paths are split into consecutive batches of at most `budget` argument bytes, none lost."""
    paths = [f"/tmp/job/chunks/{index:04d}.py.gz" for index in range(100)]
    batches = list(argument_batches(paths, budget=200))
    assert [path for batch in batches for path in batch] == paths
    assert all(sum(len(path) + 1 for path in batch) <= 200 for batch in batches)
    assert len(batches) > 1
