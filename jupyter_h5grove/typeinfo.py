"""HDF5 type metadata, dtype strings, filters and the ``dtype=safe`` conversion.

Same output as h5grove 4.0.0 for every type h5py can map to NumPy. Differences:
- a type h5py cannot map to NumPy (e.g. an exotic float layout) gets ``dtype`` from its raw
  size (``"|V<size>"``) instead of raising TypeError;
- ``dtype=safe`` of non-numeric data raises UnsupportedEncodingError (a QueryArgumentError,
  as in h5grove).
"""

from __future__ import annotations

import copy
from typing import Any

import h5py
import numpy as np

from .errors import QueryArgumentError, UnsupportedEncodingError
from .models import AttributeMetadata, StrDtype, TypeMetadata


def stringify_dtype(dtype: np.dtype) -> StrDtype:
    """NumPy dtype string, or a nested dict of them for compound types."""
    if dtype.fields is None:
        return dtype.str
    return {name: stringify_dtype(field[0]) for name, field in dtype.fields.items()}


def _dtype_of(type_id: h5py.h5t.TypeID) -> StrDtype:
    """dtype string of an HDF5 type, falling back to raw bytes when h5py cannot map it."""
    try:
        dtype = type_id.dtype
    except (TypeError, ValueError):
        return f"|V{type_id.get_size()}"
    return stringify_dtype(dtype)


def get_type_metadata(type_id: h5py.h5t.TypeID) -> TypeMetadata:
    """Describe an HDF5 type: class code, dtype, size and the class-specific details."""
    meta: dict[str, Any] = {
        "class": type_id.get_class(),
        "dtype": _dtype_of(type_id),
        "size": type_id.get_size(),
    }
    # Order matters: h5py's TypeEnumID is a TypeCompositeID, not a TypeIntegerID.
    if isinstance(type_id, h5py.h5t.TypeIntegerID):
        meta["order"] = type_id.get_order()
        meta["sign"] = type_id.get_sign()
    elif isinstance(type_id, (h5py.h5t.TypeFloatID, h5py.h5t.TypeBitfieldID)):
        meta["order"] = type_id.get_order()
    elif isinstance(type_id, h5py.h5t.TypeStringID):
        meta["cset"] = type_id.get_cset()
        meta["strpad"] = type_id.get_strpad()
        meta["vlen"] = type_id.is_variable_str()
    elif isinstance(type_id, h5py.h5t.TypeOpaqueID):
        meta["tag"] = type_id.get_tag()
    elif isinstance(type_id, h5py.h5t.TypeCompoundID):
        meta["members"] = [
            {"name": type_id.get_member_name(i).decode("utf-8"), **_member(type_id, i)}
            for i in range(type_id.get_nmembers())
        ]
    elif isinstance(type_id, h5py.h5t.TypeEnumID):
        meta["members"] = {
            type_id.get_member_name(i).decode("utf-8"): type_id.get_member_value(i)
            for i in range(type_id.get_nmembers())
        }
        meta["base"] = get_type_metadata(type_id.get_super())
    elif isinstance(type_id, h5py.h5t.TypeVlenID):
        meta["base"] = get_type_metadata(type_id.get_super())
    elif isinstance(type_id, h5py.h5t.TypeArrayID):
        meta["dims"] = type_id.get_array_dims()
        meta["base"] = get_type_metadata(type_id.get_super())
    return meta  # type: ignore[return-value]


def _member(type_id: h5py.h5t.TypeCompoundID, index: int) -> dict[str, Any]:
    """Type metadata of one compound member."""
    return dict(get_type_metadata(type_id.get_member_type(index)))


def cached_type_metadata(type_id: h5py.h5t.TypeID) -> TypeMetadata:
    """get_type_metadata, memoised on the type's binary encoding (types repeat a lot)."""
    try:
        key = type_id.encode()
    except (TypeError, ValueError, RuntimeError):
        return get_type_metadata(type_id)
    meta = _TYPE_CACHE.get(key)
    if meta is None:
        if len(_TYPE_CACHE) > 1024:
            _TYPE_CACHE.clear()
        meta = _TYPE_CACHE[key] = get_type_metadata(type_id)
    return copy.deepcopy(meta) if meta.get("members") or "base" in meta else dict(meta)  # type: ignore[return-value]


_TYPE_CACHE: dict[bytes, TypeMetadata] = {}


