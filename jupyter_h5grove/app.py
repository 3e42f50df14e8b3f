"""The Jupyter server extension: configuration traits, routes and lifecycle."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Bool, Dict, Float, Int, TraitError, Unicode, validate

from . import handlers
from .errors import ForbiddenError
from .identity import Logins
from .linkmemo import DEFAULT_SIZE as DEFAULT_LINK_CACHE_SIZE
from .pool import ProcessPool
from .remote import RemoteRoots
from .runners import Runner, ThreadRunner
from .service import Limits, Settings, build_service

MiB = 1024 * 1024


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


STORE_TIMEOUT = 30.0
"""Seconds a remote store may take to answer (at most half of request_timeout, so a slow
store is reported as such before the worker is stopped)."""

DEFAULT_WORKER_PROCESSES = min(4, _usable_cores())
"""One per usable core, at most 4: a viewer has a few requests in flight at a time, each
process costs memory (see the README), and JupyterHub nodes are shared by many servers."""

ROUTES: tuple[tuple[str, type[handlers.H5GroveHandler]], ...] = (
    ("", handlers.RootHandler),
    ("meta", handlers.MetadataHandler),
    ("attr", handlers.AttributeHandler),
    ("data", handlers.DataHandler),
    ("stats", handlers.StatisticsHandler),
    ("paths", handlers.PathsHandler),
)
"""Endpoint name (under the prefix) and its handler; each is served with or without a final /."""


class H5GroveApp(ExtensionApp):
    """Serve the HDF5 files of the Jupyter root directory with the h5grove API."""

    name = "jupyter_h5grove"
    load_other_extensions = True

    url_prefix = Unicode(
        "h5grove",
        help="URL path, under the server's base_url, where the endpoints are served "
        "(use 'h5web' to replace jupyterlab-h5web's own server extension).",
    ).tag(config=True)

    file_locking = Bool(
        False,
        help="Use HDF5 file locking when opening files. Off by default so files being written "
        "by another process, or on network file systems, can still be read.",
    ).tag(config=True)

    allow_symlinks_outside_root = Bool(
        True,
        help="Follow symbolic links inside the root directory even when they point outside it, "
        "as Jupyter's file browser does. False confines every file, external link and "
        "virtual dataset source to the real path of the root directory.",
    ).tag(config=True)

    max_response_bytes = Int(
        512 * MiB,
        help="Largest answer (bytes) built in memory. Bigger bin/npy answers are streamed in "
        "blocks; bigger json/csv/tiff answers are refused with 413 and a request to use a "
        "selection. The default serves a whole 4096x4096 float32 frame in any format.",
    ).tag(config=True)

    stream_block_bytes = Int(
        16 * MiB,
        help="Size of the blocks in which bin/npy answers larger than this (or than "
        "max_response_bytes, if smaller) are read and sent, which bounds the memory one "
        "download holds.",
    ).tag(config=True)

    max_chunk_bytes = Int(
        256 * MiB,
        help="Largest compressed chunk (bytes, once decompressed) read for a request. HDF5 "
        "inflates a whole chunk even to read one value of it, so datasets with bigger "
        "compressed chunks are refused with 413 before anything is read.",
    ).tag(config=True)

    worker_threads = Int(
        4,
        help="Threads running the HDF5 work (open, read, encode) off the event loop. h5py "
        "serialises HDF5 calls, so more threads mostly help encoding and waiting on disks.",
    ).tag(config=True)

    open_files_cache_size = Int(
        256,
        help="Open HDF5 files kept for reuse across requests (checked against the file's "
        "identity, size and modification time before every reuse); 0 disables reuse. Each "
        "costs a file descriptor and HDF5's small metadata cache.",
    ).tag(config=True)

    link_cache_size = Int(
        DEFAULT_LINK_CACHE_SIZE,
        help="Descriptions of external-link targets (the scan files of a NeXus master file) "
        "remembered across requests for group metadata, each reused only while a stat of its "
        "files still gives their identity (device, inode, size, modification and "
        "status-change times); a few hundred bytes each. 0 disables.",
    ).tag(config=True)

    worker_processes = Int(
        DEFAULT_WORKER_PROCESSES,
        help="Worker processes running the HDF5 work (open, read, decompress, encode): they use "
        "several cores, can be stopped, and a crash in one (a faulty filter plugin, memory "
        "exhausted) cannot take the Jupyter server down. They start with the first request "
        "and stop when idle. 0 runs the work in threads of the server process instead (no "
        "isolation, one core for HDF5). Default: the cores this process may use, at most 4.",
    ).tag(config=True)

    request_timeout = Float(
        120.0,
        help="Seconds the HDF5 work of one request (or one block of a streamed answer) may "
        "take: past it the request answers 504 and its worker process is killed and replaced "
        "(a worker thread cannot be stopped: it finishes on its own). 0: no limit.",
    ).tag(config=True)

    worker_idle_timeout = Float(
        300.0,
        help="Seconds after which a worker process with no work stops (and, with it, its open "
        "files and remembered link targets); 0: never.",
    ).tag(config=True)

    remote_roots = Dict(
        {},
        help="URL prefixes of remote HDF5 files that may be served, each with the fsspec "
        "storage options of its store, e.g. {'s3://beamline-data/2026/': {'anon': False}, "
        "'https://data.example.org/hdf5/': {}}. A `file` that is a URL (s3, gs, az, abfs, "
        "http, https) is served only under one of them; anything else is refused before any "
        "network access. Empty: no remote file is served. Needs jupyter_h5grove[remote].",
    ).tag(config=True)

    @validate("url_prefix")
    def _valid_prefix(self, proposal: dict[str, Any]) -> str:
        """Strip slashes so `h5web`, `/h5web/` and `h5web/` mean the same prefix."""
        value = str(proposal["value"]).strip("/")
        if not value:
            raise TraitError("H5GroveApp.url_prefix must not be empty")
        return value

    @validate("remote_roots")
    def _valid_roots(self, proposal: dict[str, Any]) -> dict[str, Any]:
        """Refuse prefixes that are not URLs the server could serve, at start-up."""
        try:
            RemoteRoots(proposal["value"])
        except (ValueError, ForbiddenError) as error:
            raise TraitError(f"H5GroveApp.remote_roots: {error}") from None
        return dict(proposal["value"])

    @validate("worker_processes", "request_timeout", "worker_idle_timeout")
    def _not_negative(self, proposal: dict[str, Any]) -> Any:
        """Counts and durations are 0 or more."""
        if proposal["value"] < 0:
            raise TraitError(f"H5GroveApp.{proposal['trait'].name} must not be negative")
        return proposal["value"]

    @validate("worker_threads", "stream_block_bytes", "max_response_bytes", "max_chunk_bytes")
    def _positive(self, proposal: dict[str, Any]) -> int:
        """Refuse sizes that would stop every request."""
        value = int(proposal["value"])
        if value < 1:
            raise TraitError(f"H5GroveApp.{proposal['trait'].name} must be at least 1")
        return value

    def initialize_settings(self) -> None:
        """Build the runner of the HDF5 work: worker processes, or threads of this process."""
        assert self.serverapp is not None
        cm = self.serverapp.contents_manager
        root = str(getattr(cm, "root_dir", None) or self.serverapp.root_dir)
        settings = Settings(
            root=root,
            allow_symlinks_outside_root=self.allow_symlinks_outside_root,
            file_locking=self.file_locking,
            open_files_cache_size=self.open_files_cache_size,
            link_cache_size=self.link_cache_size,
            limits=Limits(self.max_response_bytes, self.stream_block_bytes, self.max_chunk_bytes),
            remote_roots={str(k): dict(v) for k, v in self.remote_roots.items()},
            store_timeout=min(STORE_TIMEOUT, self.request_timeout / 2 or STORE_TIMEOUT),
        )

        def allow_hidden() -> bool:
            return bool(getattr(cm, "allow_hidden", False))

        self.runner: Runner
        if self.worker_processes:
            self.runner = ProcessPool(
                settings,
                self.worker_processes,
                allow_hidden,
                timeout=self.request_timeout,
                idle_timeout=self.worker_idle_timeout,
            )
            where = f"{self.worker_processes} worker processes at most"
        else:
            executor = ThreadPoolExecutor(self.worker_threads, thread_name_prefix="h5grove")
            service = build_service(settings, allow_hidden, background=executor.submit)
            self.runner = ThreadRunner(service, executor, self.request_timeout)
            where = f"{self.worker_threads} worker threads"
        self.log.info(
            "jupyter_h5grove | serving HDF5 files of %s at %s (%s)",
            os.path.normpath(os.path.abspath(root)),
            self.served_url(),
            where,
        )

    def initialize_handlers(self) -> None:
        """Register every endpoint under {base_url}{url_prefix}/ (base_url is added for us)."""
        prefix = re.escape(self.url_prefix)
        context = {"runner": self.runner, "logins": Logins()}
        for endpoint, handler in ROUTES:
            pattern = f"{prefix}/?" if not endpoint else f"{prefix}/{endpoint}/?"
            self.handlers.append((pattern, handler, context))

    def served_url(self) -> str:
        """Where the endpoints answer, for the start-up log line."""
        assert self.serverapp is not None
        return url_path_join(self.serverapp.connection_url, self.url_prefix) + "/"

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Once every extension is loaded, warn if another one also serves our prefix."""
        self.warn_prefix_conflicts()

    def warn_prefix_conflicts(self) -> list[str]:
        """Log a warning naming the routes of other extensions under our URL prefix."""
        assert self.serverapp is not None
        base = self.serverapp.web_app.settings["base_url"]
        ours = url_path_join(base, self.url_prefix) + "/"
        mine = {h for _, h in ROUTES}
        clashes = [
            pattern
            for pattern, target in _route_patterns(self.serverapp.web_app)
            if target not in mine and (pattern + "/").startswith(ours)
        ]
        if clashes:
            self.log.warning(
                "jupyter_h5grove | another server extension also serves %s (%s); disable it "
                "(e.g. `jupyter server extension disable jupyterlab_h5web`) or change "
                "H5GroveApp.url_prefix",
                ours,
                ", ".join(clashes),
            )
        return clashes

    async def stop_extension(self) -> None:
        """Stop the worker processes (or threads) and close the cached files."""
        await self.runner.stop()


def _route_patterns(web_app: Any) -> list[tuple[str, Any]]:
    """(URL regex, handler class) of every route tornado knows, across host rules."""
    found: list[tuple[str, Any]] = []
    for host_rule in getattr(web_app.default_router, "rules", []):
        for rule in getattr(host_rule.target, "rules", []):
            regex = getattr(rule.matcher, "regex", None)
            if regex is not None:
                found.append((regex.pattern.rstrip("$"), rule.target))
    return found
