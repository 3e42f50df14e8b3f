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

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar, cast

import h5py
import numpy as np

with contextlib.suppress(ImportError):  # Registers hdf5plugin's compression filters.
    import hdf5plugin  # noqa: F401

from .errors import (
    AttributeNotFoundError,
    EntityKindError,
    FilterUnavailableError,
    ForbiddenError,
)
from .guard import Guard, check_storage, resolve_entity, storage_datasets
from .models import (
    DatasetMetadata,
    DatatypeMetadata,
    EntityMetadata,
    ExternalLinkMetadata,
    GroupMetadata,
    LinkResolution,
    ResolvedEntityMetadata,
    Selection,
    SoftLinkMetadata,
    Stats,
)
from .selection import (
    Index,
    Selected,
    SelectionInfo,
    index_shape,
    plan_blocks,
    plan_chunk_blocks,
    select,
)
from .stats import EMPTY_STATS, StatsAccumulator, blockwise_stats
from .typeinfo import (
    attributes_metadata,
    cached_type_metadata,
    convert,
    filters_of,
    get_type_metadata,
    missing_filter_message,
    target_dtype,
)
from .utils import hdf_path_join, sorted_dict

DEFAULT_BLOCK_BYTES = 64 * 1024 * 1024
"""Upper bound of one block read by :meth:`DatasetContent.iter_blocks` (bytes)."""
STATS_BLOCK_BYTES = 8 * 1024 * 1024
"""Block size for statistics: small, since NumPy makes a few temporaries per block."""
STATS_GROUP_BYTES = 1024 * 1024
"""Chunks are read for statistics in groups of about this size (each chunk read whole)."""


class EntityContent:
    """Base content: a name, a kind and a path."""

    kind = "other"
    _refused: str | None = None
    """Why a guard refused the target of this (unresolved) link, if it did."""

    def __init__(self, path: str) -> None:
        self._path = path

    def metadata(self, depth: int | None = None) -> EntityMetadata:
        """Name and kind."""
        return {"name": self.name, "kind": self.kind}

    @property
    def name(self) -> str:
        """Entity name (last path segment)."""
        return self._path.split("/")[-1]

    @property
    def path(self) -> str:
        """Path in the file."""
        return self._path

    def _not_applicable(self, what: str) -> Exception:
        """The error for data/stats/attributes asked of the wrong kind of entity."""
        if self._refused is not None:
            return ForbiddenError(self._refused)
        return EntityKindError(
            f"Cannot get {what} of {self.path}: it is a {self.kind}, not a dataset"
        )

    def attributes(self, attr_keys: Sequence[str] | None = None) -> dict[str, Any]:
        """Links have no attributes (h5grove has no such method on links)."""
        raise self._not_applicable("attributes")

    def data(
        self, selection: Selection = None, flatten: bool = False, dtype: str | None = "origin"
    ) -> Any:
        """Only datasets have data."""
        raise self._not_applicable("data")

    def data_stats(self, selection: Selection = None) -> Stats:
        """Only datasets have statistics."""
        raise self._not_applicable("statistics")


class ExternalLinkContent(EntityContent):
    """An external link left unresolved (by choice, because broken, or refused by a guard)."""

    kind = "external_link"

    def __init__(self, path: str, link: h5py.ExternalLink, *, refused: str | None = None) -> None:
        super().__init__(path)
        self._target_file = link.filename
        self._target_path = link.path
        self._refused = refused

    def metadata(self, depth: int | None = None) -> ExternalLinkMetadata:
        """Target file and path of the link."""
        return sorted_dict(  # type: ignore[return-value]
            ("target_file", self._target_file),
            ("target_path", self._target_path),
            *super().metadata().items(),
        )

    @property
    def target_file(self) -> str:
        """The target file of the link."""
        return self._target_file

    @property
    def target_path(self) -> str:
        """The target path of the link (in the target file)."""
        return self._target_path


class SoftLinkContent(EntityContent):
    """A soft link left unresolved (by choice or because broken or looping)."""

    kind = "soft_link"

    def __init__(self, path: str, link: h5py.SoftLink, *, refused: str | None = None) -> None:
        super().__init__(path)
        self._target_path = link.path
        self._refused = refused

    def metadata(self, depth: int | None = None) -> SoftLinkMetadata:
        """Target path of the link."""
        return sorted_dict(  # type: ignore[return-value]
            ("target_path", self._target_path), *super().metadata().items()
        )

    @property
    def target_path(self) -> str:
        """The target path of the link."""
        return self._target_path


