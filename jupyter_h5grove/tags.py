"""HTTP revalidation: strong ETags made from what an answer depends on, never from its bytes.

An answer depends on its query (normalised: the endpoint and the arguments it reads, the file
as an OS path or normal URL, the content coding) and on every file it was read from, as the
guards saw them: identity (device, inode, size, modification and status-change times) of a
local file, size and ETag/version of a remote object, or absence (a link's missing target
that may appear). Its tag is a hash of those: a rewritten, replaced, created or deleted file
changes it, the same answer keeps it. The last dependencies of each query are remembered so
that a conditional request is answered 304 after a stat of each, without reading HDF5.
Answers that HDF5 reads from files the guards cannot follow (virtual dataset sources,
external raw storage) get no tag.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

from . import __version__

Files = tuple[tuple[str, Any], ...]
"""(OS path or URL, identity or None if absent) of each file an answer depends on."""

SIZE = 4096
"""Queries whose dependencies are remembered (least recently used go first)."""


class Dependencies:
    """The files one answer is read from, noted by the guards as they go."""

    def __init__(self) -> None:
        self.files: dict[str, Any] = {}
        self.opaque = False
        """Whether HDF5 read files nobody noted (the answer then gets no tag)."""

    def note(self, path: str, identity: Any) -> None:
        """A file consulted (`identity` None: looked for, absent)."""
        self.files.setdefault(path, identity)

    def note_all(self, files: Iterable[tuple[str, Any]]) -> None:
        for path, identity in files:
            self.note(path, identity)

    def frozen(self) -> Files:
        return tuple(sorted(self.files.items()))


def etag(key: Hashable, files: Files) -> str:
    """The strong ETag of the answer to a query (its `key`) read from `files`."""
    text = repr((__version__, key, files)).encode("utf-8", "surrogateescape")
    return '"' + hashlib.blake2b(text, digest_size=16).hexdigest() + '"'


def matches(tag: str, if_none_match: Iterable[str]) -> bool:
    """Whether a tag is among those of If-None-Match (weak comparison, as RFC 9110 says for
    it; ``*`` matches any)."""
    return any(
        candidate == "*" or candidate.removeprefix("W/") == tag for candidate in if_none_match
    )


class Tags:
    """The dependencies of the last answer to each query (thread-safe, bounded)."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._known: OrderedDict[Hashable, Files] = OrderedDict()

    def get(self, key: Hashable) -> Files | None:
        with self._lock:
            files = self._known.get(key)
            if files is not None:
                self._known.move_to_end(key)
        return files

    def put(self, key: Hashable, files: Files) -> None:
        with self._lock:
            self._known[key] = files
            self._known.move_to_end(key)
            while len(self._known) > self.size:
                self._known.popitem(last=False)
