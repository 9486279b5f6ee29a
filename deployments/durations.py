"""Durations on the command line: `90s`, `15m`, `24h`, or a bare number in a default unit."""

from __future__ import annotations

import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, default_unit: str = "s") -> float:
    """Seconds in `text`; a bare number is read in `default_unit`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if match is None:
        raise ValueError(f"duration {text!r} is not a number followed by s, m or h (e.g. 90s, 15m, 24h)")
    return float(match.group(1)) * _UNITS[match.group(2) or default_unit]
