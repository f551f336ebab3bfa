"""File-system primitives the store relies on: atomic writes, fsync, the writer lock, checksums.

Every multi-step save follows one recipe: write a temp file in the same directory, fsync it,
rename it over the destination, fsync the directory. A crash at any step leaves either the old
file or the new one, plus at worst an orphan temp file that the next writer removes.
"""

from __future__ import annotations

import errno
import fcntl
from contextlib import contextmanager
import os
import zlib
from pathlib import Path
from typing import Iterator

from ...errors import CorruptStoreError, MRLError, ReadOnlyStoreError, StoreIOError, StoreLockedError
from .crashpoints import crash_point

TEMP_SUFFIX = ".tmp-mrl"


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    return path.with_name(path.name + TEMP_SUFFIX)


def atomic_write_bytes(path: Path, data: bytes, *, point: str) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp, fsync, rename, fsync dir).

    ``point`` names the crash points of this write (``{point}:temp-written`` ...), for the tests.
    """
    tmp = temp_path(path)
    tmp.unlink(missing_ok=True)  # never write through whatever a previous crash (or a stranger) left
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        crash_point(f"{point}:temp-written")
        os.fsync(fh.fileno())
    crash_point(f"{point}:temp-synced")
    os.replace(tmp, path)
    crash_point(f"{point}:renamed")
    fsync_dir(path.parent)


def commit_temp_file(tmp: Path, path: Path, *, point: str) -> None:
    """Durably move a fully written temp file (written by someone else, e.g. hnswlib) into place."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    crash_point(f"{point}:temp-synced")
    os.replace(tmp, path)
    crash_point(f"{point}:renamed")
    fsync_dir(path.parent)


def remove_orphan_temps(directory: Path) -> list[str]:
    """Delete temp files left by a crash. Only the writer calls this."""
    removed = []
    for entry in directory.iterdir():
        if entry.name.endswith(TEMP_SUFFIX) and (entry.is_symlink() or entry.is_file()):
            entry.unlink()
            removed.append(entry.name)
    if removed:
        fsync_dir(directory)
    return removed


def file_crc32(path: Path, chunk: int = 1 << 22) -> int:
    """CRC-32 of a whole file, streamed (zlib's crc32 runs at GB/s)."""
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


class WriterLock:
    """The single-writer lock: an exclusive, non-blocking flock on ``path/lock``.

    flock is released by the kernel when the process dies, so a killed writer never leaves a
    stale lock behind. ``release`` is idempotent and safe to call from a finalizer.
    """

    def __init__(self, lock_path: Path) -> None:
        self.path = lock_path
        self._fd: int | None = None

    def acquire(self) -> None:
        try:  # O_NOFOLLOW: a planted symlink must not make us create files outside the store
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CorruptStoreError(f"{self.path} is a symlink; a store's files must be regular files") from None
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ReadOnlyStoreError(
                    f"store {self.path.parent} cannot be written here ({exc.strerror}: read-only file system or "
                    "no write permission); open it with read_only=True (the CLI's read commands do)"
                ) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreLockedError(
                    f"store {self.path.parent} is open for writing in another process (or handle); "
                    "close it there, or open this one with read_only=True"
                ) from None
            raise
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


@contextmanager
def io_errors(doing: str, where: Path) -> Iterator[None]:
    """Turn a raw OSError from our file layer into ``StoreIOError`` (typed errors are kept)."""
    try:
        yield
    except MRLError:
        raise
    except OSError as exc:
        raise StoreIOError(f"{where}: {exc.strerror or exc} while {doing}; nothing was acknowledged") from exc
