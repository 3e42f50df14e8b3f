"""Remote stores: the size and version of an object, and byte ranges of it, read concurrently.

Two kinds, behind one small interface (:class:`Store`):

- :class:`FsspecStore`: object stores through fsspec (s3fs for ``s3://``; gcsfs, adlfs for
  ``gs://``, ``az://``, ``abfs://`` when installed), with the storage options of
  ``H5GroveApp.remote_roots``.
- :class:`HttpStore`: ``http(s)://`` servers that answer byte ranges, with aiohttp. A redirect
  is followed only to a URL under a configured prefix (never elsewhere), which is why fsspec's
  HTTP filesystem (which follows every redirect) is not used.

Failures become the domain errors of ``errors``: a missing object NotFoundError (404), a
refusal ForbiddenError (403), a store that fails or cannot be reached StoreError (502), says
it is unavailable StoreUnavailableError (503), or does not answer in time StoreTimeoutError
(504); each message names the store. The optional packages are imported only when a store of
their kind is first used (``pip install "jupyter_h5grove[remote]"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

from .errors import (
    ForbiddenError,
    NotFoundError,
    StoreError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from .remote import RemoteRoots, Url, parse

T = TypeVar("T")

MAX_REDIRECTS = 5
"""Redirects followed for one request (each to a URL under a configured prefix)."""

VERSION_KEYS = ("VersionId", "ETag", "etag", "generation", "md5Hash", "LastModified", "mtime")
"""Where fsspec backends put what changes when an object is rewritten."""


MAX_CONNECTIONS = 32
"""Connections to an S3 store at once (botocore's default, 10, makes the 16 chunks of a
1024x1024 window of 256x256 chunks come in two rounds)."""


class ObjectInfo(NamedTuple):
    """An object as a store describes it now: its size and what changes when it is replaced
    (ETag, version id, last modification)."""

    size: int
    version: str


class Store(Protocol):
    """What the remote files need of a store."""

    name: str
    """How messages name the store (scheme and host or bucket)."""

    def stat(self, url: Url) -> ObjectInfo:
        """The object's size and version now (one request)."""
        ...

    def read(self, url: Url, ranges: list[tuple[int, int]], info: ObjectInfo) -> list[bytes]:
        """The bytes [start, stop) of each range, fetched concurrently."""
        ...


class FsspecStore:
    """An object store through fsspec."""

    def __init__(self, scheme: str, options: Mapping[str, Any], timeout: float) -> None:
        """A filesystem of its own (no fsspec instance cache: options differ per prefix)."""
        import fsspec

        self.scheme = scheme
        self.name = f"{scheme}://"
        options = dict(options)
        if scheme == "s3":  # botocore's timeouts, unless the configuration sets them
            config = {
                "connect_timeout": timeout,
                "read_timeout": timeout,
                "retries": {"max_attempts": 2},
                "max_pool_connections": MAX_CONNECTIONS,
            }
            options["config_kwargs"] = {**config, **options.get("config_kwargs", {})}
        self.fs = fsspec.filesystem(
            scheme, skip_instance_cache=True, use_listings_cache=False, **options
        )

    def _path(self, url: Url) -> str:
        return f"{url.host}{url.path}"

    def stat(self, url: Url) -> ObjectInfo:
        with _translated(f"{self.scheme}://{url.host}", url):
            info = self.fs.info(self._path(url))
        if info.get("type") == "directory":
            raise NotFoundError(f"File not found: {url} is a folder")
        version = next((str(info[k]) for k in VERSION_KEYS if info.get(k)), "")
        return ObjectInfo(int(info["size"]), version)

    def read(self, url: Url, ranges: list[tuple[int, int]], info: ObjectInfo) -> list[bytes]:
        path = self._path(url)
        with _translated(f"{self.scheme}://{url.host}", url):
            data = self.fs.cat_ranges(
                [path] * len(ranges), [a for a, _ in ranges], [b for _, b in ranges]
            )
        return [bytes(d) for d in data]


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for aiohttp, in a thread of its own (started once)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="h5grove-http", daemon=True).start()
            _LOOP = loop
        return _LOOP


