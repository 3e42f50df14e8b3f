"""One request's whole job, run in a worker thread: resolve, open, read, encode (no tornado)."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Callable, Hashable, Iterator
from contextlib import ExitStack
from typing import Any, NamedTuple

import h5py

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
from .errors import EntityKindError, InvalidFileError, TooLargeError
from .files import FileCache
from .guard import Guard, RootGuard, Target, locate_target
from .linkmemo import Described, LinkMemo
from .models import LinkResolution
from .paths import RootPolicy
from .remote import RemoteRoots, is_url
from .remotefiles import RemoteFiles, RemoteGuard
from .selection import SelectionInfo
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


class Reply(NamedTuple):
    """An answer built in memory: its body as consecutive parts, and headers (Content-Length)."""

    parts: list[Body]
    headers: dict[str, str]


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
        return self.resources.enter_context(self.files.open(os_path, os.path.basename(os_path)))


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
        self.remote = RemoteFiles(RemoteRoots({}), 0) if remote is None else remote

    def run(
        self, query: Query, allocate: Allocate | None = None, helpers: int = 0, spare: int = 0
    ) -> Answer:
        """Answer one request; every error raised is a domain error from errors.py.

        Big binary answers are read into buffers from ``allocate`` (NumPy's by default).
        With other workers free (``helpers``) or that could be started (``spare``), work worth
        sharing comes back as a Scatter or a Gather instead of the answer."""
        job = Job(allocate, helpers, spare)
        with self._hdf5_errors(query):
            resolve_links = _links(query)  # first, as h5grove: a bad value is a 422 for any file
            with ExitStack() as resources:
                h5file, guard = self._open(query.file, resources)
                content = create_content(h5file, query.path, resolve_links, guard=guard)
                result = ENDPOINTS[query.endpoint](self, content, query, job)
                if isinstance(result, Stream):
                    result.resources = resources.pop_all()  # the stream releases the file
                return result

    def close(self) -> None:
        """Close every open file (remote ones before their file objects go)."""
        self.files.close_all()
        self.remote.close_all()

    def _open(self, file: str, resources: ExitStack) -> tuple[h5py.File, Guard]:
        """The HDF5 file a `file` argument names (a path under the root, or a URL under a
        remote prefix: checked before anything is opened), leased until `resources` close,
        and the guard of the request."""
        if is_url(file):
            url, _root = self.remote.roots.check(file)  # 403 before any network access
            return resources.enter_context(self.remote.open(url)), self._guard(resources, file)
        os_path = self.policy.resolve(file)
        return resources.enter_context(self.files.open(os_path, file)), self._guard(resources)

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
        return _reply(encode_parts(content.metadata()))

    def attr(self, content: EntityContent, query: Query, job: Job) -> Answer:
        """Attribute values of an entity, all or those named by attr_keys."""
        return _reply(encode_parts(content.attributes(list(query.attr_keys) or None)))

    def data(self, content: EntityContent, query: Query, job: Job) -> Answer:
        """Dataset values; streamed or refused, decided before reading, when they are big; in
        bands (a Scatter) when other workers can share the work."""
        if not isinstance(content, DatasetContent):
            return _reply(encode_parts(content.data()))  # raises the core's error for this kind
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
                queries = [
                    query._replace(selection=band, format=bands.encoding, flatten=bands.flatten)
                    for band in bands.selections
                ]
                return Scatter(queries, bands)
        self._read_ahead(content, query)
        return _reply(
            encode_data(
                content,
                query.selection,
                query.dtype,
                query.format,
                flatten=query.flatten,
                allocate=job.allocate,
                **budget,
            )
        )

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
        return _reply(encode_parts(content.data_stats(query.selection)))

    def paths(self, content: EntityContent, query: Query, job: Job) -> Answer:
        """Paths of the group and of every entity below it, as h5grove lists them."""
        if not isinstance(content, GroupContent):
            raise EntityKindError(f"{content.path} is a {content.kind}, not a group: no paths")
        return _reply(encode_parts(content.paths(_links(query))))


def _links(query: Query) -> LinkResolution:
    """The parsed resolve_links argument (h5grove's default: only valid links)."""
    return parse_link_resolution_arg(query.resolve_links, LinkResolution.ONLY_VALID)


def _reply(response: StreamResponse) -> Reply | Stream:
    """Our answer from the encoders': whole (a list of parts) or block by block."""
    if isinstance(response.chunks, list):
        return Reply(response.chunks, response.headers)
    return Stream(response.headers, response.chunks)


ENDPOINTS: dict[str, Callable[[Service, EntityContent, Query, Job], Answer]] = {
    "meta": Service.meta,
    "attr": Service.attr,
    "data": Service.data,
    "stats": Service.stats,
    "paths": Service.paths,
}
"""What each endpoint does with the entity it asks about."""