T = TypeVar("T", h5py.Dataset, h5py.Datatype, h5py.Group)


class ResolvedEntityContent(EntityContent, Generic[T]):
    """An entity with attributes: group, dataset or committed datatype."""

    def __init__(self, path: str, h5py_entity: T, *, guard: Guard | None = None) -> None:
        super().__init__(path)
        self._h5py_entity = h5py_entity
        self._guard = guard

    def attributes(self, attr_keys: Sequence[str] | None = None) -> dict[str, Any]:
        """Attribute values, all or those named in ``attr_keys``."""
        attrs = self._h5py_entity.attrs
        if attr_keys is None:
            return {_text(key): value for key, value in attrs.items()}
        missing = [key for key in attr_keys if not _has_attribute(attrs, key)]
        if missing:
            raise AttributeNotFoundError(
                f"{self.path} has no attribute named {', '.join(map(repr, missing))}"
            )
        return {key: attrs[key] for key in attr_keys}

    def metadata(self, depth: int | None = None) -> ResolvedEntityMetadata:
        """Name, kind and attribute descriptions (sorted by name)."""
        return sorted_dict(  # type: ignore[return-value]
            ("attributes", attributes_metadata(self._h5py_entity.id)),
            *super().metadata().items(),
        )


def _filtered_chunk_nbytes(dataset: h5py.Dataset) -> int:
    """Uncompressed bytes of one chunk if the dataset is compressed, else 0."""
    if not dataset.chunks or dataset.id.get_create_plist().get_nfilters() <= 0:
        return 0
    return math.prod(dataset.chunks) * dataset.dtype.itemsize


def _text(name: str | bytes) -> str:
    """A name as text (h5py gives names that are not UTF-8 as bytes)."""
    return name if isinstance(name, str) else name.decode("utf-8", "replace")


def _has_attribute(attrs: h5py.AttributeManager, key: str) -> bool:
    """Whether an attribute exists; names HDF5 rejects (empty, NUL...) do not."""
    try:
        return bool(key) and key in attrs
    except (KeyError, OSError, RuntimeError, ValueError, TypeError):
        return False


