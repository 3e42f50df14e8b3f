"""Encoders: turn data, metadata or statistics into response bytes and headers.

Same API, bytes and headers as ``h5grove.encoders`` (4.0.0) for every input it encodes.
Differences, all where h5grove crashes (HTTP 500) or returns meaningless bytes:
- ``bin`` of object data (variable-length strings, vlen sequences, compounds holding them)
  raises UnsupportedEncodingError instead of sending raw memory addresses;
  ``bin`` of a null dataspace (``h5py.Empty``) is an empty body, not a pointer;
- ``csv`` of more than 2 dimensions and ``tiff`` of anything but 2 dimensions raise
  UnsupportedEncodingError (h5grove: ValueError/IndexError for csv 3D+/tiff 1D, and a
  multi-page TIFF for 3D+ although documented as 2D only);
- JSON of big-endian arrays (orjson refuses them: 500 in h5grove) is served;
- JSON of bytes that are not UTF-8 (opaque data, binary attributes) decodes them with
  replacement characters instead of failing; an unserialisable value raises
  UnsupportedEncodingError.
Additions: :func:`encode_data` (the answer to a data request: whole, read straight into a
given buffer, or streamed), :func:`encode_parts` (encode() without its copies),
:func:`stream_encode` (bin/npy in bounded memory with a known length), :data:`STREAMABLE`,
:func:`estimated_size`.
"""

from __future__ import annotations

import io
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import orjson

from .errors import QueryArgumentError, TooLargeError, UnsupportedEncodingError
from .typeinfo import is_numeric_data, is_numeric_dtype

if TYPE_CHECKING:
    from .dataset import Allocate

JSON_HEADERS = {"Content-Type": "application/json"}
FORMAT_HEADERS: dict[str, dict[str, str]] = {
    "bin": {"Content-Type": "application/octet-stream"},
    "npy": {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": 'attachment; filename="data.npy"',
    },
    "csv": {"Content-Type": "text/csv", "Content-Disposition": 'attachment; filename="data.csv"'},
    "tiff": {
        "Content-Type": "image/tiff",
        "Content-Disposition": 'attachment; filename="data.tiff"',
    },
}
"""Headers of each binary/file format (Content-Length is added by Response)."""

STREAMABLE = frozenset({"bin", "npy"})
"""Formats :func:`stream_encode` can send block by block."""


def bin_encode(array: np.ndarray) -> bytes:
    """Raw bytes of the array in C order (what ``format=bin`` sends)."""
    return array.tobytes()


def orjson_default(o: Any) -> list[Any] | float | str | None:
    """Convert what orjson cannot serialise itself (NumPy extras, h5py objects, bytes)."""
    if isinstance(o, np.number) and o.dtype.kind == "f" and o.itemsize > 8:
        return float(o)  # long double: precision is lost, as in h5grove
    if isinstance(o, numbers.Complex):
        return [o.real, o.imag]
    if isinstance(o, (np.generic, np.ndarray)):
        return o.tolist()  # type: ignore[no-any-return]
    if isinstance(o, h5py.Empty):
        return None
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    if isinstance(o, (h5py.RegionReference, h5py.Reference)):
        return str(o)
    raise TypeError


