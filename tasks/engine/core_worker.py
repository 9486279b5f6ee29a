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
import queue
import signal
import sys
import threading
from typing import Any, BinaryIO


def import_modules(names: list[str]) -> list[str]:
    """Import modules ahead of the work that needs them; returns their names."""
    for name in names:
        importlib.import_module(name)
    return names


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests, in order, until the parent closes the pipe.

    A thread reads the requests as they come, so the parent can send the next one while this
    one runs: it would block otherwise, once both pipes are full (a reply and a request larger
    than a pipe's buffer), each process waiting for the other to read. A request that cannot be
    read is answered with its error, and the worker stops: what follows it in the pipe is lost.
    """
    waiting: queue.Queue[tuple[bool, Any] | None] = queue.Queue()

    def read() -> None:
        while True:
            try:
                waiting.put((True, pickle.load(requests)))
            except EOFError:
                waiting.put(None)
                return
            except Exception as error:  # noqa: BLE001 - the parent raises it
                waiting.put((False, error))
                return

    threading.Thread(target=read, name="colabflow-core-requests", daemon=True).start()
    while (request := waiting.get()) is not None:
        readable, content = request
        if readable:
            function, argument = content
            try:
                reply = (True, function(argument))
            except Exception as error:  # noqa: BLE001 - the parent raises it
                reply = (False, error)
        else:
            reply = (False, content)
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # noqa: BLE001 - a result or error that cannot travel is described
            data = pickle.dumps((False, RuntimeError(f"a worker's reply could not be sent: {error!r}")))
        replies.write(data)
        replies.flush()
        if not readable:
            return


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
