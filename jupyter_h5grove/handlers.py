"""Thin tornado handlers: parse the h5grove query, have the runner do the work, write."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable
from http.client import responses
from typing import Any, ClassVar, TypeVar

import orjson
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.log import log_request
from jupyter_server.prometheus.log_functions import prometheus_log_method
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.web import GZipContentEncoding

from .encoders import Body
from .errors import QueryArgumentError, http_status
from .identity import Logins
from .runners import Blocks, Runner, Whole
from .service import Query

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


def _quiet_success_log(handler: APIHandler) -> bool:
    """Whether the server logs requests with Jupyter's log function and no handler of its
    logger (or of the loggers it propagates to) prints debug records."""
    function = handler.settings.get("log_function")
    if not (isinstance(function, functools.partial) and function.func is log_request):
        return False
    logger: logging.Logger | None = handler.log
    while logger is not None:
        if any(h.level <= logging.DEBUG for h in logger.handlers):
            return False
        if not logger.propagate:
            return True
        logger = logger.parent
    return True


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header takes gzip: named, or covered by ``*``, with a
    quality above zero (RFC 9110, 12.5.3)."""
    qualities: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        coding, _, parameters = item.partition(";")
        quality = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        qualities[coding.strip().lower()] = quality
    return qualities.get("gzip", qualities.get("x-gzip", qualities.get("*", 0.0))) > 0


def entity_tags(if_none_match: str | None) -> tuple[str, ...]:
    """The entity tags of an If-None-Match header (ours never hold a comma)."""
    return tuple(tag.strip() for tag in (if_none_match or "").split(",") if tag.strip())


class H5GroveHandler(APIHandler):
    """Base of every endpoint: authentication, JSON errors without tracebacks; ETags are set
    by the service, never computed from bodies."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, runner: Runner, logins: Logins) -> None:
        """Receive the app's runner of HDF5 work (worker processes or threads) and its memory
        of recent logins."""
        self.runner = runner
        self.logins = logins

    async def prepare(self) -> None:  # type: ignore[override]
        """Jupyter's checks; its identity check answered from memory for credentials it
        accepted in the last seconds (see identity.py)."""
        recalled = self.logins.recall(self)
        await super().prepare()
        if not recalled:
            self.logins.remember(self)
        # Answers are compressed by the workers (service.py); tornado's compress_response
        # would compress again, on the event loop, under the same ETag.
        self._transforms = [t for t in self._transforms if not isinstance(t, GZipContentEncoding)]

    def compute_etag(self) -> str | None:
        """No ETag from the body: hashing every (possibly huge) body costs more than it saves;
        the service tags answers by what they were read from (tags.py)."""
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Answer {"message": ...} only; the details of unexpected errors stay in the log."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = responses.get(status_code, "Unknown HTTP Error")
        if isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        self.finish(orjson.dumps({"message": message}))

    def _log(self) -> None:
        """Jupyter's access log, without the line of a success that no handler would print.

        Jupyter logs successes at debug level with its app logger set to DEBUG, so every
        answer builds (and drops) a log record: 10% of a small request's time. When the
        server's log function is Jupyter's own and nothing would print the line, only its
        request metrics are recorded; anything else goes to the log function as usual."""
        if self.get_status() < 300 and _quiet_success_log(self):
            if getattr(self.serverapp, "record_http_request_metrics", False):
                prometheus_log_method(self)
            return
        super()._log()

    async def work(self, awaitable: Awaitable[T]) -> T:
        """Wait for HDF5 work done elsewhere, translating its errors to HTTP."""
        try:
            return await awaitable
        except Exception as error:
            http_error = to_http_error(error)
            if http_error.status_code == 500:
                self.log.error("jupyter_h5grove | %s failed", self.request.uri, exc_info=True)
            elif http_error.status_code > 500:
                self.log.warning("jupyter_h5grove | %s: %s", self.request.uri, error)
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
        headers = self.request.headers
        return Query(
            endpoint=self.endpoint,
            file=self.get_query_argument("file"),
            path=self.get_query_argument("path", None, strip=False),
            resolve_links=self.get_query_argument("resolve_links", None),
            **{name: self.argument(name) for name in ENDPOINT_ARGUMENTS[self.endpoint]},
            coding="gzip" if accepts_gzip(headers.get("Accept-Encoding")) else None,
            if_none_match=entity_tags(headers.get("If-None-Match")),
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
        """Have the request's HDF5 work done in one call, then write what it produced."""
        result = await self.work(self.runner.run(self.query()))
        if isinstance(result, Whole):
            try:
                await self.write_whole(result)
            finally:
                result.release()
        else:
            await self.write_blocks(result)

    async def write_whole(self, answer: Whole) -> None:
        """Send an answer built in memory: small ones in one write, big ones part by part; a
        304 with its headers only."""
        content_type = self.set_headers(answer.headers)
        if answer.status == 304:
            self.set_status(304)
            self.finish()
            return
        if sum(map(len, answer.parts)) <= SMALL_REPLY_BYTES:
            self.finish(b"".join(answer.parts), set_content_type=content_type)
            return
        try:
            await self.flush()  # the headers
            for part in answer.parts:
                await self.write_body(part)
        except StreamClosedError:
            self.log.info("jupyter_h5grove | client left during %s", self.request.path)
            return
        self.finish(set_content_type=content_type)

    async def write_blocks(self, blocks: Blocks) -> None:
        """Send a big binary answer block by block, each block read when the last is sent."""
        content_type = self.set_headers(blocks.headers)
        try:
            await self.flush()  # the headers
            while (block := await self.work(blocks.next_block())) is not None:
                await self.write_body(block)
                del block
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
            await blocks.close()
        self.finish(set_content_type=content_type)

    async def write_body(self, part: Body) -> None:
        """Send one part of the body once the headers are sent, and wait until it is sent.

        The connection takes bytes and byte views as they are (RequestHandler.write would
        copy them, and the first flush would copy the body again next to the headers); the
        connection still counts the bytes against Content-Length. An output transform that
        an application adds (prepare() drops tornado's gzip one) must see the body, so then it
        goes through RequestHandler.write.
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
