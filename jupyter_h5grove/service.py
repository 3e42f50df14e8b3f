"""One request's whole job: resolve, open, read, encode (in a worker process or thread; no
tornado here)."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Callable, Hashable, Iterator
from contextlib import ExitStack
from typing import Any, NamedTuple

import h5py

from .compression import COMPRESSIBLE, compressible, deflate_piece, gzip_body
from .content import (
    DatasetContent,
    EntityContent,
    GroupContent,
    create_content,
    describe_link_target,
)
from .dataset import Allocate
from .encoders import (
    ENCODINGS,
    Bands,
    Body,
    StreamResponse,
    encode_data,
    encode_parts,
    plan_bands,
)
from .errors import EntityKindError, InvalidFileError, NotFoundError, TooLargeError
from .files import FileCache, current_identity
from .guard import Guard, RootGuard, Target, locate_target
from .linkmemo import Described, LinkMemo
from .models import LinkResolution
from .paths import RootPolicy
from .remote import RemoteRoots, Url, is_url, parse
from .remotefiles import RemoteFiles, RemoteGuard
from .selection import SelectionInfo
from .tags import Dependencies, Tags, etag, matches
from .utils import parse_link_resolution_arg

log = logging.getLogger(__name__)


class Query(NamedTuple):
    """The h5grove query arguments of one request, as received."""

    endpoint: str
    file: str
    path: str | None = None
    resolve_links: str | None = None
    attr_keys: tuple[str, ...] = ()
    selection: str | None = None
    dtype: str | None = None
    format: str | None = None
    flatten: bool = False
    coding: str | None = None
    """Content coding the client accepts for compressible answers ("gzip"), if any."""
    if_none_match: tuple[str, ...] = ()
    """The ETags of the client's copies (If-None-Match)."""
    part: tuple[int, int] | None = None
    """(number, count) of a band of a Scatter (never from a client)."""

    def key(self, file: str) -> tuple[Any, ...]:
        """What the answer depends on besides the files read and the root policy (`file`:
        the normal form of the file argument): the endpoint, the arguments it reads (those it
        does not read are None) and the content coding."""
        return (
            self.endpoint,
            file,
            self.path,
            self.resolve_links,
            self.attr_keys,
            self.selection,
            self.dtype,
            self.format,
            self.flatten,
            self.coding,
        )


class Reply(NamedTuple):
    """An answer built in memory: its body as consecutive parts, and headers (Content-Length);
    a 304 has no body."""

    parts: list[Body]
    headers: dict[str, str]
    status: int = 200


class Stream:
    """A big binary answer: headers (with Content-Length) and blocks read one call at a time."""

    def __init__(self, headers: dict[str, str], blocks: Iterator[Body]) -> None:
        """Hold the blocks; `resources` (the file lease) is handed over by Service.run."""
        self.headers = headers
        self.blocks = blocks
        self.resources = ExitStack()

    def next_block(self) -> Body | None:
        """Read and encode the next block (call in a worker thread); None when done."""
        return next(self.blocks, None)

    def close(self) -> None:
        """Release the file handle, whether or not every block was sent."""
        self.resources.close()


class Limits(NamedTuple):
    """Memory limits of one answer."""

    max_response_bytes: int
    stream_block_bytes: int
    max_chunk_bytes: int = 256 * 1024 * 1024


class Settings(NamedTuple):
    """Everything a Service is built from (picklable: a worker process builds its own)."""

    root: str
    allow_symlinks_outside_root: bool
    file_locking: bool
    open_files_cache_size: int
    link_cache_size: int
    limits: Limits
    remote_roots: dict[str, dict[str, Any]] = {}  # noqa: RUF012 (never mutated)
    """URL prefix -> fsspec storage options (``H5GroveApp.remote_roots``)."""
    store_timeout: float = 30.0
    """Seconds a remote store may take to answer one request."""


def build_service(
    settings: Settings,
    allow_hidden: Callable[[], bool],
    background: Callable[[Callable[[], None]], object] | None = None,
) -> Service:
    """A Service for these settings; `allow_hidden` is asked at each request (it may change
    while the server runs); `background` closes evicted files off the request path."""
    policy = RootPolicy(
        settings.root,
        allow_hidden=allow_hidden,
        allow_symlinks_outside_root=settings.allow_symlinks_outside_root,
    )
    files = FileCache(
        settings.open_files_cache_size, locking=settings.file_locking, background=background
    )
    remote = RemoteFiles(RemoteRoots(settings.remote_roots), settings.store_timeout)
    return Service(policy, files, settings.limits, LinkMemo(settings.link_cache_size), remote)


