"""Content objects every entity kind shares: the base, unresolved links, entities with attributes.

See ``content`` for the public API and the differences from h5grove.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import h5py

from .errors import AttributeNotFoundError, EntityKindError, ForbiddenError
from .guard import Guard
from .models import (
    EntityMetadata,
    ExternalLinkMetadata,
    ResolvedEntityMetadata,
    Selection,
    SoftLinkMetadata,
    Stats,
)
from .typeinfo import attributes_metadata
from .utils import sorted_dict


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


def _text(name: str | bytes) -> str:
    """A name as text (h5py gives names that are not UTF-8 as bytes)."""
    return name if isinstance(name, str) else name.decode("utf-8", "replace")


def _has_attribute(attrs: h5py.AttributeManager, key: str) -> bool:
    """Whether an attribute exists; names HDF5 rejects (empty, NUL...) do not."""
    try:
        return bool(key) and key in attrs
    except (KeyError, OSError, RuntimeError, ValueError, TypeError):
        return False