class DatasetContent(ResolvedEntityContent[h5py.Dataset]):
    """A dataset: metadata, data and statistics."""

    kind = "dataset"

    def metadata(self, depth: int | None = None) -> DatasetMetadata:
        """Layout, compression, shape and type, plus attributes."""
        dataset_id = self._h5py_entity.id
        plist = dataset_id.get_create_plist()  # Read once for both chunks and filters.
        chunked = plist.get_layout() == h5py.h5d.CHUNKED
        return {  # Keys in sorted order, as h5grove's sorted_dict gives them.
            "attributes": attributes_metadata(dataset_id),
            "chunks": plist.get_chunk() if chunked else None,
            "filters": filters_of(plist),
            "kind": self.kind,
            "name": self.name,
            "shape": dataset_id.shape,
            "type": cached_type_metadata(dataset_id.get_type()),
        }

    def _select(self, selection: Selection) -> Selected | None:
        """Checked selection, or None for a null dataspace (which accepts no selection)."""
        shape = self._h5py_entity.shape
        if shape is None:
            select(selection, ())  # Any member is too many for a null dataspace.
            return None
        return select(selection, shape)

    def selection_info(
        self, selection: Selection = None, dtype: str | None = "origin", flatten: bool = False
    ) -> SelectionInfo:
        """Shape, dtype and byte size of ``data(selection, flatten, dtype)`` without reading it."""
        dataset = self._h5py_entity
        out_dtype = target_dtype(dataset.dtype, dtype)
        sel = self._select(selection)
        if sel is None:
            return SelectionInfo(None, out_dtype, 0)
        shape = (sel.size,) if flatten and sel.shape else sel.shape
        chunk_nbytes = 0
        if sel.size:
            stored = [dataset]
            if dataset.is_virtual and self._guard is not None:
                stored = storage_datasets(dataset, self._guard)
            chunk_nbytes = max(_filtered_chunk_nbytes(d) for d in stored)
        return SelectionInfo(shape, out_dtype, sel.size * out_dtype.itemsize, chunk_nbytes)

    def data(
        self, selection: Selection = None, flatten: bool = False, dtype: str | None = "origin"
    ) -> Any:
        """Values of the selection (all by default), optionally flattened and made JS-safe."""
        sel = self._select(selection)
        target_dtype(self._h5py_entity.dtype, dtype)  # Refuse a bad dtype before reading.
        self._check_storage()
        result = convert(self._read(sel.index if sel is not None else ()), dtype)
        if flatten and isinstance(result, np.ndarray):
            return np.ravel(result)
        return result

    def iter_blocks(
        self,
        selection: Selection = None,
        dtype: str | None = "origin",
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        *,
        reuse_buffer: bool = False,
    ) -> Iterator[np.ndarray]:
        """Read the selection as consecutive C-ordered blocks of at most ~block_bytes each.

        Concatenating the blocks' bytes gives ``data(selection, dtype=dtype).tobytes()``.
        Blocks are row bands aligned on the chunks (see ``plan_blocks``). With
        ``reuse_buffer``, numeric blocks are read into one buffer allocated once: each block is
        then valid only until the next one is asked for (send or copy it first).
        """
        sel = self._select(selection)
        dataset = self._h5py_entity
        out_dtype = target_dtype(dataset.dtype, dtype)
        self._check_storage()
        if sel is None:
            return
        itemsize = max(dataset.dtype.itemsize, out_dtype.itemsize)
        indexes = plan_blocks(sel, itemsize, block_bytes, dataset.chunks)
        if dataset.dtype.kind not in "iuf" or not sel.shape:
            for index in indexes:
                yield convert(np.asarray(self._read(index)), dtype)
            return
        buffer = np.empty(0, dataset.dtype)
        for index in indexes:
            shape = index_shape(index, dataset.shape)
            size = math.prod(shape)
            if not reuse_buffer or buffer.size < size:
                buffer = np.empty(size, dataset.dtype)
            block = buffer[:size].reshape(shape)
            if size:
                self._read_into(block, index)
            yield convert(block, dtype)

    def data_stats(self, selection: Selection = None) -> Stats:
        """Statistics of the finite values of the selection, computed block by block."""
        sel = self._select(selection)
        dataset = self._h5py_entity
        if sel is None:
            return dict(EMPTY_STATS)  # type: ignore[return-value]
        self._check_storage()
        dtype = dataset.dtype
        if dtype.kind in "iuf" and sel.size * dtype.itemsize > STATS_BLOCK_BYTES:
            return self._stats_in_place(sel)
        blocks = (
            self._read(index)
            for index in plan_blocks(sel, dtype.itemsize, STATS_BLOCK_BYTES, dataset.chunks)
        )
        return blockwise_stats(blocks, dtype)

    def _stats_in_place(self, sel: Selected) -> Stats:
        """Statistics of a multi-block numeric selection read into one reused buffer.

        Chunked datasets are read in whole chunks (see ``plan_chunk_blocks``), others in
        row bands; HDF5 converts to native byte order while reading.
        """
        dataset = self._h5py_entity
        native = dataset.dtype.newbyteorder("=")
        itemsize = native.itemsize
        blocks: Iterator[tuple[Index, tuple[int, ...]]] | None = None
        if dataset.chunks:
            blocks = plan_chunk_blocks(
                sel, itemsize, STATS_BLOCK_BYTES, dataset.chunks, group_bytes=STATS_GROUP_BYTES
            )
        if blocks is None:
            blocks = (
                (index, index_shape(index, dataset.shape))
                for index in plan_blocks(sel, itemsize, STATS_BLOCK_BYTES, dataset.chunks)
            )
        accumulator = StatsAccumulator(dataset.dtype)
        buffer = np.empty(0, native)
        for index, shape in blocks:
            size = math.prod(shape)
            if buffer.size < size:
                buffer = np.empty(size, native)
            block = buffer[:size].reshape(shape)
            self._read_into(block, index)
            accumulator.fold(block)
        return accumulator.result()

    def _check_storage(self) -> None:
        """With a guard, refuse reads of VDS sources / external raw files outside the root."""
        if self._guard is not None:
            check_storage(self._h5py_entity, self._guard)

    def _read(self, index: Index) -> Any:
        """Read through h5py, turning a missing-filter failure into a clear error."""
        try:
            return self._h5py_entity[index]
        except OSError as error:
            raise self._read_error(error) from None

    def _read_into(self, out: np.ndarray, index: Index) -> None:
        """Read ``index`` into the C-contiguous array ``out`` (of the index's shape)."""
        try:
            self._h5py_entity.read_direct(out, index)
        except OSError as error:
            raise self._read_error(error) from None

    def _read_error(self, error: OSError) -> Exception:
        """FilterUnavailableError if a filter is missing, else the error itself."""
        missing = missing_filter_message(self._h5py_entity, error)
        return error if missing is None else FilterUnavailableError(missing)


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