def orjson_encode(content: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """JSON bytes of ``content`` (NumPy arrays serialised natively by orjson)."""
    default = default or orjson_default
    try:
        return orjson.dumps(content, default=default, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:
        pass
    try:  # orjson refuses non-native byte order (h5grove: 500); retry with native arrays.
        return orjson.dumps(_native(content), default=default, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as error:
        raise UnsupportedEncodingError(f"Cannot encode this content in JSON: {error}") from None


def _native(content: Any) -> Any:
    """Copy of ``content`` whose NumPy arrays are in native byte order."""
    if isinstance(content, np.ndarray):
        return content.astype(content.dtype.newbyteorder("="), copy=False)
    if isinstance(content, dict):
        return {key: _native(value) for key, value in content.items()}
    if isinstance(content, (list, tuple)):
        return [_native(value) for value in content]
    return content


def csv_encode(data: np.ndarray) -> bytes:
    """CSV text of a 1D or 2D array (NumPy's savetxt format)."""
    with io.BytesIO() as buffer:
        np.savetxt(buffer, data, delimiter=",")
        return buffer.getvalue()


def npy_header(shape: tuple[int, ...], dtype: np.dtype, fortran_order: bool = False) -> bytes:
    """The NPY header ``np.save`` writes for such an array (format 1.0, or 2.0 if needed)."""
    if dtype.metadata and dtype.fields is None:
        dtype = np.dtype(dtype.str)  # h5py's enum/string metadata is not saved (NumPy warns).
    fields: dict[str, Any] = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": fortran_order,
        "shape": shape,
    }
    with io.BytesIO() as buffer:
        try:
            np.lib.format.write_array_header_1_0(buffer, fields)
        except ValueError:
            buffer.seek(0)
            buffer.truncate()
            np.lib.format.write_array_header_2_0(buffer, fields)
        return buffer.getvalue()


def npy_encode(data: np.ndarray) -> bytes:
    """NPY file bytes of an array: header then the buffer, without intermediate copies."""
    if data.dtype.hasobject:
        with io.BytesIO() as buffer:  # Pickled objects: let NumPy do it.
            np.save(buffer, data)
            return buffer.getvalue()
    fortran = bool(data.flags.f_contiguous and not data.flags.c_contiguous)
    body = data.T if fortran else np.ascontiguousarray(data)
    return b"".join((npy_header(data.shape, data.dtype, fortran), _buffer(body)))


def tiff_encode(data: np.ndarray) -> bytes:
    """Grey-scale TIFF bytes of a 2D array."""
    with io.BytesIO() as buffer:
        import tifffile  # only here: its import costs a worker process's start-up 10 ms

        tifffile.imwrite(buffer, data, photometric="minisblack")
        return buffer.getvalue()


def _buffer(array: np.ndarray) -> memoryview:
    """Zero-copy byte view of a C-contiguous array (0-d arrays included)."""
    if not array.size:
        return memoryview(b"")
    return memoryview(array.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


class Response:
    """Encoded bytes and their headers (Content-Length included)."""

    content: bytes
    """Encoded content as bytes."""
    headers: dict[str, str]
    """Associated headers."""

    def __init__(self, content: bytes, headers: dict[str, str]) -> None:
        self.content = content
        self.headers = {**headers, "Content-Length": str(len(content))}


def _check_format(array: np.ndarray, encoding: str) -> None:
    """Refuse a format that cannot represent this array (before any encoding work)."""
    if encoding == "bin":
        if array.dtype.hasobject and not _is_empty_marker(array):
            raise UnsupportedEncodingError(
                "Unsupported encoding bin for variable-length or object data; use json"
            )
        return
    if not is_numeric_data(array):
        raise QueryArgumentError(f"Unsupported encoding {encoding} for non-numeric content")
    if encoding == "npy":
        return
    if array.ndim == 0:
        raise QueryArgumentError(f"Unsupported encoding {encoding} for empty and scalar datasets")
    if encoding == "csv" and array.ndim > 2:
        raise UnsupportedEncodingError(
            f"Unsupported encoding csv for {array.ndim}D data: select 1 or 2 dimensions"
        )
    if encoding == "tiff" and array.ndim != 2:
        raise UnsupportedEncodingError(
            f"Unsupported encoding tiff for {array.ndim}D data: select 2 dimensions"
        )


def _is_empty_marker(array: np.ndarray) -> bool:
    """True for ``np.asarray(h5py.Empty(...))``: the data of a null dataspace."""
    return array.ndim == 0 and isinstance(array[()], h5py.Empty)


ENCODERS: dict[str, Callable[[np.ndarray], bytes]] = {
    "bin": bin_encode,
    "npy": npy_encode,
    "csv": csv_encode,
    "tiff": tiff_encode,
}


def encode(content: Any, encoding: str | None = "json") -> Response:
    """Encode content as ``json`` (default), ``bin``, ``csv``, ``npy`` or ``tiff``.

    :raises QueryArgumentError: unknown encoding, or one that cannot represent the content
    """
    if encoding in ("json", None):
        return Response(orjson_encode(content), headers=JSON_HEADERS)
    array = np.asarray(content)
    encoder = ENCODERS.get(encoding)
    if encoder is None:
        if encoding != "bin" and not is_numeric_data(array):
            raise QueryArgumentError(f"Unsupported encoding {encoding} for non-numeric content")
        raise QueryArgumentError(f"Unsupported encoding {encoding}")
    _check_format(array, encoding)
    if encoding == "bin" and _is_empty_marker(array):
        return Response(b"", headers=FORMAT_HEADERS["bin"])
    return Response(encoder(array), headers=FORMAT_HEADERS[encoding])


Body = bytes | memoryview
"""A piece of an answer: bytes, or a byte view of an array (sent without a copy)."""


@dataclass
class StreamResponse:
    """Headers (with Content-Length), total length and the body as buffers: a list when the
    answer is whole in memory, a lazy iterator when it is read block by block."""

    headers: dict[str, str]
    length: int
    chunks: Iterator[Body] | list[Body]


ENCODINGS = (None, "json", "bin", "csv", "npy", "tiff")
"""Values of ``format`` the encoders know (None means json)."""

JSON_WHOLE_ITEMS = 1024 * 1024
"""Arrays up to this many values are encoded in one orjson call: ~30-45 ms of GIL for float64
(orjson takes ~40 ns a value), within the event loop's 50 ms budget (a 1e6-value line)."""

JSON_BLOCK_ITEMS = 256 * 1024
"""Values per orjson call for bigger arrays: ~10 ms of GIL at a time. Measured with 4e6
float64 and 2 clients: /api/status p99 40 ms with these blocks, 125 ms with 1M-value ones."""


def encode_parts(content: Any, encoding: str | None = "json") -> StreamResponse:
    """:func:`encode` as consecutive parts: the same bytes, joined, without its copies.

    An array in ``bin``/``npy`` is sent as a view of its own memory; a big array in JSON is
    encoded in row blocks of JSON_BLOCK_ITEMS values (row blocks of a C-contiguous array give
    the same bytes as the whole), so no single call holds the GIL for long.
    """
    if encoding in ("json", None):
        parts = _json_parts(content)
    elif encoding in STREAMABLE and _viewable(content, encoding):
        head = npy_header(content.shape, content.dtype) if encoding == "npy" else b""
        parts = [head, _buffer(content)] if head else [_buffer(content)]
    else:
        parts = None
    if parts is None:
        response = encode(content, encoding)
        return StreamResponse(response.headers, len(response.content), [response.content])
    headers = JSON_HEADERS if encoding in ("json", None) else FORMAT_HEADERS[str(encoding)]
    length = sum(map(len, parts))
    return StreamResponse({**headers, "Content-Length": str(length)}, length, parts)


def _json_parts(data: Any) -> list[Body] | None:
    """JSON of a big C-contiguous array in row blocks (None: encode it whole)."""
    big = isinstance(data, np.ndarray) and data.ndim >= 1 and data.size > JSON_WHOLE_ITEMS
    if not big or not data.flags.c_contiguous or data.shape[0] < 2:
        return None
    rows = max(1, JSON_BLOCK_ITEMS * data.shape[0] // data.size)
    parts: list[Body] = [b"["]
    for first in range(0, data.shape[0], rows):
        if first:
            parts.append(b",")
        parts.append(memoryview(orjson_encode(data[first : first + rows]))[1:-1])
    parts.append(b"]")
    return parts


def _viewable(data: Any, encoding: str) -> bool:
    """Whether bin/npy of `data` is its memory as it is (no encoding work, no copy)."""
    return (
        isinstance(data, np.ndarray)
        and bool(data.size)
        and data.flags.c_contiguous
        and not data.dtype.hasobject
        and (encoding != "npy" or is_numeric_dtype(data.dtype))
    )


def encode_data(
    content: Any,
    selection: Any = None,
    dtype: str | None = "origin",
    encoding: str | None = "json",
    *,
    flatten: bool = False,
    max_bytes: int,
    block_bytes: int,
    allocate: Allocate | None = None,
    part: tuple[int, int] | None = None,
) -> StreamResponse:
    """The answer to a data request on ``content`` (a DatasetContent), sized before reading.

    ``bin``/``npy`` answers over ``block_bytes`` (or ``max_bytes``) are streamed: ``chunks`` is
    then a lazy iterator of blocks (see :func:`stream_encode`). Other answers over
    ``max_bytes`` raise TooLargeError. Numeric ``bin``/``npy`` answers are read straight into
    one buffer from ``allocate`` (shared memory, in a worker process): no copy between HDF5
    and the socket. Everything else is :func:`encode_parts` of ``content.data(...)``, or, for
    band ``part`` of a JSON answer (see :class:`Bands`), :func:`json_band`.
    """
    if encoding not in ENCODINGS:
        raise QueryArgumentError(f"Unsupported encoding {encoding}")
    info = content.selection_info(selection, dtype, flatten)
    items = info.nbytes // info.dtype.itemsize if info.dtype.itemsize else 0
    size = estimated_size(info.nbytes, items, encoding)
    if encoding in STREAMABLE and size > min(block_bytes, max_bytes):
        return stream_encode(
            content,
            selection,
            dtype,
            encoding,
            block_bytes,
            flatten=flatten,
            reuse_buffer=True,
            allocate=allocate,
        )
    if size > max_bytes:
        raise TooLargeError(
            f"The answer would take about {size} bytes as {encoding or 'json'}, over this "
            f"server's limit of {max_bytes} bytes: use a selection to ask for part of the "
            "dataset (or format=bin or npy)"
        )
    if encoding in STREAMABLE and _readable_in_place(info):
        return _read_whole(content, info, selection, dtype, str(encoding), allocate)
    data = content.data(selection, flatten, dtype)
    if part is not None and encoding in ("json", None):
        parts = json_band(data, part)
        length = sum(len(p) for p in parts)
        return StreamResponse({**JSON_HEADERS, "Content-Length": str(length)}, length, parts)
    return encode_parts(data, encoding)


SPLIT_MIN_BYTES = 1024 * 1024
"""Smallest bin/npy answer read in bands by several workers: below, the extra messages cost
more than the parallel decompression saves..."""

SPLIT_MIN_FAST_BYTES = 8 * 1024 * 1024
"""... and when every filter decompresses at gigabytes per second (FAST_FILTERS): measured
on a 4 MiB Blosc/LZ4 window, two workers took 2.8 ms where one took 2.5 ms."""

FAST_FILTERS = frozenset({2, 3, 5, 6, 32001, 32004, 32008, 32026})
"""HDF5 filter ids that decode at GB/s: shuffle, fletcher32, nbit, scale-offset, Blosc, LZ4,
Bitshuffle, Blosc2 (deflate, szip, LZF, Zstd, bzip2... are an order of magnitude slower)."""

SPLIT_MIN_ITEMS = 256 * 1024
"""Smallest JSON answer (values) encoded in bands by several workers."""


@dataclass
class Bands:
    """A data answer read (and encoded) in bands, each by its own worker, and put together:
    ``head`` (the npy header), then the bands' bodies in order. The bands' own queries use
    ``selections``, ``encoding`` and ``flatten``, and their number in ``part``: JSON bands
    bring their own brackets and commas (see :func:`json_band`)."""

    selections: list[str]
    encoding: str
    flatten: bool
    head: bytes
    headers: dict[str, str]
    """Headers of the whole answer, but Content-Length."""

    def assemble(self, bodies: list[Body]) -> StreamResponse:
        """The whole answer from the bands' bodies, in order (views: nothing is copied)."""
        parts: list[Body] = [self.head, *bodies] if self.head else list(bodies)
        length = sum(len(part) for part in parts)
        return StreamResponse({**self.headers, "Content-Length": str(length)}, length, parts)


def json_band(data: Any, part: tuple[int, int]) -> list[Body]:
    """JSON of band `part` = (number, count) of an answer split along its first axis: its
    values without their brackets, after "[" (the first band) or "," (the others), before
    "]" (the last band). Put end to end, the bands are the answer's JSON."""
    number, count = part
    parts = encode_parts(data, "json").chunks
    assert isinstance(parts, list)
    if len(parts) == 1:
        whole = memoryview(parts[0])
        inner: list[Body] = [whole[1 : len(whole) - 1]]
    else:  # ["[", rows..., "]"]
        inner = parts[1:-1]
    return [b"[" if number == 0 else b",", *inner, *([b"]"] if number == count - 1 else [])]


def plan_bands(
    content: Any,
    selection: Any = None,
    dtype: str | None = "origin",
    encoding: str | None = "json",
    *,
    flatten: bool = False,
    workers: int,
    max_bytes: int,
    block_bytes: int,
) -> Bands | None:
    """How `workers` workers could share a data answer, or None when one should do it all:
    a bin/npy answer of compressed chunks (decompression is the work) or a big numeric JSON
    answer (encoding is), neither streamed nor refused, split along its first axis."""
    if workers < 2 or encoding not in ENCODINGS:
        return None
    info = content.selection_info(selection, dtype, flatten)
    if not info.shape or not is_numeric_dtype(info.dtype) or info.dtype.metadata is not None:
        return None
    items = info.nbytes // info.dtype.itemsize
    size = estimated_size(info.nbytes, items, encoding)
    if size > max_bytes or (encoding in STREAMABLE and size > block_bytes):
        return None  # refused or streamed: decided by encode_data
    if encoding in STREAMABLE:
        fast = content.filter_ids() <= FAST_FILTERS
        if not info.chunk_nbytes or info.nbytes < (
            SPLIT_MIN_FAST_BYTES if fast else SPLIT_MIN_BYTES
        ):
            return None
        _check_binary(info, dtype, encoding)
        head = npy_header(info.shape, info.dtype) if encoding == "npy" else b""
        selections = content.band_selections(selection, workers)
        headers = FORMAT_HEADERS[str(encoding)]
        return Bands(selections, "bin", flatten, head, headers) if selections else None
    if encoding not in ("json", None) or items < SPLIT_MIN_ITEMS:
        return None  # csv and tiff are made whole
    selections = content.band_selections(selection, workers)
    if not selections:
        return None
    return Bands(selections, "json", flatten, b"", JSON_HEADERS)


def _readable_in_place(info: Any) -> bool:
    """Whether HDF5 can read the answer straight into a buffer of the answer's dtype."""
    dt = info.dtype
    return bool(info.shape) and info.nbytes > 0 and dt.kind in "iufc" and dt.metadata is None


def _read_whole(
    content: Any,
    info: Any,
    selection: Any,
    dtype: str | None,
    encoding: str,
    allocate: Allocate | None,
) -> StreamResponse:
    """bin/npy of numeric data read by HDF5 into one buffer, after the npy header if any."""
    _check_binary(info, dtype, encoding)
    head = npy_header(info.shape, info.dtype) if encoding == "npy" else b""
    buffer = (allocate or _allocate)(len(head) + info.nbytes)
    buffer[: len(head)] = np.frombuffer(head, np.uint8)
    content.read_into(buffer[len(head) :].view(info.dtype), selection, dtype)
    headers = {**FORMAT_HEADERS[encoding], "Content-Length": str(buffer.size)}
    return StreamResponse(headers, int(buffer.size), [_buffer(buffer)])


def _allocate(nbytes: int) -> np.ndarray:
    """The default Allocate: NumPy memory."""
    return np.empty(nbytes, np.uint8)


def _check_binary(info: Any, dtype: str | None, encoding: str | None) -> None:
    """Refuse, before reading, bin/npy answers that cannot represent the data."""
    if dtype == "safe" and not is_numeric_dtype(info.dtype):
        raise UnsupportedEncodingError(f"Unsupported dtype {dtype} for non-numeric data")
    if info.dtype.hasobject:
        raise UnsupportedEncodingError(
            f"Unsupported encoding {encoding} for variable-length or object data; use json"
        )
    if encoding == "npy" and not is_numeric_dtype(info.dtype):
        raise QueryArgumentError(f"Unsupported encoding {encoding} for non-numeric content")


def stream_encode(
    content: Any,
    selection: Any = None,
    dtype: str | None = "origin",
    encoding: str | None = "bin",
    block_bytes: int = 64 * 1024 * 1024,
    *,
    flatten: bool = False,
    reuse_buffer: bool = False,
    allocate: Allocate | None = None,
) -> StreamResponse:
    """Encode a dataset selection as ``bin`` or ``npy`` block by block, in bounded memory.

    ``content`` is a DatasetContent. Everything is checked (selection, dtype, format,
    storage guard) before this returns; the body then reads one block at a time
    (<= block_bytes, or up to ``selection.CHUNK_STRETCH`` times more to cover whole chunks).
    The concatenated chunks equal ``encode(content.data(selection, flatten, dtype),
    encoding).content``; use :func:`encode` for other encodings.

    The chunks are bytes-like (bytes or memoryviews of C-contiguous arrays: ``len()`` counts
    bytes, the buffer protocol gives them without a copy). With ``reuse_buffer``, numeric data
    is read into one buffer allocated once (by ``allocate`` if given), so a chunk is valid only
    until the next one is asked for: send it (and wait until it is sent) or copy it before that.
    """
    if encoding not in STREAMABLE:
        raise QueryArgumentError(f"Encoding {encoding} cannot be streamed; use bin or npy")
    info = content.selection_info(selection, dtype, flatten)
    if info.shape is None:  # Null dataspace: same as encode() of h5py.Empty.
        response = encode(content.data(selection, flatten, dtype), encoding)
        return StreamResponse(response.headers, len(response.content), iter([response.content]))
    _check_binary(info, dtype, encoding)
    blocks = content.iter_blocks(
        selection, dtype, block_bytes, reuse_buffer=reuse_buffer, allocate=allocate
    )
    first = next(blocks, None)  # Runs the checks (guard, dtype) before answering.
    header = npy_header(info.shape, info.dtype) if encoding == "npy" else b""
    length = len(header) + info.nbytes

    def chunks() -> Iterator[Body]:
        if header:
            yield header
        if first is not None:
            yield _buffer(np.ascontiguousarray(first))
        for block in blocks:
            yield _buffer(np.ascontiguousarray(block))

    headers = {**FORMAT_HEADERS[encoding], "Content-Length": str(length)}
    return StreamResponse(headers, length, chunks())


JSON_BYTES_PER_ITEM = 26
"""Upper estimate of one number in JSON or CSV text (``-1.234567890123456789e+00,``)."""


def estimated_size(nbytes: int, items: int, encoding: str | None) -> int:
    """Rough size of an encoded answer, to compare with a budget before reading."""
    if encoding in STREAMABLE or encoding == "tiff":
        return nbytes + 1024
    return max(nbytes, items * JSON_BYTES_PER_ITEM) + 1024