def _run(coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run a coroutine on the aiohttp loop and wait for it (from a worker's main thread)."""
    return asyncio.run_coroutine_threadsafe(coroutine, _loop()).result(timeout)


class HttpStore:
    """An HTTP server answering byte ranges (``Accept-Ranges: bytes``)."""

    def __init__(
        self, host: str, options: Mapping[str, Any], roots: RemoteRoots, timeout: float
    ) -> None:
        """`options`: ``headers`` sent with every request (e.g. authorization) and
        ``client_kwargs`` for aiohttp's ClientSession, as fsspec's HTTP filesystem takes them."""
        self.name = host
        self.headers = dict(options.get("headers", {}))
        self.client_kwargs = dict(options.get("client_kwargs", {}))
        self.roots = roots
        self.timeout = timeout
        self._session: Any = None

    async def _client(self) -> Any:
        import aiohttp

        if self._session is None:
            kwargs = {"timeout": aiohttp.ClientTimeout(total=self.timeout), **self.client_kwargs}
            self._session = aiohttp.ClientSession(**kwargs)
        return self._session

    async def _request(
        self, method: str, url: Url, headers: dict[str, str]
    ) -> tuple[int, Any, bytes]:
        """(status, headers, body) of a request, following redirects under the prefixes."""
        session = await self._client()
        for _ in range(MAX_REDIRECTS + 1):
            async with session.request(
                method, str(url), headers={**self.headers, **headers}, allow_redirects=False
            ) as response:
                if response.status not in (301, 302, 303, 307, 308):
                    body = await response.read() if method == "GET" else b""
                    return response.status, response.headers, body
                location = response.headers.get("Location", "")
            url = self._redirect(url, location)
        raise StoreError(f"{self.name} redirected {MAX_REDIRECTS} times in a row")

    def _redirect(self, url: Url, location: str) -> Url:
        """Where a redirect leads, if it is under a configured prefix (else refused)."""
        import urllib.parse

        target = urllib.parse.urljoin(str(url), location)
        try:
            next_url = parse(target)
        except (ForbiddenError, ValueError):
            next_url = None
        if next_url is None or self.roots.find(next_url) is None:
            raise StoreError(
                f"{self.name} redirected to a URL outside H5GroveApp.remote_roots: not followed"
            )
        return next_url

    def _check(self, url: Url, status: int) -> None:
        """Raise the domain error of a failed request."""
        if status in (404, 410):
            raise NotFoundError(f"File not found: {url}")
        if status in (401, 403):
            raise ForbiddenError(f"{self.name} refused to serve {url} (HTTP {status})")
        if status in (429, 503):
            raise StoreUnavailableError(f"{self.name} is unavailable for now (HTTP {status})")
        if status >= 400:
            raise StoreError(f"{self.name} failed to serve {url} (HTTP {status})")

    def stat(self, url: Url) -> ObjectInfo:
        async def head() -> ObjectInfo:
            status, headers, _ = await self._request("HEAD", url, {"Accept-Encoding": "identity"})
            if status == 405:  # no HEAD: ask for the first byte instead
                status, headers, _ = await self._request("GET", url, {"Range": "bytes=0-0"})
            self._check(url, status)
            if "Content-Range" in headers:
                size = int(headers["Content-Range"].rsplit("/", 1)[1])
            elif "Content-Length" in headers:
                size = int(headers["Content-Length"])
            else:
                raise StoreError(f"{self.name} does not tell the size of {url}")
            version = headers.get("ETag") or headers.get("Last-Modified") or ""
            return ObjectInfo(size, version)

        return self._wait(head())

    def read(self, url: Url, ranges: list[tuple[int, int]], info: ObjectInfo) -> list[bytes]:
        condition = {"If-Match": info.version} if info.version.startswith('"') else {}

        async def one(start: int, stop: int) -> bytes:
            headers = {"Range": f"bytes={start}-{stop - 1}", **condition}
            status, _, body = await self._request("GET", url, headers)
            if status == 412:
                raise StoreUnavailableError(f"{url} changed while it was read: ask again")
            self._check(url, status)
            if status == 200 and start == 0 and len(body) == info.size:
                return body[:stop]  # the server sent the whole (small) object
            if status != 206 or len(body) != stop - start:
                raise StoreError(f"{self.name} does not answer byte ranges of {url}")
            return body

        async def every() -> list[bytes]:
            return list(await asyncio.gather(*(one(a, b) for a, b in ranges)))

        return self._wait(every())

    def _wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a request on the loop thread, translating network failures."""
        with _translated(self.name):
            result = _run(coroutine, self.timeout + 5)
        return result


@contextlib.contextmanager
def _translated(store: str, url: Url | None = None) -> Iterator[None]:
    """Turn the exceptions of fsspec, botocore and aiohttp into domain errors naming `store`
    (and the object, `url`, when it is missing)."""
    try:
        yield
    except (NotFoundError, ForbiddenError, StoreError):
        raise
    except FileNotFoundError:
        raise NotFoundError(f"File not found: {url or store}") from None
    except Exception as error:
        raise _domain_error(error, store) from None


def _domain_error(error: BaseException, store: str) -> Exception:
    """The domain error for a store's failure."""
    name = type(error).__name__
    text = str(error)
    if isinstance(error, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return ForbiddenError(f"{store} refused access")
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)) or "Timeout" in name:
        return StoreTimeoutError(f"{store} did not answer in time")
    if "SlowDown" in text or "ServiceUnavailable" in text or "503" in text:
        return StoreUnavailableError(f"{store} is unavailable for now")
    return StoreError(f"{store} failed or cannot be reached ({name})")


STORES: dict[str, type] = {"http": HttpStore, "https": HttpStore}
"""Schemes served by a store of our own; any other goes through fsspec."""


def make_store(url: Url, options: Mapping[str, Any], roots: RemoteRoots, timeout: float) -> Store:
    """The store for a URL under a configured prefix."""
    if url.scheme in STORES:
        return HttpStore(f"{url.scheme}://{url.host}", options, roots, timeout)
    return FsspecStore(url.scheme, options, timeout)
