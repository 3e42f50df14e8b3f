"""Content objects: an HDF5 entity's metadata, attributes, data and statistics.

Same public API and results as ``h5grove.content`` (4.0.0) for every valid input. Differences,
all for inputs on which h5grove raises a non-domain exception (HTTP 500):
- a soft-link loop (or any link HDF5 cannot traverse) is an unresolved link with
  ``only_valid`` and a LinkError with ``all``, so the parent group's metadata still works;
- a path HDF5 rejects (e.g. through a broken intermediate link) raises PathError;
- ``attributes()`` with an unknown key raises AttributeNotFoundError (422), not KeyError;
- every content has ``data()``, ``data_stats()`` and ``attributes()``: on a group, a committed
  datatype or an unresolved link they raise EntityKindError (422), or ForbiddenError (403)
  when a guard refused the link's target;
- a bad selection raises SelectionError (422) before any read (see ``selection``);
- ``data_stats()`` is computed block by block in bounded memory (see ``stats``) and gives
  all-None statistics for a null dataspace, NonNumericDataError for strings/compounds;
- a read failing because an HDF5 filter is missing raises FilterUnavailableError naming the
  filter and hdf5plugin;
- children and attributes whose names are not UTF-8 are shown with replacement characters
  (links unresolved) instead of failing the whole group (PathError in h5grove).
Additions: the keyword-only ``guard`` of :func:`create_content` (see ``guard``), and
:meth:`DatasetContent.selection_info` / :meth:`DatasetContent.iter_blocks` for bounded memory.
"""

from __future__ import annotations

from typing import Any, cast

import h5py

from .dataset import DatasetContent, dataset_metadata
from .entities import (
    EntityContent,
    ExternalLinkContent,
    ResolvedEntityContent,
    SoftLinkContent,
    _text,
)
from .errors import ForbiddenError
from .guard import (
    Guard,
    Target,
    describe_external,
    locate_target,
    remembered,
    resolve_entity,
)
from .linkmemo import Described
from .models import DatatypeMetadata, EntityMetadata, GroupMetadata, LinkResolution
from .typeinfo import get_type_metadata
from .utils import hdf_path_join, sorted_dict

__all__ = [
    "DatasetContent",
    "DatatypeContent",
    "EntityContent",
    "ExternalLinkContent",
    "GroupContent",
    "ResolvedEntityContent",
    "SoftLinkContent",
    "create_content",
]