def check_chunks(content: DatasetContent, info: SelectionInfo, limit: int) -> None:
    """Refuse, before reading, a dataset whose compressed chunks HDF5 would inflate past `limit`.

    A filtered chunk is decompressed whole even to read one value of it, so no selection helps.
    The core measures virtual datasets by their sources' chunks.
    """
    if info.nbytes and info.chunk_nbytes > limit:
        raise TooLargeError(
            f"{content.path} is stored in compressed chunks of {info.chunk_nbytes} bytes, which "
            f"HDF5 must decompress whole, over this server's limit of {limit} bytes "
            "(H5GroveApp.max_chunk_bytes); a selection cannot help: rechunk the file"
        )


class PolicyGuard(RootGuard):
    """The core's RootGuard with paths.py's rule; link targets are leased from the cache."""

    def __init__(
        self, policy: RootPolicy, files: FileCache, resources: ExitStack, memo: LinkMemo
    ) -> None:
        """Leases taken through `resources` end with the request (or its stream)."""
        super().__init__(
            policy.root,
            policy.allow_symlinks_outside_root,
            open_file=self.lease,
            memo=memo,
            locking=files.locking,
        )
        self.policy = policy
        self.files = files
        self.resources = resources

    def policy_key(self) -> bool:
        """Whether hidden files are allowed: the one part of the rule that can change."""
        return self.policy.allow_hidden()

    def allows(self, os_path: str) -> bool:
        """Same rule as for `file` (inside the root, not hidden, ...), and no FIFOs or devices:
        HDF5 opening a VDS source or raw file that is a pipe would block a worker forever."""
        if not self.policy.contains(os_path):
            return False
        try:
            mode = os.stat(os_path).st_mode
        except OSError:
            return True  # missing: HDF5 will not open it either
        return stat.S_ISREG(mode)

    def lease(self, os_path: str) -> h5py.File:
        """An open handle of an allowed file, from the cache, for this request only."""
        shown = os.path.basename(os_path)
        h5file, identity = self.resources.enter_context(self.files.lease(os_path, shown))
        self.dependencies.note(os_path, identity)
        return h5file


class Job(NamedTuple):
    """How a worker runs a request: where big answers go, and how many other workers could
    share the work (the service then answers with a Scatter or a Gather instead): free now,
    or yet to be started (worth it for long work only)."""

    allocate: Allocate | None = None
    helpers: int = 0
    spare: int = 0


class Scatter(NamedTuple):
    """A data answer to be read in bands by several workers: the bands' queries (answered
    whole by any worker), and how their answers are put together."""

    queries: list[Query]
    bands: Bands


class Gather(NamedTuple):
    """Group metadata waiting for the descriptions of link targets no memo knows: any worker
    can make them (``Service.describe``); then ``Service.finish`` answers the request."""

    tasks: list[tuple[str, str, str]]


GATHER_MIN_LINKS = 64
"""Fewest undescribed link targets worth sharing with other workers (each costs ~0.2 ms to
open and describe; a message to a worker ~0.1 ms)."""

Answer = Reply | Stream | Scatter | Gather


