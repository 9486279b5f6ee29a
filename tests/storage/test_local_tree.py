"""Walking a local source folder: which symlinks are taken, which are left out, and why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.storage.local_tree import LocalTree, walk_source_tree


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A source with a file and a folder, and a secret and a folder beside it, outside."""
    (tmp_path / "outside" / "deep").mkdir(parents=True)
    (tmp_path / "outside" / "secret.txt").write_text("outside secret\n")
    (tmp_path / "outside" / "deep" / "d.txt").write_text("deep\n")
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.txt").write_text("beta\n")
    return root


def files_of(tree: LocalTree) -> list[str]:
    return [file.relative for file in tree.files]


def reasons_of(tree: LocalTree) -> dict[str, str]:
    return {link.relative: link.reason for link in tree.skipped}


def test_links_outside_the_root_are_left_out_naming_their_targets(source: Path) -> None:
    """A link to a file beside the source, to /etc/passwd and to a folder outside: all left out, with the advice."""
    (source / "leak.txt").symlink_to("../outside/secret.txt")
    (source / "passwd").symlink_to("/etc/passwd")
    (source / "more").symlink_to(source.parent / "outside")
    tree = walk_source_tree(source)
    assert files_of(tree) == ["a.txt", "sub/b.txt"]
    outside = os.path.realpath(source.parent / "outside")
    assert reasons_of(tree) == {
        "leak.txt": f"a symlink to {outside}/secret.txt, outside the source; --follow-symlinks includes it",
        "more": f"a symlink to {outside}, outside the source; --follow-symlinks includes it",
        "passwd": "a symlink to /etc/passwd, outside the source; --follow-symlinks includes it",
    }


def test_follow_symlinks_takes_outside_files_and_enters_outside_folders(source: Path) -> None:
    """With follow_symlinks, the outside file is taken under the link's name and the outside folder is walked."""
    (source / "leak.txt").symlink_to("../outside/secret.txt")
    (source / "more").symlink_to(source.parent / "outside")
    tree = walk_source_tree(source, follow_symlinks=True)
    assert files_of(tree) == ["a.txt", "leak.txt", "more/secret.txt", "more/deep/d.txt", "sub/b.txt"]
    assert tree.skipped == []
    leak = next(file for file in tree.files if file.relative == "leak.txt")
    assert Path(leak.path).read_bytes() == b"outside secret\n" and leak.stat.st_size == 15


def test_a_link_to_a_file_inside_is_taken_under_its_own_name_with_its_targets_bytes(source: Path) -> None:
    """The target is listed by its own name too: two items with the same content."""
    (source / "latest.txt").symlink_to("sub/b.txt")
    tree = walk_source_tree(source)
    assert files_of(tree) == ["a.txt", "latest.txt", "sub/b.txt"] and tree.skipped == []
    latest = tree.files[1]
    assert Path(latest.path).read_bytes() == b"beta\n" and latest.stat.st_size == 5


def test_a_link_to_a_folder_inside_is_entered_only_with_follow_symlinks(source: Path) -> None:
    """By default its files come under their own names and the link is named; follow adds them under the link."""
    (source / "alias").symlink_to("sub")
    tree = walk_source_tree(source)
    assert files_of(tree) == ["a.txt", "sub/b.txt"]
    assert reasons_of(tree)["alias"] == (f"a symlink to the folder {os.path.realpath(source / 'sub')}, whose files are "
                                         "taken under their own names; --follow-symlinks takes them under this name too")
    assert files_of(walk_source_tree(source, follow_symlinks=True)) == ["a.txt", "alias/b.txt", "sub/b.txt"]


@pytest.mark.parametrize("follow", [False, True])
def test_dangling_links_and_loops_are_left_out_in_either_mode(source: Path, follow: bool) -> None:
    """a -> b -> a, a link to the root from below it, a link to nothing: each named, and the walk ends."""
    (source / "loop-a").symlink_to("loop-b")
    (source / "loop-b").symlink_to("loop-a")
    (source / "sub" / "up").symlink_to("..")
    (source / "gone.txt").symlink_to("missing.txt")
    tree = walk_source_tree(source, follow_symlinks=follow)
    assert files_of(tree) == ["a.txt", "sub/b.txt"]
    root = os.path.realpath(source)
    assert reasons_of(tree) == {
        "gone.txt": f"a symlink to {root}/missing.txt, which does not exist",
        "loop-a": "a symlink loop: 'loop-b' leads back to it, never followed",
        "loop-b": "a symlink loop: 'loop-a' leads back to it, never followed",
        "sub/up": f"a symlink to {root}, a folder above it: a loop, never entered",
    }


def test_a_followed_folder_that_links_back_is_entered_once(source: Path) -> None:
    """Outside folder -> link back to the source: with follow, the walk stops at the folder already above it."""
    (source.parent / "outside" / "back").symlink_to(source)
    (source / "more").symlink_to(source.parent / "outside")
    tree = walk_source_tree(source, follow_symlinks=True)
    assert files_of(tree) == ["a.txt", "more/secret.txt", "more/deep/d.txt", "sub/b.txt"]
    assert reasons_of(tree) == {"more/back": f"a symlink to {os.path.realpath(source)}, a folder above it: a loop, "
                                             "never entered"}


@pytest.mark.parametrize("follow", [False, True])
def test_a_link_to_a_pipe_is_never_read(source: Path, follow: bool) -> None:
    """A pipe outside would block its reader forever: it is left out even with follow_symlinks."""
    pipe = source.parent / "outside" / "pipe"
    os.mkfifo(pipe)
    (source / "stream").symlink_to(pipe)
    tree = walk_source_tree(source, follow_symlinks=follow)
    assert files_of(tree) == ["a.txt", "sub/b.txt"]
    assert reasons_of(tree) == {
        "stream": f"a symlink to {os.path.realpath(pipe)}, which is not a regular file or a folder "
                  "(a device, pipe or socket)",
    }


def test_a_source_root_that_is_itself_a_link_is_resolved_first(source: Path, tmp_path: Path) -> None:
    """Links inside a linked root are judged against the real root: an inside link stays inside."""
    (source / "again.txt").symlink_to(source / "a.txt")
    (tmp_path / "linked-root").symlink_to(source)
    assert files_of(walk_source_tree(tmp_path / "linked-root")) == ["a.txt", "again.txt", "sub/b.txt"]
