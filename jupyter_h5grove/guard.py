"""Containment of HDF5 external links, virtual dataset sources and external raw storage.

Without a guard, :func:`resolve_entity` resolves paths exactly as h5grove does (HDF5 follows
every link itself). With a guard, the path is walked one segment at a time and HDF5 never
follows an external link: the core resolves the target file name and asks the guard to open
it. :func:`check_storage` refuses reads of datasets whose VDS source files or external raw
storage files may lie outside the root, resolving their names as HDF5 will (VDS sources:
absolute name, ``HDF5_VDS_PREFIX``, the dataset's virtual prefix, the file's folder, the
working directory; raw storage: ``HDF5_EXTFILE_PREFIX`` or the efile prefix, else the working
directory). Datasets are not reopened with ``${ORIGIN}`` prefixes: HDF5 refuses to open a
dataset already open with other prefixes, which a shared file handle cannot rule out.

What a server implements (or it uses :class:`RootGuard`) -- the :class:`Guard` protocol:

- ``open_file(from_file, target_file) -> h5py.File``: open, read-only, the file that an
  external link stored in ``from_file`` (an OS path) names with ``target_file`` (the link's
  raw file name). Raise :class:`ForbiddenError` when it lies outside the root (without
  revealing whether it exists), :class:`NotFoundError` (or OSError) when it is missing or
  unreadable. The returned file must stay open while contents made from it are in use.
- ``allows(os_path) -> bool``: whether an absolute OS path lies inside the root (used for
  VDS source files and external raw storage files).
- ``locate(from_file, target_file) -> (os_path, FileIdentity)``: the file ``open_file`` would
  open, and its identity, with the same refusals, opening nothing.
- ``visit(os_path)``: a context manager giving the file at an OS path ``locate`` returned
  (a low-level ``h5py.h5f.FileID``), open only for the ``with`` block (used to describe
  thousands of link targets one by one), and its identity.
- ``memo``: a :class:`~jupyter_h5grove.linkmemo.LinkMemo` keeping descriptions of link
  targets across requests, or None; ``policy_key()``: whatever else ``allows`` depends on
  (it is part of the memo's keys); ``identify(path)``: a located file's identity now;
  ``local``: whether the files are local (virtual dataset sources and external storage in
  other files are refused otherwise).

:func:`external_target` resolves an external link through briefly opened files, recording
each file's identity, for the descriptions the memo keeps.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import posixpath
import stat
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, ExitStack
from typing import Any, NamedTuple, Protocol

import h5py

from .errors import (
    ForbiddenError,
    H5GroveError,
    LinkError,
    NotFoundError,
    PathError,
)
from .files import FileIdentity, current_identity, open_briefly
from .linkmemo import BROKEN, Described, LinkMemo
from .models import LinkResolution
from .tags import Dependencies

MAX_LINK_HOPS = 16
"""Soft/external links followed for one path before giving up (HDF5's default limit)."""

ORIGIN = "${ORIGIN}"
"""HDF5's placeholder for the directory of the file holding the dataset."""

_BROKEN = (OSError, KeyError, RuntimeError, ValueError, NotFoundError, H5GroveError)
"""What opening or traversing a link target raises when the target is unusable."""


class Guard(Protocol):
    """What the core asks of a server to keep HDF5 inside the served root."""

    def open_file(self, from_file: str, target_file: str) -> h5py.File:
        """Open the target of an external link found in ``from_file`` (or raise)."""
        ...

    def allows(self, os_path: str) -> bool:
        """Whether ``os_path`` lies inside the served root."""
        ...

    def locate(self, from_file: str, target_file: str) -> tuple[str, Any]:
        """Where the target of an external link found in ``from_file`` is (or raise), and
        its identity."""
        ...

    def visit(self, located: str) -> AbstractContextManager[tuple[Any, Any]]:
        """A located file, open (an ``h5py.h5f.FileID``) for a ``with`` block only, and its
        identity."""
        ...

    memo: LinkMemo | None

    local: bool
    """Whether the guarded files are local (HDF5 opens the files their virtual datasets and
    external storage name itself: from a remote file, it cannot)."""

    dependencies: Dependencies
    """The files the request consulted through the guard (for HTTP revalidation)."""

    def identify(self, path: str) -> Any:
        """The identity of a file ``locate`` returned, now (None if it is gone)."""
        ...

    def policy_key(self) -> Any:
        """What the verdicts of ``allows`` depend on besides the path."""
        ...


class RootGuard:
    """A ready Guard: everything under ``root_dir`` is allowed, nothing else."""

    def __init__(
        self,
        root_dir: str,
        follow_symlinks_outside: bool = True,
        open_file: Callable[[str], h5py.File] | None = None,
        *,
        memo: LinkMemo | None = None,
        locking: bool = False,
    ) -> None:
        self.root_dir = os.path.abspath(root_dir)
        self.follow_symlinks_outside = follow_symlinks_outside
        self._open: Callable[[str], h5py.File] = open_file or _open_read_only
        self.memo = memo
        self.locking = locking
        self.local = True
        self.dependencies = Dependencies()

    @functools.cached_property
    def real_root(self) -> str:
        """The root with symlinks resolved, computed on first need (a guard lives per request)."""
        return os.path.realpath(self.root_dir)

    def allows(self, os_path: str) -> bool:
        """Lexically inside the root; and by real path too unless symlinks may lead outside."""
        path = os.path.abspath(os_path)
        if not _inside(path, self.root_dir):
            return False
        return self.follow_symlinks_outside or _inside(os.path.realpath(path), self.real_root)

    def open_file(self, from_file: str, target_file: str) -> h5py.File:
        """Open an external link's target if allowed (also relocated next to the linking file)."""
        return self._open(self.locate(from_file, target_file)[0])

    def locate(self, from_file: str, target_file: str) -> tuple[str, FileIdentity]:
        """The first candidate HDF5 would open that is allowed and a regular file."""
        refused = False
        for candidate in link_target_candidates(from_file, target_file):
            if not self.allows(candidate):
                refused = True
                continue
            try:
                found = os.stat(candidate)
            except OSError:
                self.dependencies.note(candidate, None)  # the answer changes if it appears
                continue
            identity = FileIdentity.of(found)
            self.dependencies.note(candidate, identity)
            if stat.S_ISREG(found.st_mode):
                return candidate, identity
        if refused:
            raise ForbiddenError(
                f"External link target {target_file!r} is outside the served directory"
            )
        raise NotFoundError(f"External link target {target_file!r} not found")

    @contextlib.contextmanager
    def visit(self, os_path: str) -> Iterator[tuple[h5py.h5f.FileID, FileIdentity]]:
        """A located file, open (read-only, uncached) for the ``with`` block only."""
        fid, identity = open_briefly(os_path, locking=self.locking)
        try:
            yield fid, identity
        finally:
            fid.close()

    def identify(self, path: str) -> FileIdentity | None:
        """The identity of a local file now (a stat)."""
        return current_identity(path)

    def policy_key(self) -> Any:
        """Nothing but the constructor's arguments decides ``allows``."""
        return None


def _open_read_only(path: str) -> h5py.File:
    """Default opener of RootGuard."""
    return h5py.File(path, "r", locking=False)


def _inside(path: str, root: str) -> bool:
    """True if ``path`` is ``root`` or below it (both absolute and normalised)."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def link_target_candidates(from_file: str, target_file: str) -> list[str]:
    """Files an external link may mean: the name itself (absolute, or next to its file),
    then, for an absolute name, its base name next to the linking file (as HDF5 relocates)."""
    folder = os.path.dirname(os.path.abspath(from_file))
    if os.path.isabs(target_file):
        return [os.path.normpath(target_file), os.path.join(folder, os.path.basename(target_file))]
    return [os.path.normpath(os.path.join(folder, target_file))]


def resolve_entity(
    h5file: h5py.File, path: str, resolve_links: LinkResolution, guard: Guard | None
) -> tuple[Any, str | None]:
    """The h5py object or link at ``path`` and, for a link a guard refused, why."""
    if guard is None:
        return _resolve_like_h5grove(h5file, path, resolve_links), None
    return _Walker(guard).resolve(h5file, path, resolve_links)


def _resolve_like_h5grove(h5file: h5py.File, path: str, mode: LinkResolution) -> Any:
    """h5grove's resolution, except that loops and HDF5 failures become domain errors."""
    if path == "/":
        return h5file[path]
    try:
        link = h5file.get(path, getlink=True)
    except _BROKEN:
        link = None
    if link is None:
        raise PathError(f"{path} is not a valid path in {os.path.basename(h5file.filename)}")
    if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
        if mode == LinkResolution.NONE:
            return link
        try:
            return h5file[path]
        except _BROKEN:
            if mode == LinkResolution.ONLY_VALID:
                return link
            raise LinkError(
                f"Cannot resolve {link} at {path} of {os.path.basename(h5file.filename)}"
            ) from None
    try:
        return h5file[path]
    except _BROKEN:
        raise PathError(f"{path} cannot be opened in {os.path.basename(h5file.filename)}") from None


class _Broken(Exception):
    """A link on the way cannot be followed (missing target, loop, unreadable file)."""


class _Opener(Protocol):
    """What the walker asks of a guard: open an external link's target."""

    def open_file(self, from_file: str, target_file: str) -> h5py.File: ...


class _Walker:
    """Resolve a path segment by segment, opening external files only through a guard."""

    def __init__(self, guard: _Opener) -> None:
        self.guard = guard
        self.hops = 0

    def resolve(self, h5file: h5py.File, path: str, mode: LinkResolution) -> tuple[Any, str | None]:
        """Entity (or unresolved link) at ``path``, and the refusal message if any."""
        names = [name for name in path.split("/") if name not in ("", ".")]
        if not path:
            raise PathError(f"{path} is not a valid path in {os.path.basename(h5file.filename)}")
        if not names:
            return h5file["/"], None
        found = _hard_linked(h5file, names)
        if found is not None:  # The common case: one lookup per segment, nothing to guard.
            return found, None
        group, file, where = h5file["/"], h5file, "/"
        for position, name in enumerate(names):
            last = position == len(names) - 1
            try:
                link = group.get(name, getlink=True)
            except _BROKEN:
                link = None
            if link is None:
                raise PathError(
                    f"{path} is not a valid path in {os.path.basename(h5file.filename)}"
                )
            if isinstance(link, h5py.HardLink):
                where = posixpath.join(where, name)
                obj = _open_in(file, where)
            else:
                if last and mode == LinkResolution.NONE:
                    return link, None
                try:
                    obj, file, where = self._follow(link, file, where)
                except ForbiddenError as refusal:
                    if last and mode == LinkResolution.ONLY_VALID:
                        return link, str(refusal)
                    raise
                except _Broken:
                    if not last:
                        raise PathError(
                            f"{path} is not a valid path in {os.path.basename(h5file.filename)}"
                        ) from None
                    if mode == LinkResolution.ONLY_VALID:
                        return link, None
                    raise LinkError(
                        f"Cannot resolve {link} at {path} of {os.path.basename(h5file.filename)}"
                    ) from None
            if last:
                return obj, None
            if not isinstance(obj, h5py.Group):
                raise PathError(
                    f"{path} is not a valid path in {os.path.basename(h5file.filename)}"
                )
            group = obj
        raise AssertionError("unreachable")  # pragma: no cover

    def _follow(self, link: Any, file: h5py.File, where: str) -> tuple[Any, h5py.File, str]:
        """Target of a soft or external link: (object, its file, its path in that file)."""
        self.hops += 1
        if self.hops > MAX_LINK_HOPS:
            raise _Broken("too many links")
        if isinstance(link, h5py.SoftLink):
            target = link.path if link.path.startswith("/") else posixpath.join(where, link.path)
            return self._walk(file, target)
        if isinstance(link, h5py.ExternalLink):
            try:
                target_file = self.guard.open_file(file.filename, link.filename)
            except ForbiddenError:
                raise
            except _BROKEN as error:
                raise _Broken(str(error)) from None
            return self._walk(target_file, "/" + link.path.lstrip("/"))
        raise _Broken(f"unsupported link {link!r}")

    def _walk(self, file: h5py.File, path: str) -> tuple[Any, h5py.File, str]:
        """Follow an absolute path completely (links included) inside a link's target."""
        names = [n for n in path.split("/") if n not in ("", ".")]
        found = _hard_linked(file, names) if names else None
        if found is not None:  # The common case: hard links only, one lookup per segment.
            return found, file, "/" + "/".join(names)
        obj: Any = file["/"]
        where = "/"
        for name in names:
            if not isinstance(obj, h5py.Group):
                raise _Broken(f"{where} is not a group")
            try:
                link = obj.get(name, getlink=True)
            except _BROKEN:
                link = None
            if link is None:
                raise _Broken(f"{posixpath.join(where, name)} does not exist")
            if isinstance(link, h5py.HardLink):
                where = posixpath.join(where, name)
                obj = _open_in(file, where)
            else:
                obj, file, where = self._follow(link, file, where)
        return obj, file, where


class _Brief:
    """A guard for one external_target call: link targets are opened briefly (closed when the
    call ends) and every file read is recorded with its identity."""

    def __init__(self, guard: Guard, files: ExitStack) -> None:
        self.guard = guard
        self.handles = files
        self.read: list[tuple[str, FileIdentity]] = []

    def open_file(self, from_file: str, target_file: str) -> h5py.File:
        os_path, _ = self.guard.locate(from_file, target_file)
        return h5py.File(self.open_located(os_path))

    def open_located(self, os_path: str) -> h5py.h5f.FileID:
        fid, identity = self.handles.enter_context(self.guard.visit(os_path))
        self.read.append((os_path, identity))
        return fid


@contextlib.contextmanager
def external_target(
    guard: Guard, os_path: str, target_path: str
) -> Iterator[tuple[Any, list[tuple[str, FileIdentity]]]]:
    """The low-level HDF5 object (an ``ObjectID``) an external link names, its target file
    already located at ``os_path``, or None if the link is broken or refused further on; and
    the (OS path, identity) of every file read to find it, the target file first. The files
    are open for the ``with`` block only: release the object before it ends."""
    with ExitStack() as files:
        brief = _Brief(guard, files)
        names = [n for n in target_path.split("/") if n not in ("", ".")]
        target: Any = None
        try:
            fid = brief.open_located(os_path)
            target = _hard_linked_id(fid, names) if names else h5py.h5o.open(fid, b"/")
            if target is None:  # soft or external links inside the target: walk them
                target = _Walker(brief)._walk(h5py.File(fid), target_path)[0].id
        except (ForbiddenError, _Broken, *_BROKEN):
            target = None
        try:
            yield target, brief.read
        finally:
            target = None  # HDF5 closes a file once the objects taken from it are released


class Target(NamedTuple):
    """An external link's target file as located by the guard, and its key in the memo."""

    key: Hashable
    os_path: str
    """Its OS path (or URL, for a remote file)."""
    identity: Any


def locate_target(
    guard: Guard, from_file: str, target_file: str, target_path: str
) -> Target | ForbiddenError | None:
    """Where the target of an external link stored in ``from_file`` (an OS path) is: a
    Target, the guard's refusal, or None when it is missing or unreadable (a stat, no open)."""
    try:
        os_path, identity = guard.locate(from_file, target_file)
    except ForbiddenError as refusal:
        return refusal
    except (OSError, NotFoundError, H5GroveError):
        return None
    return Target((os_path, target_path, guard.policy_key()), os_path, identity)


def remembered(guard: Guard, target: Target) -> Described | None:
    """The memo's description of a located target, if it is still valid."""
    if guard.memo is None:
        return None
    return guard.memo.get(target.key, target.identity, guard.identify)


def describe_external(
    guard: Guard,
    from_file: str,
    target_file: str,
    target_path: str,
    describe: Callable[[Any], dict[str, Any]],
) -> Described | ForbiddenError:
    """The description of what an external link stored in ``from_file`` (an OS path) names,
    made by ``describe(entity)`` or taken from the guard's memo; the guard's refusal when the
    target file lies outside the root.

    Costs a stat when the memo knows the target; otherwise the target file is open only while
    it is described.
    """
    target = locate_target(guard, from_file, target_file, target_path)
    if not isinstance(target, Target):
        return BROKEN if target is None else target
    found = remembered(guard, target)
    if found is None:
        with external_target(guard, target.os_path, target_path) as (entity, read):
            metadata = None if entity is None else describe(entity)
            del entity  # release the target's objects before its file is closed
        found = Described(metadata, tuple(read) or ((target.os_path, target.identity),))
        if guard.memo is not None:
            guard.memo.put(target.key, found)
    guard.dependencies.note_all(found.files)
    return found


def _hard_linked(h5file: h5py.File, names: list[str]) -> Any:
    """The object at ``names`` (h5py's wrapper) if every segment is a hard link, else None."""
    location = _hard_linked_id(h5file.id, names)
    if location is None:
        return None
    kind = h5py.h5i.get_type(location)
    if kind == h5py.h5i.DATASET:  # As h5py's Group.__getitem__ wraps it.
        return h5py.Dataset(location, readonly=h5file.mode == "r")
    wrapper = _WRAPPERS.get(kind)
    return wrapper(location) if wrapper is not None else None


def _hard_linked_id(fid: h5py.h5f.FileID, names: list[str]) -> Any:
    """The low-level object at ``names`` if every segment is a hard link (else None): the walk
    without link objects. Each prefix's link is checked from the root (no intermediate object
    is opened), so HDF5 traverses only hard links when it opens the object."""
    links = fid.links
    path = b""
    try:
        for name in names:
            path += b"/" + name.encode("utf-8")
            if links.get_info(path).type != h5py.h5l.TYPE_HARD:
                return None
        return h5py.h5o.open(fid, path)
    except _BROKEN:
        return None


_WRAPPERS: dict[int, Callable[[Any], Any]] = {
    h5py.h5i.GROUP: h5py.Group,
    h5py.h5i.DATATYPE: h5py.Datatype,
}
"""h5py's high-level class of each low-level object type (datasets apart)."""


def _open_in(file: h5py.File, where: str) -> Any:
    """Open an object by hard-link path (one file, no link traversal)."""
    try:
        return file[where]
    except _BROKEN as error:
        raise _Broken(str(error)) from None


MAX_STORAGE_DEPTH = 8
"""Nesting of virtual datasets (sources that are themselves virtual) checked before refusing."""


def check_storage(
    dataset: h5py.Dataset, guard: Guard, _depth: int = 0, _seen: set[Any] | None = None
) -> None:
    """Refuse (ForbiddenError) to read a dataset whose raw data may come from outside the root.

    Virtual sources that are themselves virtual datasets (or use external storage) are checked
    recursively, opening their files through the guard.
    """
    if not dataset.is_virtual and not dataset.external:
        return  # The data is in the dataset's own file (the common case: nothing to look up).
    if dataset.external or any(s.file_name != "." for s in dataset.virtual_sources()):
        guard.dependencies.opaque = True  # HDF5 reads files nobody notes
    seen = set() if _seen is None else _seen
    key = (os.path.abspath(dataset.file.filename), dataset.name)
    if key in seen:
        return
    seen.add(key)
    if _depth > MAX_STORAGE_DEPTH:
        raise ForbiddenError(f"{dataset.name} nests virtual datasets too deeply to be checked")
    folder = os.path.dirname(os.path.abspath(dataset.file.filename))
    dapl = dataset.id.get_access_plist()
    if dataset.is_virtual:
        prefix = dapl.get_virtual_prefix().decode()
        for source in dataset.virtual_sources():
            for source_file in _source_files(dataset, source.file_name, folder, prefix, guard):
                _check_nested(source_file, source.dset_name, guard, _depth, seen)
    if dataset.external and not guard.local:
        raise ForbiddenError(f"{dataset.name} stores its data in other files: not read remotely")
    for name, _offset, _size in dataset.external or ():
        raw = name.decode() if isinstance(name, bytes) else name
        path = _efl_path(raw, folder, dapl.get_efile_prefix().decode())
        if not guard.allows(path):
            raise ForbiddenError(
                f"{dataset.name} stores its data in a file outside the served directory"
            )
        if os.path.exists(path) and not os.path.isfile(path):  # A FIFO would block HDF5.
            raise ForbiddenError(f"{dataset.name} stores its data in something not a file")


def storage_datasets(dataset: h5py.Dataset, guard: Guard) -> list[h5py.Dataset]:
    """The dataset and, if virtual, its source datasets (recursively, opened via the guard).

    Raises ForbiddenError like :func:`check_storage` for sources outside the root.
    """
    found: list[h5py.Dataset] = []
    pending = [(dataset, 0)]
    seen: set[Any] = set()
    while pending:
        current, depth = pending.pop()
        key = (os.path.abspath(current.file.filename), current.name)
        if key in seen or depth > MAX_STORAGE_DEPTH:
            continue
        seen.add(key)
        found.append(current)
        if not current.is_virtual:
            continue
        folder = os.path.dirname(os.path.abspath(current.file.filename))
        prefix = current.id.get_access_plist().get_virtual_prefix().decode()
        for source in current.virtual_sources():
            if "%" in source.dset_name:
                continue
            for source_file in _source_files(current, source.file_name, folder, prefix, guard):
                try:
                    nested = source_file.get(source.dset_name)
                except _BROKEN:
                    continue
                if isinstance(nested, h5py.Dataset):
                    pending.append((nested, depth + 1))
    return found


def _source_files(
    dataset: h5py.Dataset, name: str, folder: str, prefix: str, guard: Guard
) -> list[h5py.File]:
    """Open files a VDS source may read, refusing if any candidate lies outside the root."""
    if name == ".":
        return [dataset.file]
    if not guard.local:
        raise ForbiddenError(
            f"{dataset.name} is a virtual dataset with sources in other files, which HDF5 "
            "cannot read from a remote file"
        )
    candidates = _vds_candidates(name, folder, prefix)
    if "%b" in name:  # printf-style block pattern: every matching file counts.
        candidates = [m for c in candidates for m in glob.glob(glob.escape(c).replace("%b", "*"))]
    existing = [c for c in candidates if os.path.exists(c)]
    if not all(guard.allows(c) for c in existing):
        raise ForbiddenError(
            f"{dataset.name} is a virtual dataset with a source file outside the served directory"
        )
    if not all(os.path.isfile(c) for c in existing):  # A FIFO or device would block HDF5.
        raise ForbiddenError(f"{dataset.name} is a virtual dataset with a source not a file")
    files = []
    for candidate in dict.fromkeys(existing):
        try:
            files.append(guard.open_file(dataset.file.filename, candidate))
        except _BROKEN:
            continue  # HDF5 cannot open it either: the source reads as fill values.
    return files


def _check_nested(
    source_file: h5py.File, dset_name: str, guard: Guard, depth: int, seen: set[Any]
) -> None:
    """Check a VDS source dataset that is itself virtual or externally stored."""
    if "%" in dset_name:
        return  # Patterned dataset names cannot be enumerated; their files were checked.
    try:
        source = source_file.get(dset_name)
    except _BROKEN:
        return
    if isinstance(source, h5py.Dataset) and (source.is_virtual or source.external):
        check_storage(source, guard, depth + 1, seen)


def _with_origin(prefix: str, folder: str) -> str:
    """Replace HDF5's ``${ORIGIN}`` placeholder by the dataset file's folder."""
    return prefix.replace(ORIGIN, folder)


def _vds_candidates(name: str, folder: str, prefix: str) -> list[str]:
    """Files HDF5 may open for a VDS source name, in its search order."""
    candidates = []
    base = name
    if os.path.isabs(name):
        candidates.append(name)
        base = os.path.basename(name)
    for entry in filter(None, os.environ.get("HDF5_VDS_PREFIX", "").split(":")):
        candidates.append(os.path.join(_with_origin(entry, folder), base))
    if prefix:
        candidates.append(os.path.join(_with_origin(prefix, folder), base))
    candidates.append(os.path.join(folder, base))
    candidates.append(os.path.abspath(base))
    return [os.path.abspath(c) for c in candidates]


def _efl_path(name: str, folder: str, prefix: str) -> str:
    """The file HDF5 opens for an external raw storage entry."""
    prefix = os.environ.get("HDF5_EXTFILE_PREFIX", prefix)
    if os.path.isabs(name) or not prefix:
        return os.path.abspath(name)
    return os.path.abspath(os.path.join(_with_origin(prefix, folder), name))
