"""Open HDF5 files read-only, reuse open handles safely, and turn OS failures into domain errors."""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import h5py

from .errors import ForbiddenError, InvalidFileError, NotFoundError, QueryArgumentError

log = logging.getLogger(__name__)


class FileIdentity(NamedTuple):
    """What must be unchanged for a cached handle (or anything read from the file) to still
    show the file as it is now. The status-change time changes on every write, also one
    that keeps the size and restores the modification time."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        """Identity from a stat result."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def current_identity(os_path: str) -> FileIdentity | None:
    """Identity of the file at `os_path` now (following symlinks), None if it cannot be
    stat'ed."""
    try:
        return FileIdentity.of(os.stat(os_path))
    except OSError:
        return None


def open_briefly(os_path: str, *, locking: bool) -> tuple[h5py.h5f.FileID, FileIdentity]:
    """Open a file read-only for a moment (no SWMR, no cache, no h5py.File around it) and the
    identity of what was opened. Close it with ``fid.close()`` once the objects taken from it
    are released: h5py's File.close() scans every open HDF5 object of the process, which costs
    more than the open when thousands of files are visited."""
    fapl = _BRIEF_FAPLS.get(locking)
    if fapl is None:
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        fapl.set_file_locking(locking, ignore_when_disabled=False)  # as h5py.File(locking=)
        _BRIEF_FAPLS[locking] = fapl
    fid = h5py.h5f.open(os.fsencode(os_path), h5py.h5f.ACC_RDONLY, fapl)
    try:
        identity = FileIdentity.of(os.fstat(fid.get_vfd_handle()))
    except Exception:
        fid.close()
        raise
    return fid, identity


def os_error(error: OSError, shown: str) -> Exception:
    """Domain error for an OSError met while opening `shown` (an API path, never an OS path)."""
    code = error.errno
    if isinstance(error, FileNotFoundError) or code in (errno.ENOENT, errno.ENOTDIR):
        return NotFoundError(f"File not found: {shown}")
    if isinstance(error, PermissionError) or code in (errno.EACCES, errno.EPERM):
        return ForbiddenError(f"Cannot read file {shown}: permission denied")
    if isinstance(error, IsADirectoryError) or code == errno.EISDIR:
        return InvalidFileError(f"{shown} is a directory, not an HDF5 file")
    if code == errno.ENAMETOOLONG:
        return QueryArgumentError(f"file name is too long: {shown}")
    if code == errno.ELOOP:
        return InvalidFileError(f"{shown} is a symbolic link loop")
    return InvalidFileError(f"{shown} is not a valid HDF5 file (not HDF5, truncated or corrupt)")


def identify(os_path: str, shown: str) -> FileIdentity:
    """Stat a path (following symlinks) and refuse anything but a regular file."""
    try:
        st = os.stat(os_path)
    except OSError as error:
        raise os_error(error, shown) from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidFileError(f"{shown} is a directory, not an HDF5 file")
    if not stat.S_ISREG(st.st_mode):
        # FIFOs and devices could block a worker forever or stream endlessly.
        raise InvalidFileError(f"{shown} is not a regular file")
    return FileIdentity.of(st)


def open_h5(os_path: str, shown: str, *, locking: bool) -> tuple[h5py.File, FileIdentity | None]:
    """Open read-only (SWMR-readable); also return the identity of what was actually opened."""
    try:
        h5file = h5py.File(os_path, "r", locking=locking, swmr=True)
    except OSError as error:
        log.info("Cannot open %s: %s", os_path, error)
        raise os_error(error, shown) from None
    except Exception as error:  # h5py raises RuntimeError/ValueError for some corrupt files
        log.info("Cannot open %s: %r", os_path, error)
        raise InvalidFileError(f"{shown} is not a valid HDF5 file (corrupt)") from None
    try:
        opened: FileIdentity | None = FileIdentity.of(os.fstat(h5file.id.get_vfd_handle()))
    except Exception:  # a driver without a file descriptor: trust the earlier stat
        opened = None
    return h5file, opened


_BRIEF_FAPLS: dict[bool, h5py.h5p.PropFAID] = {}
"""File access property lists of open_briefly, by locking (made once, never changed)."""


class _Entry:
    """A cached handle, the identity it was opened with, and how many requests use it."""

    __slots__ = ("cached", "h5file", "identity", "users")

    def __init__(self, h5file: h5py.File, identity: FileIdentity) -> None:
        self.h5file = h5file
        self.identity = identity
        self.users = 0
        self.cached = True


