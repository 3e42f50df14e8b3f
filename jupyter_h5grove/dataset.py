"""Dataset content: metadata, values (whole, or block by block in bounded memory), statistics.

See ``content`` for the public API and the differences from h5grove.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import h5py
import numpy as np

with contextlib.suppress(ImportError):  # Registers hdf5plugin's compression filters.
    import hdf5plugin  # noqa: F401

from .entities import ResolvedEntityContent
from .errors import FilterUnavailableError
from .guard import check_storage, storage_datasets
from .models import DatasetMetadata, Selection, Stats
from .selection import (
    Dim,
    Index,
    Selected,
    SelectionInfo,
    band_selections,
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
    missing_filter_message,
    target_dtype,
)

DEFAULT_BLOCK_BYTES = 64 * 1024 * 1024
"""Upper bound of one block read by :meth:`DatasetContent.iter_blocks` (bytes)."""
STATS_BLOCK_BYTES = 8 * 1024 * 1024
"""Block size for statistics: small, since NumPy makes a few temporaries per block."""
STATS_GROUP_BYTES = 1024 * 1024
"""Chunks are read for statistics in groups of about this size (each chunk read whole)."""


def _filtered_chunk_nbytes(dataset: h5py.Dataset) -> int:
    """Uncompressed bytes of one chunk if the dataset is compressed, else 0."""
    if not dataset.chunks or dataset.id.get_create_plist().get_nfilters() <= 0:
        return 0
    return math.prod(dataset.chunks) * dataset.dtype.itemsize


MAX_PREFETCH_CHUNKS = 4096
"""Most chunks whose byte ranges ``chunk_ranges`` looks up (one index lookup each)."""


def _last(dim: Dim) -> int:
    """Index of the last item a selection takes on an axis."""
    return dim.start + (dim.count - 1) * dim.step


Allocate = Callable[[int], np.ndarray]
"""Where big answers are read: gives a writable uint8 array of n bytes (the default allocates
with NumPy; a worker process gives shared memory, so the answer leaves it without a copy)."""


def _array(size: int, dtype: np.dtype, allocate: Allocate | None) -> np.ndarray:
    """A flat array of `size` items of `dtype`, from `allocate` if given."""
    if allocate is None:
        return np.empty(size, dtype)
    return allocate(size * dtype.itemsize).view(dtype)


def dataset_metadata(dataset_id: h5py.h5d.DatasetID, name: str) -> DatasetMetadata:
    """A dataset's metadata from its low-level id (no h5py.Dataset needed)."""
    plist = dataset_id.get_create_plist()  # Read once for both chunks and filters.
    chunked = plist.get_layout() == h5py.h5d.CHUNKED
    return {  # Keys in sorted order, as h5grove's sorted_dict gives them.
        "attributes": attributes_metadata(dataset_id),
        "chunks": plist.get_chunk() if chunked else None,
        "filters": filters_of(plist),
        "kind": DatasetContent.kind,
        "name": name,
        "shape": dataset_id.shape,
        "type": cached_type_metadata(dataset_id.get_type()),
    }


class DatasetContent(ResolvedEntityContent[h5py.Dataset]):
    """A dataset: metadata, data and statistics."""

    kind = "dataset"

    def metadata(self, depth: int | None = None) -> DatasetMetadata:
        """Layout, compression, shape and type, plus attributes."""
        return dataset_metadata(self._h5py_entity.id, self.name)

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
        allocate: Allocate | None = None,
    ) -> Iterator[np.ndarray]:
        """Read the selection as consecutive C-ordered blocks of at most ~block_bytes each.

        Concatenating the blocks' bytes gives ``data(selection, dtype=dtype).tobytes()``.
        Blocks are row bands aligned on the chunks (see ``plan_blocks``). With
        ``reuse_buffer``, numeric blocks are read into one buffer allocated once (by
        ``allocate``, e.g. in shared memory): each block is then valid only until the next one
        is asked for (send or copy it first).
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
                buffer = _array(size, dataset.dtype, allocate if reuse_buffer else None)
            block = buffer[:size].reshape(shape)
            if size:
                self._read_into(block, index)
            yield convert(block, dtype)

    @property
    def filename(self) -> str:
        """Name (OS path or URL) of the file holding the dataset."""
        return str(self._h5py_entity.file.filename)

    def chunk_ranges(self, selection: Selection = None) -> list[tuple[int, int]]:
        """Byte ranges [start, stop) in the file of the stored chunks the selection touches
        (of a contiguous dataset: the span of its rows), to fetch from slow storage in one
        go before HDF5 reads them one by one. Empty when not worth it or unknown (more than
        MAX_PREFETCH_CHUNKS chunks, compact, virtual or external storage)."""
        sel = self._select(selection)
        dataset = self._h5py_entity
        if sel is None or not sel.size or dataset.is_virtual or dataset.external:
            return []
        dsid = dataset.id
        layout = dsid.get_create_plist().get_layout()
        if layout == h5py.h5d.CONTIGUOUS:
            offset = dsid.get_offset()
            if offset is None:
                return []
            first = np.ravel_multi_index([d.start for d in sel.dims], dataset.shape)
            last = np.ravel_multi_index([_last(d) for d in sel.dims], dataset.shape)
            itemsize = dataset.dtype.itemsize
            return [(offset + int(first) * itemsize, offset + (int(last) + 1) * itemsize)]
        if layout != h5py.h5d.CHUNKED:
            return []
        touched = [
            sorted({(d.start + i * d.step) // c for i in range(d.count)})
            if d.step > c
            else range(d.start // c, _last(d) // c + 1)
            for d, c in zip(sel.dims, dataset.chunks, strict=True)
        ]
        if math.prod(len(t) for t in touched) > MAX_PREFETCH_CHUNKS:
            return []
        ranges = []
        for coords in itertools.product(*touched):
            offset = tuple(c * k for c, k in zip(coords, dataset.chunks, strict=True))
            info = dsid.get_chunk_info_by_coord(offset)
            if info.byte_offset is not None and info.size:
                ranges.append((info.byte_offset, info.byte_offset + info.size))
        return ranges

    def filter_ids(self) -> set[int]:
        """Ids of the HDF5 filters the dataset's chunks go through."""
        plist = self._h5py_entity.id.get_create_plist()
        return {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}

    def band_selections(self, selection: Selection, bands: int) -> list[str]:
        """Selections of up to `bands` bands (whole chunks each) that together read the
        selection in order (see ``selection.band_selections``); empty if it cannot be split."""
        sel = self._select(selection)
        if sel is None:
            return []
        return band_selections(sel, self._h5py_entity.chunks, bands)

    def read_into(
        self, out: np.ndarray, selection: Selection = None, dtype: str | None = "origin"
    ) -> None:
        """Read the selection into ``out``: a C-contiguous array of the dtype and size that
        ``selection_info`` gives (any shape of that size). When the stored type is the answer's,
        HDF5 reads straight into ``out``: no copy, which ``data()`` cannot promise."""
        sel = self._select(selection)
        target_dtype(self._h5py_entity.dtype, dtype)  # Refuse a bad dtype before reading.
        self._check_storage()
        if sel is None or not sel.size:
            return
        shaped = out.reshape(sel.shape)  # a view: h5py wants the selection's shape
        if out.dtype == self._h5py_entity.dtype:
            self._read_into(shaped, sel.index)
        else:
            np.copyto(shaped, convert(self._read(sel.index), dtype))

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
