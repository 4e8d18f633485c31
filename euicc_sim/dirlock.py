"""One owner per card directory: an exclusive OS lock on ``<dir>/lock``.

Rules:

* The lock is ``flock(LOCK_EX)`` on the file ``lock`` inside the card directory, taken before
  anything in the directory is read or changed and held until :meth:`DirectoryLock.release`.
  The kernel ties it to the open file, not to a path or a pid: when the owner process dies,
  however it dies, the lock is gone with it. A lock file left behind by a crash is harmless;
  the file is never deleted (deleting a lock file lets two processes lock two different files
  of the same name).
* After locking, the owner writes its pid into the file, so a refused opener can name it.
  The pid is information only; the lock itself decides.
* Every :class:`DirectoryLock` opens the file anew, so two lock objects conflict even in one
  process: a second ``Euicc.open`` of a directory this process already has open is refused
  too (two card objects on one directory would lose each other's updates just the same).
  Reopening after ``close()`` is fine.
* The descriptor is not inherited across ``exec``. A ``fork``ed child shares the parent's
  lock (one open file); releasing it in the child only drops the child's reference.
* ``wait``: how long to keep trying when the directory is busy (``None`` or 0: fail at once
  with :class:`~euicc_sim.errors.CardBusy`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
import weakref

from .errors import CardBusy

LOCK_FILE = "lock"

# Polling, not a blocking flock: a blocking call cannot time out without signals, which
# belong to the application (the vpcd server and the fleet install their own handlers).
_POLL_FIRST = 0.005
_POLL_MAX = 0.1


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class DirectoryLock:
    """The exclusive lock on one card directory (which must exist); see the module rules."""

    def __init__(self, directory: str | os.PathLike[str], *, wait: float | None = None) -> None:
        self.directory = os.fspath(directory)
        if wait is not None and wait < 0:
            raise ValueError(f"wait must be >= 0 seconds, got {wait}")
        path = os.path.join(self.directory, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._acquire(fd, wait or 0.0)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._pid = os.getpid()
        # A card object that is dropped without close() still lets go of its directory.
        self._finalizer = weakref.finalize(self, os.close, fd)

    def _acquire(self, fd: int, wait: float) -> None:
        deadline = time.monotonic() + wait
        delay = _POLL_FIRST
        while not _try_lock(fd):
            left = deadline - time.monotonic()
            if left <= 0:
                raise CardBusy(self.directory, _read_pid(fd), wait or None)
            time.sleep(min(delay, left))
            delay = min(delay * 2, _POLL_MAX)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Let go of the directory (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        self._finalizer.detach()
        try:
            if os.getpid() == self._pid:
                # Clear the pid first, so that nobody is ever named after the owner left.
                # (A forked child leaves the parent's pid and lock alone: closing its copy of
                # the descriptor does not release the lock the parent still holds.)
                os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)