class GroupContent(ResolvedEntityContent[h5py.Group]):
    """A group, with its children's metadata to a given depth."""

    kind = "group"

    def __init__(
        self, path: str, h5py_entity: h5py.Group, h5file: h5py.File, *, guard: Guard | None = None
    ) -> None:
        super().__init__(path, h5py_entity, guard=guard)
        self._h5file = h5file

    def _get_child_metadata_content(self, depth: int = 0) -> list[EntityMetadata]:
        """Metadata of each child, links resolved when valid (as h5grove)."""
        if depth != 0 or self._guard is None:
            return [self._child(name).metadata(depth) for name in self._h5py_entity]
        filename = self._h5py_entity.file.filename  # relative link targets start there
        return [self._child_metadata(name, filename, self._guard) for name in self._h5py_entity]

    def _child_metadata(self, name: str | bytes, filename: str, guard: Guard) -> EntityMetadata:
        """A child's metadata (depth 0); the target of an external link is described through
        the guard, and remembered across requests while its files are unchanged."""
        target = self._external_target(name)
        if target is None:
            return self._child(name).metadata(0)
        path = hdf_path_join(self._path, _text(name))
        found = describe_link_target(guard, filename, *target)
        if isinstance(found, Described) and found.metadata is not None:
            return cast(EntityMetadata, {**found.metadata, "name": _text(name)})
        refused = str(found) if isinstance(found, ForbiddenError) else None
        return ExternalLinkContent(path, h5py.ExternalLink(*target), refused=refused).metadata()

    def undescribed_links(self, probe: int = 16) -> list[tuple[str, str, str]]:
        """The external links among the children whose targets the guard's memo does not
        describe (each would be opened to describe this group): (OS path of the file holding
        the link, target file, target path), to be described anywhere (see
        :func:`describe_link_target`). Empty if the first `probe` of them are all known (a
        group seen before: the few that changed are described as they come)."""
        guard = self._guard
        if guard is None or guard.memo is None:
            return []
        filename = self._h5py_entity.file.filename
        tasks: list[tuple[str, str, str]] = []
        checked = 0
        for name in self._h5py_entity:
            target = self._external_target(name)
            if target is None:
                continue
            located = locate_target(guard, filename, *target)
            if isinstance(located, Target) and remembered(guard, located) is None:
                tasks.append((filename, *target))
            checked += 1
            if checked == probe and not tasks:
                return []
        return tasks

    def _external_target(self, name: str | bytes) -> tuple[str, str] | None:
        """(file, path) of the child if it is an external link with a UTF-8 name."""
        if isinstance(name, bytes):
            return None  # shown unresolved by _undecodable_child
        raw = name.encode("utf-8")
        links = self._h5py_entity.id.links
        try:
            if links.get_info(raw).type != h5py.h5l.TYPE_EXTERNAL:
                return None
            target_file, target_path = links.get_val(raw)
        except (KeyError, OSError, RuntimeError, ValueError):
            return None  # Let create_content report it as h5grove would.
        return _text(target_file), _text(target_path)

    def paths(self, resolve_links: LinkResolution = LinkResolution.ONLY_VALID) -> list[str]:
        """The group's path and the path of every link below it (h5grove's /paths answer).

        Each link is checked as h5grove checks it: with ``ALL`` it must resolve (LinkError, or
        ForbiddenError when a guard refused its target); with ``ONLY_VALID`` and ``NONE`` a
        soft or external link is listed whatever its target, so it is not resolved at all.
        Names that are not UTF-8 are listed with replacement characters, unchecked.
        """
        names = [self._path]
        failures: list[Exception] = []
        links = self._h5py_entity.id.links
        resolve_all = LinkResolution(resolve_links) == LinkResolution.ALL
        filename = self._h5py_entity.file.filename

        def visit(raw: bytes) -> int | None:
            name = _text(raw)
            path = hdf_path_join(self._path, name)
            try:
                kind = links.get_info(raw).type
                if name.encode("utf-8", "replace") != raw:
                    pass  # cannot be asked for by name: listed as is
                elif kind == h5py.h5l.TYPE_EXTERNAL and resolve_all:
                    self._check_external(path, links.get_val(raw), filename)
                elif kind == h5py.h5l.TYPE_HARD or resolve_all:
                    create_content(self._h5file, path, resolve_links, guard=self._guard)
                names.append(path)
            except Exception as error:  # raising inside HDF5's iteration: a SystemError
                failures.append(error)
                return 1  # stops the iteration
            return None

        links.visit(visit)
        if failures:
            raise failures[0]
        return names

    def _check_external(self, path: str, value: tuple[bytes, bytes], filename: str) -> None:
        """Raise as ``create_content(path, ALL)`` would if the external link does not resolve;
        with a guard, a target known to resolve (its files unchanged) is not opened again."""
        if self._guard is not None:
            target = (_text(value[0]), _text(value[1]))
            found = describe_link_target(self._guard, filename, *target)
            if isinstance(found, Described) and found.metadata is not None:
                return
        create_content(self._h5file, path, LinkResolution.ALL, guard=self._guard)

    def _child(self, name: str | bytes) -> EntityContent:
        """Content of a child: hard links opened from this group, no walk from the root."""
        if isinstance(name, bytes):  # h5py gives names that are not UTF-8 as bytes.
            return self._undecodable_child(name)
        path = hdf_path_join(self._path, name)
        group = self._h5py_entity
        try:
            info = group.id.links.get_info(name.encode("utf-8"))
            if info.type == h5py.h5l.TYPE_HARD:
                return _wrap(path, group[name], self._h5file, self._guard)
        except (KeyError, OSError, RuntimeError, ValueError):
            pass  # Let create_content report it as h5grove would.
        return create_content(self._h5file, path, guard=self._guard)

    def _undecodable_child(self, raw: bytes) -> EntityContent:
        """A child whose name is not UTF-8: shown with replacement characters, links unresolved.

        h5grove raises PathError for the whole group; its path cannot be asked for later.
        """
        path = hdf_path_join(self._path, _text(raw))
        group = self._h5py_entity
        links = group.id.links
        kind = links.get_info(raw).type
        if kind == h5py.h5l.TYPE_HARD:
            return _wrap(path, group[raw], self._h5file, self._guard)
        value = links.get_val(raw)
        if kind == h5py.h5l.TYPE_SOFT:
            return SoftLinkContent(path, h5py.SoftLink(_text(value)))
        target_file, target_path = value
        return ExternalLinkContent(path, h5py.ExternalLink(_text(target_file), _text(target_path)))

    def metadata(self, depth: int | None = 1) -> GroupMetadata:
        """Group metadata, with children's metadata when depth > 0 (recursively)."""
        depth = 1 if depth is None else depth
        if depth <= 0:
            return cast(GroupMetadata, super().metadata())
        return sorted_dict(  # type: ignore[return-value]
            ("children", self._get_child_metadata_content(depth - 1)),
            *super().metadata().items(),
        )