class Service:
    """Everything a request needs, shared by all handlers: root policy, open files, limits."""

    def __init__(
        self,
        policy: RootPolicy,
        files: FileCache,
        limits: Limits,
        memo: LinkMemo | None = None,
        remote: RemoteFiles | None = None,
    ) -> None:
        """Keep the collaborators; nothing is opened yet."""
        self.policy = policy
        self.files = files
        self.limits = limits
        self.memo = LinkMemo() if memo is None else memo
        self.tags = Tags()
        self.remote = RemoteFiles(RemoteRoots({}), 0) if remote is None else remote

    def run(
        self, query: Query, allocate: Allocate | None = None, helpers: int = 0, spare: int = 0
    ) -> Answer:
        """Answer one request; every error raised is a domain error from errors.py.

        Big binary answers are read into buffers from ``allocate`` (NumPy's by default).
        With other workers free (``helpers``) or that could be started (``spare``), work worth
        sharing comes back as a Scatter or a Gather instead of the answer. A request whose
        ETag (``if_none_match``) is current is answered 304, if its last answer's files are
        known, without reading HDF5 (see tags.py)."""
        job = Job(allocate, helpers, spare)
        with self._hdf5_errors(query):
            resolve_links = _links(query)  # first, as h5grove: a bad value is a 422 for any file
            target = self._target(query.file)  # refused here, before any file is touched
            key = (*query.key(str(target)), self.policy.allow_hidden())
            tag = self._current_tag(key) if query.if_none_match else None
            if tag is not None and matches(tag, query.if_none_match):
                return _not_modified(tag, query)
            with ExitStack() as resources:
                h5file, guard = self._open(target, query.file, resources)
                content = create_content(h5file, query.path, resolve_links, guard=guard)
                result = ENDPOINTS[query.endpoint](self, content, query, job)
                result = self._revalidated(result, query, key, guard.dependencies)
                if isinstance(result, Stream):
                    result.resources = resources.pop_all()  # the stream releases the file
                return result

    def close(self) -> None:
        """Close every open file (remote ones before their file objects go)."""
        self.files.close_all()
        self.remote.close_all()

    def _target(self, file: str) -> Url | str:
        """The file a `file` argument names: a URL under a remote prefix, or an OS path
        under the root (403/404 decided on the string, before anything is opened)."""
        if is_url(file):
            return self.remote.roots.check(file)[0]
        return self.policy.resolve(file)

    def _open(self, target: Url | str, file: str, resources: ExitStack) -> tuple[h5py.File, Guard]:
        """The HDF5 file, leased until `resources` close, and the request's guard, which has
        noted the file's identity."""
        identity: Any
        if isinstance(target, Url):
            guard = self._guard(resources, file)
            h5file, identity = resources.enter_context(self.remote.open(target))
        else:
            guard = self._guard(resources)
            h5file, identity = resources.enter_context(self.files.lease(target, file))
        guard.dependencies.note(str(target), identity)
        return h5file, guard

    def _identify(self, located: str) -> Any:
        """The identity of a file an answer depended on, now (None if absent)."""
        if not is_url(located):
            return current_identity(located)
        try:
            return self.remote.identify(parse(located))
        except NotFoundError:
            return None

    def _current_tag(self, key: tuple[Any, ...]) -> str | None:
        """The ETag of the answer to `key` now, if its files are known and unchanged."""
        known = self.tags.get(key)
        if known is None or any(self._identify(path) != seen for path, seen in known):
            return None
        return etag(key, known)

    def _revalidated(
        self, result: Answer, query: Query, key: tuple[Any, ...], depends: Dependencies
    ) -> Answer:
        """The answer with its caching headers: no-cache (files change: revalidate each time),
        its ETag when every file it was read from is known; a 304 if the client has it."""
        if isinstance(result, Gather) or query.part is not None:
            return result
        headers = result.bands.headers if isinstance(result, Scatter) else result.headers
        headers["Cache-Control"] = "no-cache"
        if headers.get("Content-Type", "").split(";")[0] in COMPRESSIBLE:
            headers["Vary"] = "Accept-Encoding"
        if depends.opaque:
            return result
        files = depends.frozen()
        self.tags.put(key, files)
        headers["ETag"] = tag = etag(key, files)
        if not matches(tag, query.if_none_match):
            return result
        if isinstance(result, Stream):
            result.close()
        return _not_modified(tag, query)

    def describe(self, tasks: list[tuple[str, str, str]]) -> list[tuple[Hashable, Described]]:
        """Describe the link targets of a Gather (this worker's memo keeps them too); return
        them with their memo keys, for the worker that will finish the request."""
        with ExitStack() as resources:
            found = []
            for task in tasks:
                guard = self._guard(resources, task[0])
                target = locate_target(guard, *task)
                described = describe_link_target(guard, *task)
                if isinstance(target, Target) and isinstance(described, Described):
                    found.append((target.key, described))
        return found

    def finish(
        self,
        query: Query,
        descriptions: list[tuple[Hashable, Described]],
        allocate: Allocate | None = None,
    ) -> Answer:
        """Answer a request that came back as a Gather, once other workers have described
        (``describe``) the link targets."""
        for key, described in descriptions:
            self.memo.put(key, described)
        return self.run(query, allocate)

    def _guard(self, resources: ExitStack, holder: str = "") -> Guard:
        """The guard of one request (its leases end with `resources`): for the links of a
        remote file if `holder`, the file holding them, is a URL."""
        if is_url(holder):
            return RemoteGuard(self.remote, resources, self.memo)
        return PolicyGuard(self.policy, self.files, resources, self.memo)

    @contextlib.contextmanager
    def _hdf5_errors(self, query: Query) -> Iterator[None]:
        """Turn HDF5 failing on a damaged file into a domain error."""
        try:
            yield
        except (OSError, RuntimeError) as error:
            log.warning("HDF5 error on %s %s: %r", query.file, query.path, error)
            raise InvalidFileError(
                f"Cannot read {query.path or '/'} in {query.file}: the file may be damaged"
            ) from None

    def meta(self, content: EntityContent, query: Query, job: Job) -> Answer:
        """Metadata of any entity (of a group, maybe a Gather first)."""
        if (job.helpers or job.spare) and isinstance(content, GroupContent):
            tasks = content.undescribed_links()
            if len(tasks) >= GATHER_MIN_LINKS:
                return Gather(tasks)
        return _reply(encode_parts(content.metadata()), query)

    def attr(self, content: EntityContent, query: Query, job: Job) -> Answer:
        """Attribute values of an entity, all or those named by attr_keys."""
        return _reply(encode_parts(content.attributes(list(query.attr_keys) or None)), query)

    def data(self, content: EntityContent, query: Query, job: Job) -> Answer:
        """Dataset values; streamed or refused, decided before reading, when they are big; in
        bands (a Scatter) when other workers can share the work."""
        if not isinstance(content, DatasetContent):
            return _reply(encode_parts(content.data()), query)  # the core's error for it
        if query.format in ENCODINGS:  # an unknown format is refused before the selection
            info = content.selection_info(query.selection, query.dtype, query.flatten)
            check_chunks(content, info, self.limits.max_chunk_bytes)
        limits = self.limits
        budget = {"max_bytes": limits.max_response_bytes, "block_bytes": limits.stream_block_bytes}
        if job.helpers or job.spare:  # with no helper free yet, the plan starts one
            bands = plan_bands(
                content,
                query.selection,
                query.dtype,
                query.format,
                flatten=query.flatten,
                workers=max(job.helpers, 1) + 1,
                **budget,
            )
            if bands is not None:
                count = len(bands.selections)
                queries = [
                    query._replace(
                        selection=band,
                        format=bands.encoding,
                        flatten=bands.flatten,
                        part=(number, count),
                        if_none_match=(),
                    )
                    for number, band in enumerate(bands.selections)
                ]
                return Scatter(queries, bands)
        self._read_ahead(content, query)
        response = encode_data(
            content,
            query.selection,
            query.dtype,
            query.format,
            flatten=query.flatten,
            allocate=job.allocate,
            part=query.part,
            **budget,
        )
        return _reply(response, query)

    def _read_ahead(self, content: DatasetContent, query: Query) -> None:
        """From a remote file, fetch the chunks the answer needs at once, concurrently (HDF5
        would ask for them one after the other), if the answer is not streamed."""
        remote = self.remote.file(content.filename)
        if remote is None or query.format not in (None, "json", "bin", "npy"):
            return
        info = content.selection_info(query.selection, query.dtype, query.flatten)
        if info.nbytes <= self.limits.stream_block_bytes:
            remote.prefetch(content.chunk_ranges(query.selection))

    def stats(self, content: EntityContent, query: Query, job: Job) -> Answer:
        """Statistics of a dataset selection (computed block by block by the core)."""
        if isinstance(content, DatasetContent):
            info = content.selection_info(query.selection)
            check_chunks(content, info, self.limits.max_chunk_bytes)
        return _reply(encode_parts(content.data_stats(query.selection)), query)

    def paths(self, content: EntityContent, query: Query, job: Job) -> Answer:
        """Paths of the group and of every entity below it, as h5grove lists them."""
        if not isinstance(content, GroupContent):
            raise EntityKindError(f"{content.path} is a {content.kind}, not a group: no paths")
        return _reply(encode_parts(content.paths(_links(query))), query)


