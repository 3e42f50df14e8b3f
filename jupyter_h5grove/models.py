"""Wire-format models: what metadata, attributes and statistics look like once encoded.

Same names and shapes as ``h5grove.models`` (4.0.0), so viewers written for h5grove read ours.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypedDict

import h5py

H5pyEntity = h5py.Dataset | h5py.Datatype | h5py.ExternalLink | h5py.Group | h5py.SoftLink

Selection = str | int | slice | tuple[slice | int, ...] | None
"""A NumPy-like selection: ``"1, 2:5"``, an int, a slice, a tuple of those, or None (all)."""


class LinkResolution(str, Enum):
    """Which soft and external links ``create_content`` resolves into their targets."""

    NONE = "none"
    """Never resolve: links are returned as links."""
    ONLY_VALID = "only_valid"
    """Resolve valid links; broken ones are returned as links."""
    ALL = "all"
    """Resolve every link; a broken one raises LinkError."""


StrDtype = str | dict[str, Any]
"""NumPy dtype string, or a dict of them (nested) for compound types."""

# Functional syntax because "class" is a keyword.
TypeMetadata = TypedDict(
    "TypeMetadata",
    {
        "name": str,
        "class": int,
        "dtype": StrDtype,
        "size": int,
        "order": int,
        "sign": int,
        "cset": int,
        "strpad": int,
        "vlen": bool,
        "tag": str,
        "dims": tuple[int, ...],
        "members": list[Any] | dict[str, int],
        "base": Any,
    },
    total=False,
)


class EntityMetadata(TypedDict):
    """Keys every entity has."""

    name: str
    kind: str


class ExternalLinkMetadata(EntityMetadata):
    """An unresolved external link."""

    target_file: str
    target_path: str


class SoftLinkMetadata(EntityMetadata):
    """An unresolved soft link."""

    target_path: str


class AttributeMetadata(TypedDict):
    """One attribute's description (not its value)."""

    name: str
    shape: Any
    type: TypeMetadata


class ResolvedEntityMetadata(EntityMetadata):
    """An entity with attributes (group, dataset, committed datatype)."""

    attributes: list[AttributeMetadata]


class GroupMetadata(ResolvedEntityMetadata, total=False):
    """A group; ``children`` only when asked with depth > 0."""

    children: list[EntityMetadata]


class DatasetMetadata(ResolvedEntityMetadata):
    """A dataset: layout, compression, shape and type."""

    chunks: Any
    filters: Any
    shape: Any
    type: TypeMetadata


class DatatypeMetadata(ResolvedEntityMetadata):
    """A committed (named) datatype."""

    type: TypeMetadata


class Stats(TypedDict):
    """Statistics over the finite values of a selection (all None when it is empty)."""

    strict_positive_min: int | float | None
    positive_min: int | float | None
    min: int | float | None
    max: int | float | None
    mean: int | float | None
    std: int | float | None
