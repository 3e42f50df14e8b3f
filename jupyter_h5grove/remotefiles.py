"""HDF5 files in remote stores, read by byte range, and the guard that keeps them in bounds.

HDF5 reads a file in many small pieces (superblock, object headers, B-tree nodes, heaps)
and reads each chunk of data whole. :class:`RemoteFile` is the file object h5py reads
through: small reads are served from 64 KiB blocks fetched on demand and kept (so the
metadata of a file costs a few requests, not one per piece); big reads (chunks) are fetched
exactly, or taken from ranges fetched beforehand all at once (:meth:`RemoteFile.prefetch`:
the chunks a selection touches, concurrently). :class:`RemoteFiles` keeps files open across
requests and checks each time that the object is still the same (its size and ETag or
version): a replaced object is read anew, never from a stale cache. :class:`RemoteGuard`
resolves external links relative to the file's URL and follows them only under the
configured prefixes; it never lets a remote file reach a local one.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any

import h5py

from .errors import ForbiddenError, InvalidFileError, NotFoundError
from .linkmemo import LinkMemo
from .remote import RemoteRoots, Url, is_url, parse
from .stores import ObjectInfo, Store, make_store
from .tags import Dependencies

BLOCK = 64 * 1024
"""Size of the blocks small reads are served from."""

FIRST_BYTES = 256 * 1024
"""Fetched when a file is opened: the superblock and, usually, the first metadata."""

BIG_READ = 32 * 1024
"""Reads of this size or more (chunks) are fetched exactly, not by blocks."""

KEEP_BLOCKS = 256
"""Blocks a file keeps (16 MiB), least recently used first out."""

OPEN_REMOTE_FILES = 32
"""Remote files a worker keeps open across requests."""


class RemoteFile(io.RawIOBase):
    """A remote object as a read-only, seekable binary file (for ``h5py.File``)."""

    def __init__(self, store: Store, url: Url, info: ObjectInfo) -> None:
        super().__init__()
        self.store = store
        self.url = url
        self.info = info
        self.position = 0
        self.blocks: OrderedDict[int, bytes] = OrderedDict()
        self.ranges: dict[int, bytes] = {}
        """Exact ranges fetched beforehand, by start offset."""
        self.requests = 0
        self.received = 0

    def __repr__(self) -> str:
        """The URL: h5py names the file after it (``h5py.File.filename``)."""
        return str(self.url)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.info.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        """Read at the current position: a prefetched range, an exact fetch or blocks."""
        view = memoryview(buffer).cast("B")
        start = self.position
        stop = min(start + len(view), self.info.size)
        if stop <= start:
            return 0
        data = self.ranges.pop(start, None)
        if data is None or len(data) < stop - start:
            if stop - start >= BIG_READ:
                data = self._fetch([(start, stop)])[0]
            else:
                data = self._from_blocks(start, stop)
        view[: stop - start] = data[: stop - start]
        self.position = stop
        return stop - start

    def _from_blocks(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop) from the blocks, fetching the missing ones in one request."""
        first, last = start // BLOCK, (stop - 1) // BLOCK
        missing = [n for n in range(first, last + 1) if n not in self.blocks]
        if missing:
            low, high = missing[0] * BLOCK, min((missing[-1] + 1) * BLOCK, self.info.size)
            self._keep(low, self._fetch([(low, high)])[0])
        for number in range(first, last + 1):
            self.blocks.move_to_end(number)
        data = b"".join(self.blocks[n] for n in range(first, last + 1))
        return data[start - first * BLOCK : stop - first * BLOCK]

    def _keep(self, start: int, data: bytes) -> None:
        """Keep fetched bytes (starting on a block boundary) as blocks."""
        for offset in range(0, len(data), BLOCK):
            self.blocks[(start + offset) // BLOCK] = data[offset : offset + BLOCK]
        while len(self.blocks) > KEEP_BLOCKS:
            self.blocks.popitem(last=False)

    def _fetch(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        data = self.store.read(self.url, ranges, self.info)
        self.requests += len(ranges)
        self.received += sum(len(d) for d in data)
        return data

    def open_start(self) -> None:
        """Fetch the start of the file (where HDF5 starts reading) in one request."""
        stop = min(FIRST_BYTES, self.info.size)
        if stop and 0 not in self.blocks:
            self._keep(0, self._fetch([(0, stop)])[0])

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch these exact ranges all at once, for the reads that will ask for them (but
        those the kept blocks hold already)."""
        wanted = [(a, b) for a, b in ranges if b > a and a not in self.ranges]
        wanted = [
            (a, b)
            for a, b in wanted
            if any(n not in self.blocks for n in range(a // BLOCK, (b - 1) // BLOCK + 1))
        ]
        if wanted:
            self.ranges.update(zip((a for a, _ in wanted), self._fetch(wanted), strict=True))

    def forget_prefetched(self) -> None:
        """Drop what was fetched beforehand and not read."""
        self.ranges.clear()


class _Open:
    """An open remote HDF5 file, its file object, and how many requests use it."""

    __slots__ = ("cached", "file", "h5file", "users")

    def __init__(self, h5file: h5py.File, file: RemoteFile) -> None:
        self.h5file = h5file
        self.file = file
        self.users = 0
        self.cached = True


class RemoteFiles:
    """Remote HDF5 files kept open across requests, each reused only while its object is
    unchanged (a request asks the store for the object's size and version first)."""

    def __init__(self, roots: RemoteRoots, timeout: float, size: int = OPEN_REMOTE_FILES):
        self.roots = roots
        self.timeout = timeout
        self.size = size
        self.stores: dict[str, Store] = {}
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Open] = OrderedDict()

    def store(self, url: Url) -> Store:
        """The store of a URL's prefix (made once; the URL must be under a prefix)."""
        root = self.roots.find(url)
        if root is None:
            raise ForbiddenError(f"{url} is not under a prefix of H5GroveApp.remote_roots")
        key = str(root.prefix)
        if key not in self.stores:
            self.stores[key] = make_store(url, root.options, self.roots, self.timeout)
        return self.stores[key]

    def file(self, name: str) -> RemoteFile | None:
        """The file object of an open remote file, by its name (its URL), if it is one."""
        with self._lock:
            entry = self._open.get(name)
        return entry.file if entry is not None else None

    def identify(self, url: Url) -> ObjectInfo:
        """The object's size and version now (one request to the store)."""
        return self.store(url).stat(url)

    @contextlib.contextmanager
    def open(
        self, url: Url, info: ObjectInfo | None = None
    ) -> Iterator[tuple[h5py.File, ObjectInfo]]:
        """Lease the open HDF5 file of a URL for the `with` block (opened, or reopened if the
        object changed), with the object's size and version."""
        info = info or self.identify(url)
        entry = self._acquire(str(url), info)
        if entry is None:
            entry = self._new(url, info)
        try:
            yield entry.h5file, entry.file.info
        finally:
            entry.file.forget_prefetched()
            self._release(str(url), entry)

    def _acquire(self, key: str, info: ObjectInfo) -> _Open | None:
        with self._lock:
            entry = self._open.get(key)
            if entry is not None and entry.file.info == info:
                entry.users += 1
                self._open.move_to_end(key)
                return entry
            if entry is not None:
                self._forget(key, entry)
        return None

    def _new(self, url: Url, info: ObjectInfo) -> _Open:
        file = RemoteFile(self.store(url), url, info)
        file.open_start()
        try:
            h5file = h5py.File(file, "r", locking=False)
        except OSError as error:
            raise InvalidFileError(f"{url} is not a valid HDF5 file ({error})") from None
        entry = _Open(h5file, file)
        entry.users = 1
        with self._lock:
            if self.size > 0:
                self._open[str(url)] = entry
                while len(self._open) > self.size:
                    self._forget(*next(iter(self._open.items())))
            else:
                entry.cached = False
        return entry

    def _release(self, key: str, entry: _Open) -> None:
        with self._lock:
            entry.users -= 1
            idle = entry.users == 0 and not entry.cached
        if idle:
            _close(entry)

    def _forget(self, key: str, entry: _Open) -> None:
        """Drop an entry (lock held); closed now if unused, else by its last user."""
        if self._open.get(key) is entry:
            del self._open[key]
        entry.cached = False
        if entry.users == 0:
            _close(entry)

    def close_all(self) -> None:
        """Close every file (the HDF5 file before its file object, or h5py may crash)."""
        with self._lock:
            for key, entry in list(self._open.items()):
                self._forget(key, entry)


def _close(entry: _Open) -> None:
    with contextlib.suppress(Exception):
        entry.h5file.close()


class RemoteGuard:
    """The core's Guard for a remote file: external links are followed to URLs under the
    configured prefixes (relative names from the linking file's URL); nothing local is ever
    allowed (virtual dataset sources and external raw files in other files are refused)."""

    def __init__(
        self, files: RemoteFiles, resources: contextlib.ExitStack, memo: LinkMemo | None
    ) -> None:
        self.files = files
        self.resources = resources
        self.memo = memo
        self.local = False
        self.dependencies = Dependencies()

    def allows(self, os_path: str) -> bool:
        """No local path is reachable from a remote file."""
        return False

    def target(self, from_file: str, target_file: str) -> Url:
        """The URL an external link in the file at URL `from_file` names, if allowed."""
        if is_url(target_file):
            url = parse(target_file)
        else:
            name = target_file.replace("\\", "/")
            # An absolute (local) name: HDF5 also looks for its base name beside the file.
            url = parse(from_file).join(name.rsplit("/", 1)[-1] if name.startswith("/") else name)
        if self.files.roots.find(url) is None:
            raise ForbiddenError(
                f"External link target {target_file!r} is outside H5GroveApp.remote_roots"
            )
        return url

    def locate(self, from_file: str, target_file: str) -> tuple[str, ObjectInfo]:
        """The URL and the object's identity; a local name not found beside the file is
        refused (as a local file outside the root would be)."""
        url = self.target(from_file, target_file)
        try:
            info = self.files.identify(url)
        except NotFoundError:
            self.dependencies.note(str(url), None)
            if target_file.startswith(("/", "\\")):
                raise ForbiddenError(
                    f"External link target {target_file!r} is a local file: not followed"
                ) from None
            raise
        self.dependencies.note(str(url), info)
        return str(url), info

    def open_file(self, from_file: str, target_file: str) -> h5py.File:
        located, info = self.locate(from_file, target_file)
        h5file, _ = self.resources.enter_context(self.files.open(parse(located), info))
        return h5file

    @contextlib.contextmanager
    def visit(self, located: str) -> Iterator[tuple[Any, ObjectInfo]]:
        """The remote file at a located URL, for the `with` block (as an HDF5 file id)."""
        url = parse(located)
        with self.files.open(url) as (h5file, info):
            yield h5file.id, info

    def identify(self, located: str) -> ObjectInfo | None:
        try:
            return self.files.identify(parse(located))
        except (NotFoundError, ForbiddenError):
            return None

    def policy_key(self) -> Hashable:
        return "remote"
