"""A worker process: runs the HDF5 work of requests for the server, one message at a time.

Started by the server's process pool as ``python -m jupyter_h5grove.worker --fd N --parent PID``
(so ``ps`` shows what it is), with one end of a socket pair. It answers the messages of
``pool.py``; answers too big for a packet are read into shared memory (``ipc.Shared``) whose
descriptor goes to the server. It dies with the server: the kernel kills it when the server
process ends (Linux), a watchdog thread when its parent changes, and it exits when the
socket closes.

Messages (server -> worker, each answered by exactly one message):
- ("init", Settings): build the service (no answer).
- ("run", job, Query, allow_hidden) -> ("whole", job, headers, body) | ("stream", job, headers)
- ("next", job) -> ("block", job, body) | ("end", job)
- ("close", job) -> ("closed", job)
- ("stop",): exit (no answer).
Any of them may be answered ("error", job, error class name or None, message). A body is
("inline", bytes) or ("shared", key, size, start, stop), the descriptor of shared buffer
`key` attached the first time the server sees it.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import errors
from .encoders import Body
from .ipc import MAX_PACKET, Channel, Shared
from .service import Query, Reply, Service, Settings, Stream, build_service

log = logging.getLogger("jupyter_h5grove.worker")

PR_SET_PDEATHSIG = 1
"""Linux prctl option: the signal this process gets when its parent dies."""

WATCHDOG_PERIOD = 1.0
"""Seconds between two checks that the parent still lives (where prctl cannot help)."""


class Buffers:
    """The shared-memory buffers of one answer: allocated on demand (the service's Allocate),
    found again from the views of the body, freed with the answer."""

    def __init__(self) -> None:
        self.shared: dict[int, tuple[Shared, int]] = {}
        """key -> (buffer, address of its first byte)."""
        self.sent: set[int] = set()
        self._next = 0

    def allocate(self, nbytes: int) -> np.ndarray:
        """A writable uint8 array of `nbytes` bytes in a new shared buffer."""
        shared = Shared.create(nbytes)
        array = np.frombuffer(shared.map, np.uint8) if shared.map is not None else np.empty(0)
        self.shared[self._next] = (shared, _address(array))
        self._next += 1
        return array

    def locate(self, part: Body) -> tuple[int, int] | None:
        """(key, start) of the shared buffer holding `part`, if one does."""
        if not len(part):
            return None
        address = _address(np.frombuffer(part, np.uint8))
        for key, (shared, base) in self.shared.items():
            if base <= address and address + len(part) <= base + shared.size:
                return key, address - base
        return None

    def describe(self, parts: Sequence[Body]) -> tuple[tuple[Any, ...], list[int]]:
        """The body message for `parts`, and the descriptors to send with it: a view of one
        shared buffer as it is; anything else inline when small, or copied into a new
        shared buffer."""
        if len(parts) == 1 and (found := self.locate(parts[0])) is not None:
            key, start = found
            return self._shared(key, start, start + len(parts[0]))
        length = sum(len(part) for part in parts)
        if length <= MAX_PACKET // 2:
            return ("inline", b"".join(parts)), []
        target = self.allocate(length)
        position = 0
        for part in parts:
            target[position : position + len(part)] = np.frombuffer(part, np.uint8)
            position += len(part)
        return self._shared(len(self.shared) - 1, 0, length)

    def _shared(self, key: int, start: int, stop: int) -> tuple[tuple[Any, ...], list[int]]:
        shared = self.shared[key][0]
        fds = [] if key in self.sent else [shared.fd]
        self.sent.add(key)
        return ("shared", key, shared.size, start, stop), fds

    def close(self) -> None:
        """Free every buffer (the server keeps its own mappings as long as it needs them)."""
        for shared, _ in self.shared.values():
            shared.close()
        self.shared.clear()


def _address(array: np.ndarray) -> int:
    """Address of an array's first byte."""
    return int(array.__array_interface__["data"][0])


class Worker:
    """The message loop of a worker process."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.service: Service | None = None
        self.allow_hidden = False
        self.streams: dict[int, tuple[Stream, Buffers]] = {}

    def serve(self) -> None:
        """Answer messages until told to stop or the server goes away."""
        while True:
            received = self.channel.receive()
            if received is None:
                return
            message, fds = received
            for fd in fds:
                os.close(fd)
            kind = message[0]
            if kind == "stop":
                return
            if kind == "init":
                self.service = build_service(message[1], lambda: self.allow_hidden)
                continue
            self._answer(kind, message[1], message[2:])

    def _answer(self, kind: str, job: int, args: tuple[Any, ...]) -> None:
        """Answer one request message; errors become ("error", ...) messages."""
        try:
            if kind == "run":
                self._run(job, *args)
            elif kind == "next":
                self._next(job)
            elif kind == "close":
                self._close(job)
                self.channel.send(("closed", job))
        except Exception as error:
            self._close(job)
            name = type(error).__name__
            if errors.http_status(error) is None or getattr(errors, name, None) is not type(error):
                log.exception("jupyter_h5grove worker: %s of job %s failed", kind, job)
                self.channel.send(("error", job, None, "Internal server error"))
            else:
                self.channel.send(("error", job, name, str(error)))

    def _run(self, job: int, query: Query, allow_hidden: bool) -> None:
        assert self.service is not None, "init must come first"
        self.allow_hidden = allow_hidden
        buffers = Buffers()
        try:
            result = self.service.run(query, buffers.allocate)
        except BaseException:
            buffers.close()
            raise
        if isinstance(result, Reply):
            try:
                body, fds = buffers.describe(result.parts)
                self.channel.send(("whole", job, result.headers, body), fds)
            finally:
                del result
                buffers.close()
            return
        self.streams[job] = (result, buffers)
        self.channel.send(("stream", job, result.headers))

    def _next(self, job: int) -> None:
        stream, buffers = self.streams[job]
        block = stream.next_block()
        if block is None:
            self._close(job)
            self.channel.send(("end", job))
            return
        body, fds = buffers.describe([block])
        del block
        self.channel.send(("block", job, body), fds)

    def _close(self, job: int) -> None:
        found = self.streams.pop(job, None)
        if found is not None:
            stream, buffers = found
            stream.close()
            del stream
            buffers.close()


def die_with_parent(parent: int) -> None:
    """Make sure this process does not outlive the server, even one killed with SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_PERIOD)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: Iterable[str] | None = None) -> None:
    """Entry point of ``python -m jupyter_h5grove.worker``."""
    parser = argparse.ArgumentParser(prog="jupyter_h5grove.worker", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="this end of the socket pair")
    parser.add_argument("--parent", type=int, required=True, help="the server's process id")
    args = parser.parse_args(list(argv) if argv is not None else None)
    die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    logging.basicConfig(
        level=logging.WARNING,
        format=f"[%(levelname)1.1s %(asctime)s jupyter_h5grove worker {os.getpid()}] %(message)s",
    )
    Worker(Channel(socket.socket(fileno=args.fd))).serve()


if __name__ == "__main__":
    main()


__all__ = ["Buffers", "Settings", "Worker", "main"]
