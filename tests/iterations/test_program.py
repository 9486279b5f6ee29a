"""The user's program: loaded under the allowlist, checked against the contract, built seeded; its metrics."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy
import pytest
import torch

from tasks.engine import user_code
from tasks.engine.user_code import ALLOWED_CODE_VARIABLE
from tasks.errors import InvalidParameterError, InvalidProgramError
from tasks.iterations.program import build_program, checked_metrics, load_program_class

REFERENCE = "userprogs.programs:Climber"
PROGRAMS = '''
class Climber:
    def __init__(self, params, seed):
        if float(params.get("rate", "1")) <= 0:
            raise ValueError("rate must be positive")
        self.seed = seed
        self.params = params

    def step(self, iteration):
        return {"loss": 1.0 / (iteration + 1)}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class NoLoad:
    def step(self, iteration):
        return {}

    def state_dict(self):
        return {}


def make_climber(params, seed):
    return Climber(params, seed)
'''


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trusted caller, as the local command line is: any importable program loads."""
    monkeypatch.setattr(user_code, "_caller_trusted", True)


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package `userprogs` on sys.path: `programs` holds programs, `broken` fails to import."""
    package = tmp_path / "userprogs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "programs.py").write_text(PROGRAMS)
    (package / "broken.py").write_text('raise RuntimeError("no GPU driver on this machine")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [name for name in sys.modules if name == "userprogs" or name.startswith("userprogs.")]:
        del sys.modules[name]


@pytest.mark.usefixtures("trusted")
def test_a_program_class_with_the_contract_loads(user_package: Path) -> None:
    """A class with step, state_dict and load_state_dict is returned as is."""
    assert load_program_class(REFERENCE).__name__ == "Climber"


@pytest.mark.usefixtures("trusted")
def test_a_module_that_does_not_import_is_refused_naming_it_and_its_error(user_package: Path) -> None:
    """The message names the module and the error its import raised."""
    with pytest.raises(InvalidParameterError, match=r"module 'userprogs\.broken' does not import "
                       r"\(RuntimeError: no GPU driver on this machine\)"):
        load_program_class("userprogs.broken:Program")


@pytest.mark.usefixtures("trusted")
def test_a_missing_module_is_refused_naming_it(user_package: Path) -> None:
    """A module that is not there is named, with the hint to install it or put it on PYTHONPATH."""
    with pytest.raises(InvalidParameterError, match=r"module 'userprogs\.absent' does not import .*PYTHONPATH"):
        load_program_class("userprogs.absent:Program")


@pytest.mark.usefixtures("trusted")
def test_a_name_that_is_not_a_class_is_refused(user_package: Path) -> None:
    """A factory function is not a program class; the message says what it is."""
    with pytest.raises(InvalidProgramError, match=r"'userprogs\.programs:make_climber' is a function, not a class"):
        load_program_class("userprogs.programs:make_climber")


@pytest.mark.usefixtures("trusted")
def test_a_class_missing_a_method_is_refused_naming_the_method(user_package: Path) -> None:
    """The message names each method of the contract the class lacks."""
    with pytest.raises(InvalidProgramError, match=r"'userprogs\.programs:NoLoad' has no load_state_dict method"):
        load_program_class("userprogs.programs:NoLoad")


def test_the_pool_refuses_a_program_outside_the_allowlist(user_package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Untrusted, only the examples load; the message names COLABFLOW_ALLOWED_CODE, and nothing was imported."""
    monkeypatch.setattr(user_code, "_caller_trusted", False)
    monkeypatch.delenv(ALLOWED_CODE_VARIABLE, raising=False)
    with pytest.raises(InvalidParameterError, match=rf"program '{REFERENCE}' is not allowed on this worker.*"
                       rf"{ALLOWED_CODE_VARIABLE}"):
        load_program_class(REFERENCE)
    assert "userprogs.programs" not in sys.modules


def test_the_pool_loads_a_program_the_allowlist_names(user_package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package added to COLABFLOW_ALLOWED_CODE loads without trust."""
    monkeypatch.setattr(user_code, "_caller_trusted", False)
    monkeypatch.setenv(ALLOWED_CODE_VARIABLE, "userprogs")
    assert load_program_class(REFERENCE).__name__ == "Climber"


@pytest.mark.usefixtures("trusted")
def test_a_constructor_error_becomes_an_invalid_program_naming_the_params(user_package: Path) -> None:
    """A ValueError in __init__ is the program's failure: the message names the params, the seed and the error."""
    with pytest.raises(InvalidProgramError, match=r"could not be built with params \{'rate': '-1'\} and seed 4 "
                       r"\(ValueError: rate must be positive\)"):
        build_program(load_program_class(REFERENCE), REFERENCE, {"rate": "-1"}, 4)


@pytest.mark.usefixtures("trusted")
def test_a_program_is_built_with_its_params_and_seed(user_package: Path) -> None:
    """The class gets a plain dict of params and the job's seed."""
    program = build_program(load_program_class(REFERENCE), REFERENCE, {"rate": "0.5"}, 9)
    assert vars(program) == {"params": {"rate": "0.5"}, "seed": 9}


@pytest.mark.parametrize(("result", "kind"), [([0.5], "list"), (0.5, "float"), (None, "NoneType")])
def test_a_step_result_that_is_not_a_dict_is_refused(result: object, kind: str) -> None:
    """The message names the iteration and what arrived."""
    with pytest.raises(InvalidProgramError, match=rf"'lab:P': step\(3\) returned a {kind}; it must return a dict"):
        checked_metrics("lab:P", 3, result)


@pytest.mark.parametrize(("value", "shown"), [
    (True, "True (bool)"), ("0.5", "'0.5' (str)"), (numpy.bool_(False), "False (bool)"),
    (torch.tensor([1.0, 2.0]), "tensor([1., 2.]) (Tensor)"), (None, "None (NoneType)"),
])
def test_a_metric_that_is_not_a_number_is_refused(value: object, shown: str) -> None:
    """Bools, strings and tensors of several elements are refused, naming the metric and what arrived."""
    with pytest.raises(InvalidProgramError, match=re.escape(f"step(3) returned loss={shown}; a metric must be a number")):
        checked_metrics("lab:P", 3, {"loss": value})


@pytest.mark.parametrize("name", ["iteration", 7])
def test_a_reserved_or_non_string_metric_name_is_refused(name: object) -> None:
    """'iteration' is the line's own number in metrics.jsonl, and names are strings."""
    with pytest.raises(InvalidProgramError, match=rf"returned the metric name {name!r}; names are strings other than "
                       "'iteration'"):
        checked_metrics("lab:P", 3, {name: 1.0})


def test_numpy_scalars_and_one_element_tensors_become_floats() -> None:
    """numpy scalars, 0-d and 1-element tensors and plain ints all arrive as Python floats."""
    metrics = checked_metrics("lab:P", 0, {
        "a": numpy.float32(0.5), "b": numpy.int64(3), "c": torch.tensor(0.25), "d": torch.tensor([2.0]), "e": 4,
    })
    assert metrics == {"a": 0.5, "b": 3.0, "c": 0.25, "d": 2.0, "e": 4.0}
    assert all(type(value) is float for value in metrics.values())
