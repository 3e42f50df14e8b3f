"""Selections: parse ``"0:10:5, 2, 3:"``, check them against a shape, plan block-wise reads.

h5grove passes the parsed selection straight to h5py, which raises ValueError, IndexError or
TypeError (HTTP 500) for a zero step, a negative step, an index out of range, too many members
or garbage. Here every such selection raises :class:`SelectionError` (a QueryArgumentError)
before anything is read, and the shape and byte size of the answer are known in advance.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import SelectionError
from .models import Selection

CHUNK_STRETCH = 4
"""A block may grow up to this many times ``block_bytes`` to cover whole chunks."""

MAX_STEP = 2**63 - 1
"""Largest slice step HDF5 accepts (a signed 64-bit integer)."""

Index = tuple[Any, ...]
"""What h5py's ``dataset[...]`` accepts: a tuple of ints and slices."""


def parse_slice(slice_str: str) -> tuple[slice | int, ...]:
    """Parse a NumPy-like selection string: ``'1, 2:5'`` -> ``(1, slice(2, 5))``."""
    return tuple(parse_slice_member(member) for member in slice_str.split(","))


def parse_slice_member(slice_member: str) -> slice | int:
    """Parse one member (``'5'``, ``'2:5'``, ``'::2'``) the way h5grove does."""
    params = slice_member.split(":")
    if len(params) == 1:
        return _to_int(slice_member, slice_member)
    if len(params) == 2:
        # h5grove gives an empty start of a two-part slice as 0 (same result for h5py).
        start, stop = params
        return slice(_to_int(start, slice_member) if start.strip() else 0, _opt(stop, slice_member))
    if len(params) == 3:
        start, stop, step = params
        return slice(_opt(start, slice_member), _opt(stop, slice_member), _opt(step, slice_member))
    raise SelectionError(f"{slice_member!r} is not a valid slice")


def _opt(text: str, member: str) -> int | None:
    """An optional slice bound: empty means None."""
    return _to_int(text, member) if text.strip() else None


def _to_int(text: str, member: str) -> int:
    """An integer bound, or a SelectionError that quotes the member."""
    try:
        return int(text)
    except ValueError:
        raise SelectionError(
            f"{member.strip()!r} is not an integer or a start:stop:step slice"
        ) from None


@dataclass(frozen=True)
class Dim:
    """What a selection takes from one dataset axis: ``count`` items from ``start`` by ``step``."""

    start: int
    step: int
    count: int
    keep: bool
    """False for an integer index: the axis is dropped from the answer."""

    def slice_of(self, first: int, stop: int) -> slice:
        """Dataset slice for the answer's items ``first:stop`` along this axis."""
        if stop <= first:  # Empty: a stop below 0 would count from the end in h5py.
            return slice(self.start, self.start, 1)
        return slice(
            self.start + first * self.step, self.start + (stop - 1) * self.step + 1, self.step
        )


@dataclass(frozen=True)
class Selected:
    """A selection checked against a dataset's shape."""

    index: Index
    """The index given to h5py, exactly as h5grove gives it."""
    dims: tuple[Dim, ...]
    shape: tuple[int, ...]
    """Shape of the answer (integer-indexed axes dropped)."""

    @property
    def size(self) -> int:
        """Number of items selected."""
        return math.prod(self.shape)


def as_index(selection: Selection) -> Index:
    """Turn any accepted selection into a tuple of ints and slices (not yet checked)."""
    if selection is None:
        return ()
    if isinstance(selection, str):
        return parse_slice(selection)
    if isinstance(selection, tuple):
        return selection
    return (selection,)


def select(selection: Selection, shape: tuple[int, ...]) -> Selected:
    """Check a selection against ``shape`` (h5py's rules) and compute the answer's shape."""
    index = as_index(selection)
    if len(index) > len(shape):
        raise SelectionError(
            f"Selection {_show(selection)} has {len(index)} members: "
            f"too many for a {len(shape)}D dataset of shape {tuple(shape)}"
        )
    dims = tuple(
        _dim(index[axis] if axis < len(index) else slice(None), length, axis)
        for axis, length in enumerate(shape)
    )
    out = tuple(dim.count for dim in dims if dim.keep)
    return Selected(index, dims, out)


