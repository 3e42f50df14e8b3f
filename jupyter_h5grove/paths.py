"""The one place mapping a `file` query argument to an OS path under the Jupyter root directory."""

from __future__ import annotations

import os
from collections.abc import Callable

from jupyter_core.paths import is_hidden

from .errors import ForbiddenError, NotFoundError, QueryArgumentError

MAX_PATH_BYTES = 4096
"""Longest accepted OS path in bytes (Linux PATH_MAX): longer ones are refused before any I/O."""

MAX_NAME_BYTES = 255
"""Longest accepted path component in bytes (NAME_MAX on common file systems)."""

FILE_NOT_FOUND = "File not found"

_HIDDEN_FLAGS = os.name == "nt" or hasattr(os.stat_result, "st_flags")
"""Whether this OS can also hide files with flags (then Jupyter's full is_hidden is needed)."""

RESOLVED_CACHE_SIZE = 4096
"""`file` arguments whose accepted OS path is remembered (when the rule is a string rule)."""


def _prefix(directory: str) -> str:
    """Directory with exactly one trailing separator, for prefix containment checks."""
    return directory if directory.endswith(os.sep) else directory + os.sep


def _inside(path: str, root: str, root_prefix: str) -> bool:
    """Whether a normalised absolute path is the root or lies below it."""
    return path == root or path.startswith(root_prefix)


def _check_syntax(file: str) -> None:
    """Refuse what no OS path can be, before touching the file system."""
    if "\x00" in file:
        raise QueryArgumentError("file must not contain NUL characters")
    encoded = file.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES:
        raise QueryArgumentError(f"file is longer than {MAX_PATH_BYTES} bytes")
    if any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise QueryArgumentError(f"file has a name longer than {MAX_NAME_BYTES} bytes")


class RootPolicy:
    """Which OS paths may be served: inside the root, not hidden, maybe confined by real path."""

    def __init__(
        self,
        root: str,
        allow_hidden: Callable[[], bool],
        allow_symlinks_outside_root: bool = True,
    ) -> None:
        """Normalise the root once so per-request checks are plain string comparisons."""
        self.root = os.path.normpath(os.path.abspath(root))
        self.allow_hidden = allow_hidden
        self.allow_symlinks_outside_root = allow_symlinks_outside_root
        self._root_prefix = _prefix(self.root)
        self._real_root = os.path.realpath(self.root)
        self._real_root_prefix = _prefix(self._real_root)
        # Where the verdict depends on the strings alone (no OS hiding flags, no real paths),
        # an accepted `file` stays accepted for the same allow_hidden: remember its OS path.
        self._memoise = not _HIDDEN_FLAGS and allow_symlinks_outside_root
        self._resolved: dict[tuple[str, bool], str] = {}

    def resolve(self, file: str) -> str:
        """OS path of the API path `file` (relative to root, like Jupyter's contents API)."""
        if not self._memoise:
            return self._resolve(file)
        key = (file, self.allow_hidden())
        os_path = self._resolved.get(key)
        if os_path is None:
            os_path = self._resolve(file)
            if len(self._resolved) >= RESOLVED_CACHE_SIZE:
                self._resolved.clear()
            self._resolved[key] = os_path
        return os_path

    def _resolve(self, file: str) -> str:
        """resolve() without memoisation."""
        _check_syntax(file)
        if not file.strip():
            raise QueryArgumentError("file must name an HDF5 file")
        os_path = os.path.normpath(os.path.join(self.root, file))
        self.check(os_path, file)
        return os_path

    def check(self, os_path: str, shown: str) -> None:
        """Refuse a normalised OS path outside the root or hidden; `shown` names it to users."""
        if not _inside(os_path, self.root, self._root_prefix):
            # Decided on the string alone: the answer never depends on what exists outside.
            raise ForbiddenError(f"{shown} is outside the root directory of the server")
        if not self.allow_hidden() and self._hidden(os_path):
            raise NotFoundError(f"{FILE_NOT_FOUND}: {shown}")
        if not self.allow_symlinks_outside_root:
            real = os.path.realpath(os_path)
            if not _inside(real, self._real_root, self._real_root_prefix):
                raise ForbiddenError(f"{shown} is outside the root directory of the server")

    def _hidden(self, os_path: str) -> bool:
        """Jupyter's is_hidden (a `.name` below the root, or OS flags), cheaply on Linux."""
        relative = os_path[len(self._root_prefix) :] if os_path != self.root else ""
        if any(part.startswith(".") for part in relative.split(os.sep)):
            return True
        return _HIDDEN_FLAGS and is_hidden(os_path, self.root)

    def contains(self, os_path: str) -> bool:
        """Whether an OS path (e.g. an HDF5 external link target) may be served by the same rule."""
        try:
            self.check(os.path.normpath(os.path.abspath(os_path)), os_path)
        except (ForbiddenError, NotFoundError):
            return False
        return True
