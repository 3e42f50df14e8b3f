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

from .dataset import DatasetContent
from .entities import (
    EntityContent,
    ExternalLinkContent,
    ResolvedEntityContent,
    SoftLinkContent,
    _text,
)
from .guard import Guard, resolve_entity
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
        return [self._child(name).metadata(depth) for name in self._h5py_entity]

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