def _dim(member: Any, length: int, axis: int) -> Dim:
    """Check one member against one axis, as h5py does, but raising SelectionError."""
    if isinstance(member, slice):
        bounds = (member.start, member.stop, member.step)
        if not all(b is None or _is_int(b) for b in bounds):
            raise SelectionError(f"Slice {member} on axis {axis} has non-integer bounds")
        if member.step is not None and operator.index(member.step) < 1:
            raise SelectionError(f"Slice step must be >= 1 (got {member.step}) on axis {axis}")
        if member.step is not None and operator.index(member.step) > MAX_STEP:
            # HDF5 takes steps as 64-bit integers (h5py: OverflowError, a 500 in h5grove).
            raise SelectionError(f"Slice step {member.step} on axis {axis} is too large")
        start, stop, step = member.indices(length)
        count = 0 if stop <= start else 1 + (stop - start - 1) // step
        return Dim(start, step, count, True)
    if _is_int(member):
        value = operator.index(member)
        if not -length <= value < length:
            raise SelectionError(
                f"Index {value} is out of range for axis {axis} of length {length}"
            )
        return Dim(value % length, 1, 1, False)
    raise SelectionError(f"Selection member {member!r} on axis {axis} is not an int or a slice")


def _is_int(value: Any) -> bool:
    """True for ints (Python or NumPy), False for bools and everything else."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _show(selection: Selection) -> str:
    """Selection as the user wrote it, for messages."""
    return repr(selection) if not isinstance(selection, str) else f"'{selection}'"


def plan_blocks(
    sel: Selected, itemsize: int, block_bytes: int, chunks: tuple[int, ...] | None = None
) -> Iterator[Index]:
    """Indexes of consecutive blocks (C order) that together read ``sel``, each <= block_bytes.

    Blocks split the first answer axis whose rows fit the budget, aligned on chunk boundaries
    when the step is 1, so each chunk is decompressed once. A single item larger than the
    budget still makes one block.
    """
    kept = [axis for axis, dim in enumerate(sel.dims) if dim.keep]
    if sel.size == 0 or not kept or sel.size * itemsize <= block_bytes:
        yield _full_index(sel)
        return
    counts = [sel.dims[axis].count for axis in kept]
    split = len(kept) - 1
    for position in range(len(kept)):
        if itemsize * math.prod(counts[position + 1 :]) <= block_bytes:
            split = position
            break
    row_bytes = itemsize * math.prod(counts[split + 1 :])
    axis = kept[split]
    chunk = chunks[axis] if chunks else None
    rows = max(1, block_bytes // row_bytes)
    if chunk and rows < chunk and chunk * row_bytes <= CHUNK_STRETCH * block_bytes:
        rows = chunk  # A block short of a chunk would decompress that chunk several times.
    ranges = list(_ranges(sel.dims[axis], rows, chunk))
    outer = kept[:split]
    for combo in itertools.product(*(range(sel.dims[a].count) for a in outer)):
        fixed = dict(zip(outer, combo, strict=True))
        for first, stop in ranges:
            members: list[Any] = []
            for a, dim in enumerate(sel.dims):
                if not dim.keep:
                    members.append(dim.start)
                elif a in fixed:
                    members.append(dim.start + fixed[a] * dim.step)
                elif a == axis:
                    members.append(dim.slice_of(first, stop))
                else:
                    members.append(dim.slice_of(0, dim.count))
            yield tuple(members)


def plan_chunk_blocks(
    sel: Selected,
    itemsize: int,
    block_bytes: int,
    chunks: tuple[int, ...],
    *,
    group_bytes: int | None = None,
) -> Iterator[tuple[Index, tuple[int, ...]]] | None:
    """Blocks on the chunk grid covering ``sel``, each with its shape, in no useful order.

    For folds that ignore order (statistics): every block is whole chunks (clipped to the
    selection) in every axis, so HDF5 reads each chunk once, whole, straight into the buffer.
    Small chunks are grouped (last axes first) up to ``group_bytes`` (default
    ``block_bytes``); a block is one chunk at least. Integer-indexed axes keep a length of 1.
    None when the selection has a step > 1 or a chunk exceeds ``CHUNK_STRETCH *
    block_bytes``: then use :func:`plan_blocks`.
    """
    dims = sel.dims
    if len(chunks) != len(dims) or any(dim.step != 1 and dim.count > 1 for dim in dims):
        return None
    if math.prod(chunks) * itemsize > CHUNK_STRETCH * block_bytes or sel.size == 0:
        return None
    spans = [(dim.start, dim.start + dim.count) for dim in dims]
    grids = [range(lo // c, (hi - 1) // c + 1) for (lo, hi), c in zip(spans, chunks, strict=True)]
    per_block = [1] * len(dims)  # Chunks per block along each axis.
    budget = max(1, min(block_bytes, group_bytes or block_bytes) // itemsize)
    for axis in reversed(range(len(dims))):
        others = math.prod(
            min(per_block[a] * chunks[a], dims[a].count) for a in range(len(dims)) if a != axis
        )
        fit = max(1, budget // (others * chunks[axis]))
        per_block[axis] = min(len(grids[axis]), fit)
        if per_block[axis] < len(grids[axis]):
            break
    axes = [
        [(max(lo, g * c), min(hi, (g + k) * c)) for g in range(grid.start, grid.stop, k)]
        for (lo, hi), c, grid, k in zip(spans, chunks, grids, per_block, strict=True)
    ]
    return (
        (tuple(slice(a, b) for a, b in block), tuple(b - a for a, b in block))
        for block in itertools.product(*axes)
    )


def band_selections(sel: Selected, chunks: tuple[int, ...] | None, bands: int) -> list[str]:
    """Selection strings of up to `bands` consecutive bands of the answer along its first
    axis, which read `sel` when their answers are put end to end; bands hold whole chunks (as
    evenly as possible) when the step is 1, so no chunk is decompressed twice. Empty when
    the answer cannot be split in two."""
    kept = [axis for axis, dim in enumerate(sel.dims) if dim.keep]
    if not kept or bands < 2:
        return []
    axis = kept[0]
    dim = sel.dims[axis]
    chunk = chunks[axis] if chunks and dim.step == 1 else 1
    first = dim.start // chunk
    count = (dim.start + dim.count - 1) // chunk - first + 1 if dim.count else 0
    bands = min(bands, count)
    if bands < 2:
        return []
    edges = [max(0, (first + round(i * count / bands)) * chunk - dim.start) for i in range(bands)]
    edges.append(dim.count)
    return [
        ",".join(
            _member(d.slice_of(a, b) if i == axis else d.slice_of(0, d.count))
            if d.keep
            else str(d.start)
            for i, d in enumerate(sel.dims)
        )
        for a, b in itertools.pairwise(edges)
    ]


def _member(part: slice) -> str:
    """A slice as a selection member."""
    return f"{part.start}:{part.stop}:{part.step}"


def index_shape(index: Index, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape h5py gives ``dataset[index]`` for an index of ints and slices (from a plan)."""
    return tuple(
        len(range(*member.indices(length)))
        for member, length in zip(index, shape, strict=False)
        if isinstance(member, slice)
    ) + tuple(shape[len(index) :])


