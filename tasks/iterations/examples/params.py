"""Reading the examples' parameters, which arrive as strings from `--param KEY=VALUE`."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from tasks.errors import InvalidParameterError


def reject_unknown(params: Mapping[str, str], known: Collection[str], program: str) -> None:
    """Refuse a param the program does not read, so a typo does not pass silently as a default."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidParameterError(
            f"{program} has no param {', '.join(map(repr, unknown))}; expected some of {', '.join(sorted(known))}"
        )


def read_int(params: Mapping[str, str], name: str, default: str, minimum: int, maximum: int) -> int:
    """The param `name` as an integer from `minimum` to `maximum`."""
    text = params.get(name, default)
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise InvalidParameterError(f"param {name!r} must be an integer from {minimum} to {maximum}; got {text!r}")
    return value


def read_float(
    params: Mapping[str, str], name: str, default: str, low: float, high: float, allow_low: bool = False
) -> float:
    """The param `name` as a float in (low, high], or in [low, high] when `allow_low`."""
    text = params.get(name, default)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (low <= value if allow_low else low < value) or not value <= high:
        interval = f"{'[' if allow_low else '('}{low:g}, {high:g}]"
        raise InvalidParameterError(f"param {name!r} must be a number in {interval}; got {text!r}")
    return value


def read_choice(params: Mapping[str, str], name: str, default: str, choices: Collection[str]) -> str:
    """The param `name` as one of `choices`."""
    text = params.get(name, default)
    if text not in choices:
        raise InvalidParameterError(f"param {name!r} must be one of {', '.join(choices)}; got {text!r}")
    return text
