"""h5grove-compatible helpers, importable under the names ``h5grove.utils`` uses.

The logic lives in ``errors``, ``selection``, ``typeinfo`` and ``stats``; this module adds the
small helpers of h5grove's utils (path joining, query-argument parsing) and re-exports the rest.
"""

from __future__ import annotations

from typing import Any

from .errors import LinkError, NotFoundError, PathError, QueryArgumentError
from .models import LinkResolution
from .selection import parse_slice, parse_slice_member, select
from .stats import get_array_stats
from .typeinfo import (
    attr_metadata,
    convert,
    get_filter_info,
    get_filters,
    get_type_metadata,
    is_numeric_data,
    stringify_dtype,
)

__all__ = [
    "LinkError",
    "NotFoundError",
    "PathError",
    "QueryArgumentError",
    "attr_metadata",
    "convert",
    "get_array_stats",
    "get_dataset_slice",
    "get_filter_info",
    "get_filters",
    "get_type_metadata",
    "hdf_path_join",
    "is_numeric_data",
    "parse_bool_arg",
    "parse_link_resolution_arg",
    "parse_slice",
    "parse_slice_member",
    "sorted_dict",
    "stringify_dtype",
]


def sorted_dict(*args: tuple[str, Any]) -> dict[str, Any]:
    """Dict of the given items sorted by key (the wire format sorts metadata keys)."""
    return dict(sorted(args, key=lambda entry: entry[0]))


def hdf_path_join(prefix: str | None, suffix: str) -> str:
    """Join an HDF5 group path and a child name."""
    if prefix is None or prefix == "/":
        return f"/{suffix}"
    return f"{prefix.rstrip('/')}/{suffix}"


def parse_bool_arg(query_arg: str | None, fallback: bool) -> bool:
    """Query flag: anything but ``false`` (any case) is true; absent gives ``fallback``."""
    if query_arg is None:
        return fallback
    return query_arg.lower() != "false"


def parse_link_resolution_arg(
    raw_query_arg: str | None, fallback: LinkResolution
) -> LinkResolution:
    """``resolve_links`` query value; ``true``/``false`` are accepted for ``all``/``none``."""
    if raw_query_arg is None:
        return fallback
    value = raw_query_arg.lower()
    if value in ("true", LinkResolution.ALL.value):
        return LinkResolution.ALL
    if value in ("false", LinkResolution.NONE.value):
        return LinkResolution.NONE
    if value == LinkResolution.ONLY_VALID.value:
        return LinkResolution.ONLY_VALID
    accepted = ", ".join(mode.value for mode in LinkResolution)
    raise QueryArgumentError(
        f"{raw_query_arg} is not a valid value for link resolution. Accepted values are: {accepted}"
    )


def get_dataset_slice(dataset: Any, selection: Any) -> Any:
    """Read a selection of a dataset after checking it (SelectionError when invalid)."""
    shape = dataset.shape
    checked = select(selection, () if shape is None else shape)
    return dataset[checked.index]