def _full_index(sel: Selected) -> Index:
    """One index reading the whole selection with the answer's shape."""
    return tuple(dim.slice_of(0, dim.count) if dim.keep else dim.start for dim in sel.dims)


def _ranges(dim: Dim, rows: int, chunk: int | None) -> Iterator[tuple[int, int]]:
    """Ranges of answer items along one axis, ``rows`` at a time, chunk-aligned if possible."""
    first = 0
    if chunk and dim.step == 1 and rows >= chunk:
        rows = rows // chunk * chunk
        edge = min(dim.count, (dim.start // rows + 1) * rows - dim.start)
        yield 0, edge
        first = edge
    while first < dim.count:
        stop = min(dim.count, first + rows)
        yield first, stop
        first = stop


@dataclass(frozen=True)
class SelectionInfo:
    """What a read would return, known without reading: for budgets and Content-Length."""

    shape: tuple[int, ...] | None
    """Shape of the answer (None for a null dataspace)."""
    dtype: np.dtype
    """dtype of the answer, after the ``dtype`` conversion."""
    nbytes: int
    """In-memory size of the answer (object dtypes count their pointers only)."""
    chunk_nbytes: int = 0
    """Bytes HDF5 decompresses at once to read any part of the dataset: the uncompressed size
    of one chunk of a filtered (compressed) dataset -- or, with a guard, of any source dataset
    of a virtual one -- else 0. A server refuses reads whose chunk exceeds its budget: even a
    4-value selection decompresses the whole chunk."""
