"""Domain errors of the core (and of the worker layer) and the one table mapping them to HTTP
status codes.

The first four classes have the names and bases of ``h5grove.utils``' errors so code written
for h5grove catches ours. Every other error subclasses one of them or ``H5GroveError`` so a
server translates any of them with a single lookup in :data:`HTTP_STATUS` (see
:func:`http_status`).
"""

from __future__ import annotations


class H5GroveError(Exception):
    """Base of the errors that are ours only (h5grove has no common base)."""


class NotFoundError(Exception):
    """The file, entity or link target does not exist (h5grove-compatible)."""


class PathError(NotFoundError):
    """The path is not a valid path in the file (h5grove-compatible)."""


class LinkError(NotFoundError):
    """A link cannot be resolved with ``resolve_links=all`` (h5grove-compatible)."""


class QueryArgumentError(ValueError):
    """A request argument is invalid (h5grove-compatible)."""


class SelectionError(QueryArgumentError):
    """The selection is malformed or does not fit the dataset's shape."""


class EntityKindError(QueryArgumentError):
    """The operation does not apply to this kind of entity (e.g. data of a group)."""


class AttributeNotFoundError(QueryArgumentError):
    """An ``attr_keys`` entry names no attribute of the entity."""


class UnsupportedEncodingError(QueryArgumentError):
    """The format or dtype cannot represent this data (e.g. tiff of 1D, bin of vlen strings)."""


class NonNumericDataError(QueryArgumentError):
    """The operation needs numbers (e.g. stats or dtype=safe of strings or compounds)."""


class ForbiddenError(H5GroveError):
    """The file or an entity's storage lies outside the served root (or is unreadable)."""


class TooLargeError(H5GroveError):
    """The answer would exceed the server's byte budget: a smaller selection is needed."""


class FilterUnavailableError(H5GroveError):
    """The dataset uses an HDF5 compression filter that is not installed."""


class InvalidFileError(H5GroveError):
    """The file is not HDF5, is truncated or corrupt, or is a directory."""


class StoreError(H5GroveError):
    """A remote store (S3, HTTP server...) failed or cannot be reached."""


class StoreUnavailableError(StoreError):
    """A remote store says it is overloaded or unavailable for now (retry later)."""


class StoreTimeoutError(StoreError):
    """A remote store did not answer in time."""


class WorkerDiedError(H5GroveError):
    """The worker process running the request died (killed, out of memory, crashed)."""


class WorkTimeoutError(H5GroveError):
    """The request's HDF5 work took longer than the server allows; its worker was stopped."""


HTTP_STATUS: dict[type[BaseException], int] = {
    NotFoundError: 404,
    QueryArgumentError: 422,
    ForbiddenError: 403,
    TooLargeError: 413,
    FilterUnavailableError: 422,
    InvalidFileError: 422,
    StoreError: 502,
    StoreUnavailableError: 503,
    StoreTimeoutError: 504,
    WorkerDiedError: 502,
    WorkTimeoutError: 504,
}
"""Status code of each error class; subclasses inherit their nearest listed base's code."""


def http_status(error: BaseException) -> int | None:
    """Status code for an error from :data:`HTTP_STATUS` (nearest base wins), None if unknown."""
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return None
