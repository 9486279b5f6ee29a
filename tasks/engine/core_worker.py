"""A worker process of tasks/engine/cores.py: runs the `(function, argument)` pairs its parent sends.

Requests arrive on stdin and replies leave on the original stdout, both pickled: the pipe joins
two processes of the same program, and nothing read from storage is ever unpickled. Anything the
work prints goes to stderr, so it cannot corrupt a reply. Ctrl-C is the parent's to handle: the
worker ends when its parent closes the pipe.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import sys
from typing import BinaryIO


def import_modules(names: list[str]) -> list[str]:
    """Import modules ahead of the work that needs them; returns their names."""
    for name in names:
        importlib.import_module(name)
    return names


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until the parent closes the pipe."""
    while True:
        try:
            function, argument = pickle.load(requests)
        except EOFError:
            return
        try:
            reply = (True, function(argument))
        except Exception as error:  # noqa: BLE001 - the parent raises it
            reply = (False, error)
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # noqa: BLE001 - a result or error that cannot travel is described
            data = pickle.dumps((False, RuntimeError(f"a worker's reply could not be sent: {error!r}")))
        replies.write(data)
        replies.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
