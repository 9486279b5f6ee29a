"""The one exception tree of colabflow.

    ColabflowError
    ├── InvalidParameterError(ValueError)      a job parameter that cannot work
    ├── InvalidChunkError(ValueError)          a chunk id or chunk that must not be processed
    │   └── ChunkChangedError                  the bytes changed between fingerprint and compress
    ├── SourceNotFoundError(FileNotFoundError) a source location that does not exist
    ├── MissingObjectError(FileNotFoundError)  an object a store was asked for is not there
    ├── EmptySourceError(ValueError)           a source location with no chunks in it
    ├── CodecUnavailableError(RuntimeError)    a codec that cannot run on this machine
    ├── CoreWorkerError(RuntimeError)          a worker process died while it held part of a batch
    ├── GpuOutOfMemoryError(MemoryError)       even the smallest GPU sub-batch does not fit
    ├── InvalidProgramError(ValueError)        an iterative program that breaks its contract
    ├── DestinationError(OSError)              a destination that cannot take the output
    ├── CorruptOutputError(ValueError)         a .gz, recipe or manifest that fails its checks
    ├── CallbackRejectedError(RuntimeError)    a remote that refused the callback (401/403/404/4xx)
    ├── StorageRejectedError(PermissionError)  a remote store that refused us (401/403, quota, precondition)
    └── RemoteUnavailableError(ConnectionError) a remote that may answer later (429, 5xx, network)

Messages name the thing, what was expected, what arrived and what to do next.
Bad input (the ValueError branch) is never retried; the remote branch is, and so is an OS error
unless its errno says the input or the place is wrong (`is_retryable`).
"""

from __future__ import annotations

import errno

_OS_ERROR_ADVICE = {
    errno.EACCES: "no permission to write there; choose a destination you own or fix its permissions",
    errno.EPERM: "the operation is not permitted there; choose another destination",
    errno.EROFS: "the file system is read-only; choose a writable destination",
    errno.ENOSPC: "the disk is full; free space or choose another destination, then rerun (finished chunks are kept)",
    errno.EDQUOT: "the disk quota is exhausted; free space or choose another destination, then rerun",
    errno.ENAMETOOLONG: "a file name is too long for this file system; shorten the chunk's name "
    "(its last segment plus '.recipe.json' must fit in 255 bytes)",
    errno.ENOTDIR: "a path component is a file, not a directory; choose another destination",
}


class ColabflowError(Exception):
    """Base class of every error colabflow raises on purpose."""


class InvalidParameterError(ColabflowError, ValueError):
    """A job parameter is well-formed but cannot work (for example an unsupported scheme)."""


class InvalidChunkError(ColabflowError, ValueError):
    """A chunk id or a chunk's content must not be processed."""


class ChunkChangedError(InvalidChunkError):
    """A chunk's bytes changed between fingerprinting and compression."""


class SourceNotFoundError(ColabflowError, FileNotFoundError):
    """A source location does not exist."""


class MissingObjectError(ColabflowError, FileNotFoundError):
    """An object a store was asked for is not there (a 404, or a missing file)."""


class EmptySourceError(ColabflowError, ValueError):
    """A source location holds no chunks."""


class CodecUnavailableError(ColabflowError, RuntimeError):
    """The requested codec cannot run on this machine."""


class CoreWorkerError(ColabflowError, RuntimeError):
    """A worker process (tasks/engine/cores.py) died while it held part of a batch."""


class GpuOutOfMemoryError(ColabflowError, MemoryError):
    """Even the smallest sub-batch does not fit in the GPU's free memory; never retried."""


class InvalidProgramError(ColabflowError, ValueError):
    """An iterative program that breaks its contract: a missing method, a bad step result or state value."""


class DestinationError(ColabflowError, OSError):
    """The destination cannot take the output (permissions, full disk, name too long)."""

    @classmethod
    def for_os_error(cls, error: OSError, path: object) -> DestinationError:
        """Say what a failed local write means and what to do about it."""
        return cls(f"cannot write {str(path)!r}: {error.strerror}; "
                   f"{_OS_ERROR_ADVICE.get(error.errno or 0, 'see the system error')}")


class CorruptOutputError(ColabflowError, ValueError):
    """A compressed chunk, recipe or manifest fails its integrity checks."""


class CallbackRejectedError(ColabflowError, RuntimeError):
    """A callback target refused the request in a way a retry cannot fix."""


class StorageRejectedError(ColabflowError, PermissionError):
    """A remote store refused the request in a way a retry cannot fix (401, 403, quota, 412)."""


class RemoteUnavailableError(ColabflowError, ConnectionError):
    """A remote service did not answer usefully now; a later attempt may succeed.

    Attributes:
        retry_after: seconds the remote asked us to wait, when it said so.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# OS errors that say the input or the place is wrong: the same call fails the same way again.
_PERMANENT_ERRNOS = frozenset({
    *_OS_ERROR_ADVICE, errno.EISDIR, errno.ENOENT, errno.ELOOP, errno.EINVAL, errno.EEXIST, errno.EFBIG, errno.EBADF,
})


def is_retryable(error: BaseException) -> bool:
    """Tell whether a failed attempt may succeed when tried again.

    Remote hiccups and OS errors such as EIO or a timeout may pass; colabflow's own errors, bad
    input (a name too long, a directory where a file should be, no permission) and anything
    that is not an OS error fail the same way every time.
    """
    if isinstance(error, RemoteUnavailableError):
        return True
    if isinstance(error, ColabflowError):
        return False
    return isinstance(error, OSError) and error.errno not in _PERMANENT_ERRNOS
