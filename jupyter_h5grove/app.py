"""The Jupyter server extension: configuration traits, routes and lifecycle."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Bool, Int, TraitError, Unicode, validate

from . import handlers
from .files import FileCache
from .linkmemo import DEFAULT_SIZE as DEFAULT_LINK_CACHE_SIZE
from .linkmemo import LinkMemo
from .paths import RootPolicy
from .service import Limits, Service

MiB = 1024 * 1024

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

    @validate("url_prefix")
    def _valid_prefix(self, proposal: dict[str, Any]) -> str:
        """Strip slashes so `h5web`, `/h5web/` and `h5web/` mean the same prefix."""
        value = str(proposal["value"]).strip("/")
        if not value:
            raise TraitError("H5GroveApp.url_prefix must not be empty")
        return value

    @validate("worker_threads", "stream_block_bytes", "max_response_bytes", "max_chunk_bytes")
    def _positive(self, proposal: dict[str, Any]) -> int:
        """Refuse sizes that would stop every request."""
        value = int(proposal["value"])
        if value < 1:
            raise TraitError(f"H5GroveApp.{proposal['trait'].name} must be at least 1")
        return value

    def initialize_settings(self) -> None:
        """Build the request service: root policy, file cache and worker threads."""
        assert self.serverapp is not None
        cm = self.serverapp.contents_manager
        root = str(getattr(cm, "root_dir", None) or self.serverapp.root_dir)
        policy = RootPolicy(
            root,
            allow_hidden=lambda: bool(getattr(cm, "allow_hidden", False)),
            allow_symlinks_outside_root=self.allow_symlinks_outside_root,
        )
        self.executor = ThreadPoolExecutor(self.worker_threads, thread_name_prefix="h5grove")
        self.service = Service(
            policy,
            FileCache(
                self.open_files_cache_size,
                locking=self.file_locking,
                background=self.executor.submit,
            ),
            Limits(self.max_response_bytes, self.stream_block_bytes, self.max_chunk_bytes),
            LinkMemo(self.link_cache_size),
        )
        self.log.info(
            "jupyter_h5grove | serving HDF5 files of %s at %s",
            policy.root,
            self.served_url(),
        )

    def initialize_handlers(self) -> None:
        """Register every endpoint under {base_url}{url_prefix}/ (base_url is added for us)."""
        prefix = re.escape(self.url_prefix)
        context = {"service": self.service, "executor": self.executor}
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
        """Stop the worker threads and close the cached files."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.service.files.close_all()


def _route_patterns(web_app: Any) -> list[tuple[str, Any]]:
    """(URL regex, handler class) of every route tornado knows, across host rules."""
    found: list[tuple[str, Any]] = []
    for host_rule in getattr(web_app.default_router, "rules", []):
        for rule in getattr(host_rule.target, "rules", []):
            regex = getattr(rule.matcher, "regex", None)
            if regex is not None:
                found.append((regex.pattern.rstrip("$"), rule.target))
    return found
