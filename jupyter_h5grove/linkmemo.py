"""What the entities behind external links look like, remembered while their files are unchanged.

A NeXus master file's group holds thousands of external links, one per scan or frame file.
Describing the group means describing every link's target, which h5grove does by opening
every target file on every request. Here each description is kept with the identity (device,
inode, size, modification and status-change times) of every file read to make it, and reused
only while a fresh stat of each of them still gives that identity: a rewritten, replaced or
deleted target is described anew at the next request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

from .files import current_identity

DEFAULT_SIZE = 65536
"""Descriptions kept (a few hundred bytes each): enough for a handful of big master files."""


class Described(NamedTuple):
    """The metadata of a link's target (None: the link is broken), and the files it read."""

    metadata: dict[str, Any] | None
    files: tuple[tuple[str, Any], ...]
    """(OS path or URL, identity) of every file read, the link's own target file first."""


class LinkMemo:
    """A bounded, thread-safe map from a link target to its description (least recently used
    go first), each entry valid while its files are unchanged."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Described] = OrderedDict()

    def get(
        self,
        key: Hashable,
        identity: Any,
        identify: Callable[[str], Any] = current_identity,
    ) -> Described | None:
        """The description of `key` if every file it read is unchanged; `identity` is that of
        the first file, just taken by the caller; `identify` gives the others' (a stat, or a
        remote store's answer)."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
        if found is None or found.files[0][1] != identity:
            return None
        if any(identify(path) != known for path, known in found.files[1:]):
            return None
        return found

    def put(self, key: Hashable, described: Described) -> None:
        """Remember a description (nothing is kept when the size is 0)."""
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = described
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()


BROKEN = Described(None, ())
"""The description of a link whose target file is missing or unreadable."""
