"""User code named by `module:name`: who may run it, loading it once, and its identity.

A map function (or an iterative program) named in a run's parameters runs on the worker. A
person who may only trigger runs must not make a worker run `subprocess:Popen` or `os:system`.
So a run on the pool imports only modules under the allowlist of module prefixes set where the
worker starts (`COLABFLOW_ALLOWED_CODE`, comma-separated); the default holds colabflow's
examples alone (`tasks.*.examples`: a `*` stands for one whole package name, so every kind's
examples package is covered without the engine naming kinds). The check happens before the import, because importing a module runs it. The
local command line runs as its caller, who can already run any code, so it trusts what it is
given (`trust_caller`); parameters cannot reach that switch.

The identity of user code (part of every checkpoint key) is its module path, the sha256 of its
source file and its parameters: editing the function makes its earlier results stale.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass

from tasks.errors import InvalidParameterError

ALLOWED_CODE_VARIABLE = "COLABFLOW_ALLOWED_CODE"
DEFAULT_ALLOWED_CODE = ("tasks.*.examples",)
CODE_PATH = re.compile(r"^(?P<module>[A-Za-z_]\w*(\.[A-Za-z_]\w*)*):(?P<name>[A-Za-z_]\w*)$")

_caller_trusted = False


def trust_caller() -> None:
    """Let this process import any user code: the local command line, run by the code's own author.

    The current directory is searched too, last, so `--program anneal:Annealer` finds
    `./anneal.py` as `python -m` would, without shadowing an installed module of the same name.
    """
    global _caller_trusted
    _caller_trusted = True
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def allowed_prefixes() -> tuple[str, ...]:
    """The module prefixes a run on the pool may import, from where the worker started."""
    configured = os.environ.get(ALLOWED_CODE_VARIABLE)
    if configured is None:
        return DEFAULT_ALLOWED_CODE
    return tuple(prefix.strip() for prefix in configured.split(",") if prefix.strip())


@dataclass(frozen=True)
class CodePath:
    """A `package.module:name` reference to user code."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}:{self.name}"


def parse_code_path(text: str, role: str = "function") -> CodePath:
    """`package.module:name` split in two; anything else is refused with an example."""
    match = CODE_PATH.match(text)
    if match is None:
        raise InvalidParameterError(
            f"{role} {text!r} is not a 'package.module:name' reference; write it as, for example, "
            "'labcode.embed:Embedder'"
        )
    return CodePath(match["module"], match["name"])


def under_prefix(module: str, prefix: str) -> bool:
    """Whether `module` is `prefix` or inside it: 'lab' covers 'lab.x', not 'labx'; '*' is one whole name."""
    names, wanted = module.split("."), prefix.split(".")
    return len(names) >= len(wanted) and all(
        pattern == "*" or name == pattern for name, pattern in zip(names, wanted)
    )


def require_allowed(path: CodePath, role: str = "function") -> None:
    """Refuse code outside the allowlist, before anything of it is imported (the caller may be trusted)."""
    if _caller_trusted:
        return
    prefixes = allowed_prefixes()
    if not any(under_prefix(path.module, prefix) for prefix in prefixes):
        raise InvalidParameterError(
            f"{role} {str(path)!r} is not allowed on this worker: it imports only modules under "
            f"{', '.join(prefixes) or '(nothing)'} ({ALLOWED_CODE_VARIABLE}, set where the worker starts; "
            "a run's parameters and job variables cannot widen it). Add the module's package to "
            f"{ALLOWED_CODE_VARIABLE} when you start the worker"
        )


def import_code(path: CodePath, role: str = "function") -> object:
    """The object `path` names, after the allowlist allows it; import errors name the module."""
    require_allowed(path, role)
    try:
        module = importlib.import_module(path.module)
    except Exception as error:  # noqa: BLE001 - any failure to import is the user's code's, reported as such
        raise InvalidParameterError(
            f"{role} {str(path)!r}: module {path.module!r} does not import ({type(error).__name__}: {error}); "
            "check that it is installed on the worker, or on PYTHONPATH"
        ) from None
    try:
        return getattr(module, path.name)
    except AttributeError:
        raise InvalidParameterError(
            f"{role} {str(path)!r}: module {path.module!r} has no {path.name!r}"
        ) from None


def source_sha256(path: CodePath) -> str:
    """sha256 of the source file that defines the module (after the allowlist check); '' when it has none."""
    require_allowed(path)
    spec = importlib.util.find_spec(path.module)
    if spec is None or spec.origin is None or not os.path.isfile(spec.origin):
        return ""
    with open(spec.origin, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()
