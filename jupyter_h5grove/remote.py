"""Which remote files may be served: URLs, their normal form, and the configured prefixes.

``file`` may be a URL (``s3://bucket/key``, ``https://host/path``...). It is served only when,
once normalised, it lies under one of the prefixes of ``H5GroveApp.remote_roots``; everything
is decided on the string, before any network access, so a refused URL never reaches a
network. Normal form: scheme and host in lower case, no default port, no user-info, no query
or fragment, no ``.`` or ``..`` segment; ``http(s)`` paths are percent-decoded (as a server
would) before being checked and re-encoded in one canonical way; ``s3://`` keys are taken
literally, as boto3, s3fs and the AWS CLI take them. Nothing here opens a connection.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

from .errors import ForbiddenError, QueryArgumentError

SCHEMES = frozenset({"s3", "gs", "gcs", "az", "abfs", "abfss", "http", "https"})
"""URL schemes whose files may be served (fsspec's object stores and HTTP)."""

WEB_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SAFE = "/!$&'()*+,;=:@-._~"
"""Characters left as they are when an http path is encoded again (RFC 3986 pchar)."""


def is_url(file: str) -> bool:
    """Whether a ``file`` argument is a URL (``scheme://...``) rather than a path."""
    return bool(_URL.match(file))


class Url(NamedTuple):
    """A URL in normal form."""

    scheme: str
    host: str
    """Host (with a port other than the default), or the bucket/container of object stores."""
    path: str
    """The key of an object store, or the decoded path of an http URL; starts with /."""

    def __str__(self) -> str:
        if self.scheme in WEB_SCHEMES:
            return f"{self.scheme}://{self.host}{urllib.parse.quote(self.path, safe=_SAFE)}"
        return f"{self.scheme}://{self.host}{self.path}"

    @property
    def folder(self) -> Url:
        """The URL of the folder holding this one."""
        return self._replace(path=posixpath.dirname(self.path).rstrip("/") + "/")

    def join(self, name: str) -> Url:
        """The URL a relative name (of an HDF5 external link) means from this file's folder;
        ``..`` goes up, as in a path (the caller checks the result against the prefixes)."""
        path = posixpath.normpath(posixpath.join(self.folder.path, name))
        return self._replace(path=path if path.startswith("/") else "/" + path)

    def under(self, prefix: Url) -> bool:
        """Whether this URL is the prefix or lies below it (whole segments only)."""
        if (self.scheme, self.host) != (prefix.scheme, prefix.host):
            return False
        base = prefix.path if prefix.path.endswith("/") else prefix.path + "/"
        return self.path == prefix.path or self.path.startswith(base)


def parse(url: str) -> Url:
    """The normal form of a URL, or QueryArgumentError/ForbiddenError saying why it has none."""
    if not is_url(url):
        raise QueryArgumentError(f"{url!r} is not a URL")
    scheme = url.split(":", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ForbiddenError(f"{scheme}:// files are not served")
    rest = url.split("://", 1)[1]
    if "?" in rest or "#" in rest:
        raise ForbiddenError("URLs with a query or a fragment are not served")
    authority, _, path = rest.partition("/")
    if "@" in authority:
        raise ForbiddenError("URLs with user information are not served")
    if "\\" in url or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ForbiddenError("URLs with backslashes, spaces or control characters are not served")
    host = _host(scheme, authority)
    if scheme in WEB_SCHEMES:
        segments = []
        for segment in path.split("/"):
            try:
                decoded = urllib.parse.unquote(segment, errors="strict")
            except UnicodeDecodeError:
                raise QueryArgumentError("The URL's path is not UTF-8 once decoded") from None
            if "/" in decoded or "\\" in decoded:
                raise ForbiddenError("URLs with encoded slashes are not served")
            segments.append(decoded)
    else:
        segments = path.split("/")
    if any(s in (".", "..") or urllib.parse.unquote(s) in (".", "..") for s in segments):
        raise ForbiddenError("URLs with . or .. segments are not served")
    return Url(scheme, host, "/" + "/".join(segments))


def _host(scheme: str, authority: str) -> str:
    """Host (and a non-default port) in lower case."""
    if not authority:
        raise QueryArgumentError(f"{scheme}:// URL without a host or bucket")
    if scheme not in WEB_SCHEMES:
        return authority.lower()  # bucket or container: lower case, as their rules have it
    try:
        parts = urllib.parse.urlsplit(f"//{authority}")
        port = parts.port
    except ValueError:
        raise QueryArgumentError(f"{authority!r} is not a valid host") from None
    hostname = (parts.hostname or "").lower()
    if not hostname:
        raise QueryArgumentError(f"{authority!r} is not a valid host")
    if ":" in hostname:
        hostname = f"[{hostname}]"  # IPv6
    return hostname if port in (None, DEFAULT_PORTS[scheme]) else f"{hostname}:{port}"


class Root(NamedTuple):
    """One configured prefix and the fsspec storage options of the store behind it."""

    prefix: Url
    options: Mapping[str, Any]


class RemoteRoots:
    """The configured remote prefixes (``H5GroveApp.remote_roots``)."""

    def __init__(self, roots: Mapping[str, Mapping[str, Any]]) -> None:
        """Normalise the prefixes; a prefix that is not a valid URL is a configuration error."""
        self.roots = [Root(parse(prefix), dict(options)) for prefix, options in roots.items()]
        self.roots.sort(key=lambda root: len(root.prefix.path), reverse=True)  # longest first

    def __bool__(self) -> bool:
        return bool(self.roots)

    def find(self, url: Url) -> Root | None:
        """The root serving a normalised URL (the longest prefix matching), if any."""
        return next((root for root in self.roots if url.under(root.prefix)), None)

    def check(self, file: str) -> tuple[Url, Root]:
        """The normal form of a requested URL and its root, or ForbiddenError (403)."""
        if not self.roots:
            raise ForbiddenError("Remote files are not served (H5GroveApp.remote_roots is empty)")
        url = parse(file)
        root = self.find(url)
        if root is None:
            raise ForbiddenError(f"{url} is not under a prefix of H5GroveApp.remote_roots")
        return url, root