def _close(entries: list[_Entry]) -> None:
    """Close handles nobody uses any more; failures only matter to the log."""
    for entry in entries:
        try:
            entry.h5file.close()
        except Exception:
            log.debug("Error closing %s", entry.h5file, exc_info=True)


class FileCache:
    """Open HDF5 handles kept across requests, reused only while the file is unchanged.

    The lock only guards the table: HDF5 calls (validity checks, closes) happen outside it,
    so a request finishing never waits behind another request's HDF5 work.
    """

    def __init__(
        self,
        size: int = 256,
        *,
        locking: bool = False,
        background: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        """Keep at most `size` idle-or-busy handles (0 disables reuse); `background(job)`,
        if given, runs the closing of evicted handles off the request (e.g. executor.submit)."""
        self.size = size
        self.locking = locking
        self.background = background
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    @contextmanager
    def open(self, os_path: str, shown: str) -> Iterator[h5py.File]:
        """Lease an open handle of `os_path` for the duration of the `with` block."""
        with self.lease(os_path, shown) as (h5file, _):
            yield h5file

    @contextmanager
    def lease(self, os_path: str, shown: str) -> Iterator[tuple[h5py.File, FileIdentity]]:
        """open(), with the identity of the file the handle shows."""
        try:
            identity = identify(os_path, shown)
        except NotFoundError:
            self.discard(os_path)  # deleted: release its disk space now
            raise
        entry = self._acquire(os_path, identity)
        if entry is None:
            entry = self._open(os_path, shown, identity)
        try:
            yield entry.h5file, entry.identity
        finally:
            self._release(entry)

    def _acquire(self, os_path: str, identity: FileIdentity) -> _Entry | None:
        """A cached entry whose identity still matches, leased; drop a stale one."""
        closing: list[_Entry] = []
        with self._lock:
            entry = self._entries.get(os_path)
            if entry is None:
                return None
            if entry.identity == identity:
                entry.users += 1  # leased: the cache will not close it under us
                self._entries.move_to_end(os_path)
            else:
                self._forget(os_path, entry, closing)
                entry = None
        if entry is not None and not entry.h5file.id.valid:  # closed behind the cache's back
            with self._lock:
                entry.users -= 1
                self._forget(os_path, entry, closing)
            entry = None
        _close(closing)
        return entry

    def _open(self, os_path: str, shown: str, identity: FileIdentity) -> _Entry:
        """Open a new handle and cache it if there is room for it."""
        h5file, opened = open_h5(os_path, shown, locking=self.locking)
        entry = _Entry(h5file, opened or identity)
        entry.users = 1
        closing: list[_Entry] = []
        with self._lock:
            previous = self._entries.get(os_path)
            if self.size <= 0 or (previous is not None and previous.identity == entry.identity):
                entry.cached = False  # no cache, or a concurrent request cached this file first
                return entry
            if previous is not None:
                self._forget(os_path, previous, closing)
            self._entries[os_path] = entry
            while len(self._entries) > self.size:
                self._forget(*next(iter(self._entries.items())), closing)
        if closing:
            self._close_evicted(closing)
        return entry

    def _close_evicted(self, closing: list[_Entry]) -> None:
        """Close idle evicted handles in the background if possible, else now."""
        if self.background is not None:
            try:
                self.background(lambda: _close(closing))
                return
            except RuntimeError:  # the background executor is shut down
                pass
        _close(closing)

    def _forget(self, os_path: str, entry: _Entry, closing: list[_Entry]) -> None:
        """Drop an entry from the cache (lock held); if nobody uses it, add it to `closing`."""
        if self._entries.get(os_path) is entry:
            del self._entries[os_path]
        entry.cached = False
        if entry.users == 0:
            closing.append(entry)

    def _release(self, entry: _Entry) -> None:
        """End a lease; close an evicted or uncached handle once its last user is done."""
        with self._lock:
            entry.users -= 1
            idle = entry.users == 0 and not entry.cached
        if idle:
            _close([entry])

    def discard(self, os_path: str) -> None:
        """Forget the handle of one path, if cached (closed now if idle)."""
        closing: list[_Entry] = []
        with self._lock:
            entry = self._entries.get(os_path)
            if entry is not None:
                self._forget(os_path, entry, closing)
        _close(closing)

    def close_all(self) -> None:
        """Close every idle handle and forget all (busy ones close when released)."""
        closing: list[_Entry] = []
        with self._lock:
            for os_path, entry in list(self._entries.items()):
                self._forget(os_path, entry, closing)
        _close(closing)
