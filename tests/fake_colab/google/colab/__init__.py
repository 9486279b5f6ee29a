"""A stand-in for Colab's `google.colab` (userdata, runtime, drive, errors), for tests that put
tests/fake_colab on sys.path or PYTHONPATH. `google/` has no `__init__.py`, so it merges with the
installed `google` namespace (google.cloud, google.auth) instead of hiding it.

Everything goes through the folder named by FAKE_COLAB_STATE:
- `secrets.json`: `{"NAME": "value"}` for secrets the notebook may read, `{"NAME": null}` for one
  without notebook access;
- `unassign.mode`: `ok` (default), `rejected` (the runtime service refuses: nothing released), or
  `no-kernel` (released, then the page cannot be told, as in a worker process);
- `calls.log`, written by the fake: one line per `unassign` and per `mount <mountpoint>`.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_file(name: str) -> Path:
    """A file in the test's state folder (FAKE_COLAB_STATE)."""
    return Path(os.environ["FAKE_COLAB_STATE"]) / name


def record(call: str) -> None:
    """Append one call to calls.log, for the test to read."""
    with state_file("calls.log").open("a") as log:
        log.write(call + "\n")