class DatatypeContent(ResolvedEntityContent[h5py.Datatype]):
    """A committed (named) datatype."""

    kind = "datatype"

    def metadata(self, depth: int | None = None) -> DatatypeMetadata:
        """The type's description, plus attributes."""
        return sorted_dict(  # type: ignore[return-value]
            ("type", get_type_metadata(self._h5py_entity.id)),
            *super().metadata().items(),
        )


def create_content(
    h5file: h5py.File,
    path: str | None,
    resolve_links: LinkResolution = LinkResolution.ONLY_VALID,
    *,
    guard: Guard | None = None,
) -> EntityContent:
    """Content of the entity at ``path``, links resolved as ``resolve_links`` says.

    With a ``guard``, external links are followed only through ``guard.open_file`` and
    datasets check their VDS sources and external storage with it before reading.

    :raises PathError: the path does not exist in the file
    :raises LinkError: a link cannot be resolved with ``LinkResolution.ALL``
    :raises ForbiddenError: the guard refused a link's target (see ``guard``)
    """
    if path is None:
        path = "/"
    entity, refused = resolve_entity(h5file, path, LinkResolution(resolve_links), guard)
    return _wrap(path, entity, h5file, guard, refused)


def describe_link_target(
    guard: Guard, from_file: str, target_file: str, target_path: str
) -> Described | ForbiddenError:
    """The metadata (depth 0, name to be set) of what an external link stored in
    ``from_file`` names, with the files it was read from (``Described``; its metadata is None
    for a broken link), or the guard's refusal; from the guard's memo when it is valid."""
    return describe_external(guard, from_file, target_file, target_path, _describe_briefly)


def _describe_briefly(location: Any) -> dict[str, Any]:
    """Metadata (depth 0) of a low-level HDF5 object whose file is open for a moment only
    (no guard kept); the name is the caller's to set."""
    kind = h5py.h5i.get_type(location)
    if kind == h5py.h5i.DATASET:  # h5py.Dataset() would read the dataset's properties
        return dict(dataset_metadata(location, ""))
    entity = h5py.Group(location) if kind == h5py.h5i.GROUP else h5py.Datatype(location)
    return dict(_wrap("/", entity, entity.file, None).metadata(0))


def _wrap(
    path: str, entity: Any, h5file: h5py.File, guard: Guard | None, refused: str | None = None
) -> EntityContent:
    """The content class for a resolved h5py object or an unresolved link."""
    if isinstance(entity, h5py.ExternalLink):
        return ExternalLinkContent(path, entity, refused=refused)
    if isinstance(entity, h5py.SoftLink):
        return SoftLinkContent(path, entity, refused=refused)
    if isinstance(entity, h5py.Dataset):
        return DatasetContent(path, entity, guard=guard)
    if isinstance(entity, h5py.Group):
        return GroupContent(path, entity, h5file, guard=guard)
    if isinstance(entity, h5py.Datatype):
        return DatatypeContent(path, entity, guard=guard)
    raise TypeError(f"h5py entity {type(entity)} not supported")
