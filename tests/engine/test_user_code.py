"""User code: the allowlist is checked before any import, and a trusted caller may run anything."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.engine import user_code
from tasks.engine.user_code import (
    ALLOWED_CODE_VARIABLE,
    CodePath,
    import_code,
    parse_code_path,
    require_allowed,
    source_sha256,
)
from tasks.errors import InvalidParameterError


@pytest.fixture(autouse=True)
def untrusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a run on the pool does: the caller is not trusted."""
    monkeypatch.setattr(user_code, "_caller_trusted", False)


@pytest.fixture
def lab_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user package `labcode` with a module whose import leaves a mark."""
    package = tmp_path / "labcode"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "embed.py").write_text("import builtins\nbuiltins.labcode_imported = True\ndef embed(batch):\n    return batch\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package / "embed.py"
    for name in ("labcode", "labcode.embed"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("reference", ["subprocess:Popen", "os:system", "builtins:exec"])
def test_the_pool_refuses_code_outside_the_allowlist_naming_the_setting(reference: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default allowlist holds colabflow's examples only; the message names the setting and its value."""
    monkeypatch.delenv(ALLOWED_CODE_VARIABLE, raising=False)
    with pytest.raises(InvalidParameterError, match=rf"{reference!r} is not allowed on this worker: it imports only "
                       rf"modules under tasks\.\*\.examples \({ALLOWED_CODE_VARIABLE}, set where the worker starts"):
        import_code(parse_code_path(reference))


def test_a_refused_module_is_never_imported(lab_module: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check comes before the import, since importing a module runs its code."""
    import builtins

    monkeypatch.setenv(ALLOWED_CODE_VARIABLE, "otherlab")
    with pytest.raises(InvalidParameterError, match="not allowed on this worker"):
        import_code(parse_code_path("labcode.embed:embed"))
    assert not hasattr(builtins, "labcode_imported") and "labcode.embed" not in sys.modules


def test_a_prefix_covers_its_package_and_nothing_that_merely_starts_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """'lab' allows 'lab' and 'lab.x', not 'labx'."""
    monkeypatch.setenv(ALLOWED_CODE_VARIABLE, "lab, tasks.batch_map.examples")
    require_allowed(CodePath("lab", "f"))
    require_allowed(CodePath("lab.deep.module", "f"))
    with pytest.raises(InvalidParameterError, match="under lab, tasks.batch_map.examples"):
        require_allowed(CodePath("labx", "f"))


def test_the_default_covers_every_kinds_examples_and_only_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tasks.*.examples` allows each kind's examples package; a `*` never spans two names."""
    monkeypatch.delenv(ALLOWED_CODE_VARIABLE, raising=False)
    for module in ("tasks.batch_map.examples.text", "tasks.iterations.examples.hill_climb"):
        require_allowed(CodePath(module, "x"))
    for module in ("tasks.engine.cores", "tasks.examples", "tasks.batch_map.functions"):
        with pytest.raises(InvalidParameterError, match="not allowed on this worker"):
            require_allowed(CodePath(module, "x"))


def test_an_allowed_module_loads_and_its_identity_is_its_source_hash(lab_module: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Allowed code imports; its identity changes when its source file changes."""
    monkeypatch.setenv(ALLOWED_CODE_VARIABLE, "labcode")
    path = parse_code_path("labcode.embed:embed")
    assert callable(import_code(path))
    before = source_sha256(path)
    lab_module.write_text(lab_module.read_text() + "# edited\n")
    assert len(before) == 64 and source_sha256(path) != before


def test_a_trusted_caller_runs_what_it_names() -> None:
    """The local command line trusts its caller: any module may be imported (the fixture undoes it)."""
    user_code.trust_caller()
    assert import_code(parse_code_path("os.path:join")) is __import__("os").path.join


@pytest.mark.parametrize(("reference", "message"), [
    ("labcode.embed", r"is not a 'package.module:name' reference"),
    ("no_such_module_here:f", r"module 'no_such_module_here' does not import \(ModuleNotFoundError: No module named"),
    ("labcode.embed:missing", r"module 'labcode.embed' has no 'missing'"),
])
def test_a_reference_that_cannot_load_says_why(reference: str, message: str, lab_module: Path) -> None:
    """A malformed reference, a module that does not import and a missing name each get their message."""
    user_code.trust_caller()
    with pytest.raises(InvalidParameterError, match=message):
        import_code(parse_code_path(reference))


def test_a_trusted_caller_finds_a_module_in_its_current_directory_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--program anneal:Annealer` run where anneal.py is: found, as `python -m` would, after installed modules."""
    (tmp_path / "cwd_program.py").write_text("class Annealer:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", str(tmp_path))])
    user_code.trust_caller()
    try:
        assert sys.path[-1] == str(tmp_path)
        assert import_code(parse_code_path("cwd_program:Annealer")).__name__ == "Annealer"  # type: ignore[attr-defined]
    finally:
        sys.modules.pop("cwd_program", None)
