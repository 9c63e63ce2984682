"""Lock files that keep a second process out of a run folder or a data preparation.

An exclusive ``fcntl.flock`` on a small file, held while the work runs. The kernel drops
the lock when the holding process ends, however it ends (kill -9 included), so a lock
file left behind by a dead process never blocks anyone: there are no stale locks to
clean. The file holds the holder's process id, which the next process names in its
error. Where locking is unavailable (no ``fcntl``, or a file system that refuses
``flock``) a warning says the work is not guarded, and it goes on.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # not a POSIX system
    fcntl = None  # type: ignore[assignment]


class InUseError(ValueError):
    """Another process holds the lock (a ValueError, so the CLI prints it as one line)."""


class FileLock:
    """A held lock (see :func:`acquire`); :meth:`release` (or leaving a ``with``) frees it."""

    def __init__(self, path: Path, descriptor: int | None):
        self.path = path
        self._descriptor = descriptor

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        """Empty the file and drop the lock (closing the descriptor drops it); idempotent."""
        if self._descriptor is None:
            return
        descriptor, self._descriptor = self._descriptor, None
        try:
            os.ftruncate(descriptor, 0)
        finally:
            os.close(descriptor)

    def __enter__(self) -> FileLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _holder(descriptor: int) -> str:
    """``process <pid>`` as the holder wrote it into the file, or ``another process``."""
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"process {text}" if text.isdigit() else "another process"


def acquire(path: str | os.PathLike, busy_message: Callable[[str], str]) -> FileLock:
    """Lock ``path`` (created, with its folder, if missing) for this process.

    Raises :class:`InUseError` with ``busy_message(holder)`` when another process holds
    it, ``holder`` being e.g. ``"process 1234"``. Never waits.
    """
    path = Path(path)
    if fcntl is None:
        warnings.warn(
            f"no file locking here: {path} does not guard against a second process", stacklevel=2
        )
        return FileLock(path, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(descriptor)
            warnings.warn(
                f"cannot lock {path} ({error.strerror}): nothing guards against a second process",
                stacklevel=2,
            )
            return FileLock(path, None)
        holder = _holder(descriptor)
        os.close(descriptor)
        raise InUseError(busy_message(holder)) from None
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(descriptor)
        raise
    return FileLock(path, descriptor)