def _links(query: Query) -> LinkResolution:
    """The parsed resolve_links argument (h5grove's default: only valid links)."""
    return parse_link_resolution_arg(query.resolve_links, LinkResolution.ONLY_VALID)


def _reply(response: StreamResponse, query: Query) -> Reply | Stream:
    """Our answer from the encoders': whole (a list of parts, compressed if the client takes
    gzip and it is worth it) or block by block (binary: never compressed). A band of a
    compressed answer is a piece of its deflate stream, with its CRC and length."""
    chunks = response.chunks
    if not isinstance(chunks, list):
        return Stream(response.headers, chunks)
    headers = dict(response.headers)
    text = headers.get("Content-Type", "").split(";")[0] in COMPRESSIBLE
    if query.coding == "gzip" and query.part is not None and text:
        number, count = query.part
        piece = deflate_piece(chunks, last=number == count - 1)
        headers.update({"Content-Length": str(len(piece)), **piece.headers()})
        return Reply([piece], headers)
    if query.coding == "gzip" and query.part is None and compressible(headers, response.length):
        body = gzip_body(chunks)
        headers.update({"Content-Encoding": "gzip", "Content-Length": str(len(body))})
        return Reply([body], headers)
    return Reply(chunks, headers)


def _not_modified(tag: str, query: Query) -> Reply:
    """A 304: the client's copy, with this tag, is current."""
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if query.endpoint != "data" or query.format in (None, "json", "csv"):
        headers["Vary"] = "Accept-Encoding"
    return Reply([], headers, 304)


ENDPOINTS: dict[str, Callable[[Service, EntityContent, Query, Job], Answer]] = {
    "meta": Service.meta,
    "attr": Service.attr,
    "data": Service.data,
    "stats": Service.stats,
    "paths": Service.paths,
}
"""What each endpoint does with the entity it asks about."""
