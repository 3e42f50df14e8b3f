"""Thin tornado handlers: parse the h5grove query, run the request in a worker thread, write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from http.client import responses
from typing import Any, ClassVar, TypeVar

import orjson
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from .errors import QueryArgumentError, http_status
from .service import Body, Query, Reply, Service, Stream

T = TypeVar("T")

SMALL_REPLY_BYTES = 64 * 1024
"""Answers up to this size are joined and sent with their headers in one write."""

AUTH_RESOURCE = "contents"
"""Reading HDF5 data is reading file contents: the same permission as Jupyter's contents API."""


def parse_bool_arg(value: str | None, fallback: bool) -> bool:
    """h5grove's boolean rule: absent -> fallback, anything but 'false' (any case) -> True."""
    if value is None:
        return fallback
    return value.lower() != "false"


def to_http_error(error: BaseException) -> web.HTTPError:
    """The one translation of errors to HTTP: domain errors by table, others 500 (logged)."""
    if isinstance(error, web.HTTPError):
        return error
    status = http_status(error)
    if status is None:
        return web.HTTPError(500, "Internal server error: see the Jupyter server log")
    return web.HTTPError(status, "%s", str(error) or type(error).__name__)


class H5GroveHandler(APIHandler):
    """Base of every endpoint: authentication, JSON errors without tracebacks, no ETag."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, service: Service, executor: Executor) -> None:
        """Receive the app's request service and worker threads."""
        self.service = service
        self.executor = executor

    def compute_etag(self) -> str | None:
        """No ETag: hashing every (possibly huge) body costs more than it saves."""
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Answer {"message": ...} only; the details of unexpected errors stay in the log."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = responses.get(status_code, "Unknown HTTP Error")
        if isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        self.finish(orjson.dumps({"message": message}))

    async def in_worker(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking HDF5 work in a worker thread, translating its errors to HTTP."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, function, *args)
        except Exception as error:
            http_error = to_http_error(error)
            if http_error.status_code >= 500:
                self.log.error("jupyter_h5grove | %s failed", self.request.uri, exc_info=True)
            raise http_error from None


ENDPOINT_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "meta": (),
    "attr": ("attr_keys",),
    "data": ("selection", "dtype", "format", "flatten"),
    "stats": ("selection",),
    "paths": (),
}
"""Arguments each endpoint reads besides file, path and resolve_links (which all read, as
h5grove's handlers do)."""

ROOT_CONTENT_TYPE = "text/html; charset=UTF-8"
"""What h5grove's tornado root handler answers (tornado's default for text)."""


class RootHandler(H5GroveHandler):
    """`/` tells a client the server is up."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Answer 'ok', like h5grove."""
        self.finish("ok", set_content_type=ROOT_CONTENT_TYPE)

    @web.authenticated
    @authorized
    async def head(self) -> None:
        """Answer 200 without a body."""
        self.finish(set_content_type=ROOT_CONTENT_TYPE)


class FileHandler(H5GroveHandler):
    """An endpoint about an entity of a file: parse the query, run it, write the answer."""

    endpoint: ClassVar[str] = ""

    def query(self) -> Query:
        """The h5grove query arguments this endpoint uses, with h5grove's names, defaults and
        stripping. Arguments it does not use are never read (nor decoded): like h5grove, a
        stray `format=%FF` on `meta` does not matter."""
        raw_file = self.request.query_arguments.get("file")
        if raw_file and b"\x00" in raw_file[-1]:
            # tornado would silently turn NUL into a space: refuse instead.
            raise to_http_error(QueryArgumentError("file must not contain NUL characters"))
        return Query(
            endpoint=self.endpoint,
            file=self.get_query_argument("file"),
            path=self.get_query_argument("path", None, strip=False),
            resolve_links=self.get_query_argument("resolve_links", None),
            **{name: self.argument(name) for name in ENDPOINT_ARGUMENTS[self.endpoint]},
        )

    def argument(self, name: str) -> Any:
        """One endpoint-specific argument, parsed as h5grove parses it."""
        if name == "attr_keys":
            return tuple(self.get_query_arguments(name, strip=False))
        value = self.get_query_argument(name, None)
        return parse_bool_arg(value, fallback=False) if name == "flatten" else value

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Do all HDF5 work for the request in one worker call, then write what it produced."""
        result = await self.in_worker(self.service.run, self.query())
        if isinstance(result, Reply):
            await self.write_reply(result)
        else:
            await self.write_stream(result)

    async def write_reply(self, reply: Reply) -> None:
        """Send an answer built in memory: small ones in one write, big ones part by part."""
        content_type = self.set_headers(reply.headers)
        if sum(map(len, reply.parts)) <= SMALL_REPLY_BYTES:
            self.finish(b"".join(reply.parts), set_content_type=content_type)
            return
        try:
            await self.flush()  # the headers
            for part in reply.parts:
                await self.write_body(part)
        except StreamClosedError:
            self.log.info("jupyter_h5grove | client left during %s", self.request.path)
            return
        self.finish(set_content_type=content_type)

    async def write_stream(self, stream: Stream) -> None:
        """Send a big binary answer block by block, each block read in a worker thread."""
        content_type = self.set_headers(stream.headers)
        try:
            await self.flush()  # the headers
            while (block := await self.in_worker(stream.next_block)) is not None:
                await self.write_body(block)
        except StreamClosedError:
            self.log.info("jupyter_h5grove | client left during %s", self.request.path)
            return
        except web.HTTPError as error:
            # Headers are gone: all we can do is log and cut the connection.
            self.log.warning("jupyter_h5grove | streaming stopped: %s", error.log_message)
            if self.request.connection is not None:
                self.request.connection.close()  # type: ignore[attr-defined]
            return
        finally:
            await asyncio.get_running_loop().run_in_executor(self.executor, stream.close)
        self.finish(set_content_type=content_type)

    async def write_body(self, part: Body) -> None:
        """Send one part of the body once the headers are sent, and wait until it is sent.

        The connection takes bytes and byte views as they are (RequestHandler.write would
        copy them, and the first flush would copy the body again next to the headers); the
        connection still counts the bytes against Content-Length. Output transforms (gzip,
        if configured) must see the body, so then it goes through RequestHandler.write.
        """
        if self._transforms:
            self.write(bytes(part))
            await self.flush()
            return
        assert self.request.connection is not None
        await self.request.connection.write(part)  # type: ignore[arg-type]

    def set_headers(self, headers: dict[str, str]) -> str:
        """Copy the encoder's headers onto the response; return the content type."""
        for key, value in headers.items():
            self.set_header(key, value)
        return headers.get("Content-Type", "application/octet-stream")


class MetadataHandler(FileHandler):
    """`/meta`: metadata of an entity."""

    endpoint = "meta"


class AttributeHandler(FileHandler):
    """`/attr`: attribute values of an entity."""

    endpoint = "attr"


class DataHandler(FileHandler):
    """`/data`: (a selection of) a dataset's values in json, bin, csv, npy or tiff."""

    endpoint = "data"


class StatisticsHandler(FileHandler):
    """`/stats`: statistics of (a selection of) a dataset."""

    endpoint = "stats"


class PathsHandler(FileHandler):
    """`/paths`: paths of every entity below a group."""

    endpoint = "paths"