def attributes_metadata(object_id: h5py.h5o.ObjectID) -> list[AttributeMetadata]:
    """Name, shape and type of every attribute of an object, sorted by name (no values read)."""
    described = []
    for index in range(h5py.h5a.get_num_attrs(object_id)):
        attr_id = h5py.h5a.open(object_id, index=index)
        name = attr_id.name.decode("utf-8", "replace")
        described.append((name, attr_id))
    described.sort(key=lambda entry: entry[0])
    return [
        {"name": name, "shape": attr_id.shape, "type": cached_type_metadata(attr_id.get_type())}
        for name, attr_id in described
    ]


def attr_metadata(entity_attrs: h5py.AttributeManager, attr_name: str) -> AttributeMetadata:
    """Name, shape and type of one attribute, without reading its value."""
    attr_id = entity_attrs.get_id(attr_name)
    return {
        "name": attr_name,
        "shape": attr_id.shape,
        "type": get_type_metadata(attr_id.get_type()),
    }


def get_filter_info(filter_info: tuple[int, int, tuple[int, ...], str]) -> dict[str, int | str]:
    """``{id, name}`` of one filter from ``PropDCID.get_filter``."""
    filter_id, _flags, _values, name = filter_info
    return {"id": filter_id, "name": name}


def get_filters(dataset: h5py.Dataset) -> list[dict[str, int | str]] | None:
    """The dataset's filter pipeline, or None when it has none."""
    return filters_of(dataset.id.get_create_plist())


def filters_of(plist: h5py.h5p.PropDCID) -> list[dict[str, int | str]] | None:
    """Filter pipeline of a dataset creation property list, or None when empty."""
    count = plist.get_nfilters()
    if count <= 0:
        return None
    return [get_filter_info(plist.get_filter(i)) for i in range(count)]


def missing_filter_message(dataset: h5py.Dataset, error: OSError) -> str | None:
    """Message naming the filter that failed, if the read failed for want of a filter."""
    text = str(error).lower()
    if "filter" not in text and "plugin" not in text:
        return None
    plist = dataset.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        filter_id, _flags, _values, name = plist.get_filter(i)
        if not h5py.h5z.filter_avail(filter_id):
            label = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
            return (
                f"Cannot read {dataset.name}: HDF5 filter {filter_id} ({label or 'unnamed'}) "
                "is not available; install or upgrade hdf5plugin on the server"
            )
    return None


def is_numeric_data(data: Any) -> bool:
    """True for NumPy numbers and booleans (arrays or scalars): what bin/npy/csv/tiff accept."""
    if not isinstance(data, (np.ndarray, np.number, np.bool_)):
        return False
    return bool(np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.bool_))


def is_numeric_dtype(dtype: np.dtype) -> bool:
    """Same test as :func:`is_numeric_data` on a dtype (no data needed)."""
    return bool(np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_))


def safe_dtype(dtype: np.dtype) -> np.dtype:
    """dtype with a JavaScript TypedArray: float16->float32, float128->float64, little-endian."""
    if dtype.kind == "f" and dtype.itemsize < 4:
        return np.dtype("<f4")
    if dtype.kind == "f" and dtype.itemsize > 8:
        return np.dtype("<f8")
    if dtype.byteorder in ("=", ">"):
        return dtype.newbyteorder("<")
    return dtype


def target_dtype(dtype: np.dtype, conversion: str | None) -> np.dtype:
    """dtype of the answer for a ``dtype`` query value, checked before anything is read.

    ``safe`` of non-numeric data is refused by :func:`convert` once read: an element of a
    vlen dataset (object dtype) may well be numeric.
    """
    if conversion in ("origin", None):
        return dtype
    if conversion == "safe":
        return safe_dtype(dtype) if is_numeric_dtype(dtype) else dtype
    raise QueryArgumentError(f"Unsupported dtype {conversion}")


def convert(data: Any, dtype: str | None = "origin") -> Any:
    """Apply the ``dtype`` query value (``origin`` or ``safe``) to read data."""
    if dtype in ("origin", None):
        return data
    if dtype == "safe":
        if not is_numeric_data(data):
            raise UnsupportedEncodingError(f"Unsupported dtype {dtype} for non-numeric data")
        return data.astype(safe_dtype(data.dtype), order="C", copy=False)
    raise QueryArgumentError(f"Unsupported dtype {dtype}")
