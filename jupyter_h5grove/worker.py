"""A worker process: runs the HDF5 work of requests for the server, one message at a time.

Started by the server's process pool as ``python -m jupyter_h5grove.worker --fd N --parent PID``
(so ``ps`` shows what it is), with one end of a socket pair. It answers the messages of
``pool.py``; answers too big for a packet are read into shared memory (``ipc.Shared``) whose
descriptor goes to the server. It dies with the server: the kernel kills it when the server
process ends (Linux), a watchdog thread when its parent changes, and it exits when the
socket closes.

Each message is sent as (keys, message): from the server, the keys of shared buffers it is
done with (the worker reuses them); from the worker, the keys of buffers it closed (the server
unmaps them). Messages (server -> worker, each answered by exactly one message):
- ("init", Settings): build the service -> ("ready", 0), awaited by nobody.
- ("run", job, Query, allow_hidden, (helpers, spare)) -> ("whole", job, headers, body, status)
  | ("stream", job, headers) | ("scatter", job, queries, Bands) | ("gather", job, tasks):
  with other workers free (helpers) or yet to start (spare), work worth sharing comes back
  as a plan (service.py).
- ("describe", job, tasks, allow_hidden, ship) -> ("described", job, pickled descriptions)
  (nothing with ship false: the worker finishing the request keeps its own in its memo)
- ("finish", job, Query, allow_hidden, [pickled descriptions]) -> as "run" (without plans)
- ("next", job) -> ("block", job, body) | ("end", job)
- ("close", job) -> ("closed", job)
- ("stop",): exit (no answer).
Any of them may be answered ("error", job, error class name or None, message). A body is
("inline", bytes) or ("shared", key, size, start, stop), the descriptor of shared buffer
`key` attached the first time the server sees it; a buffer is lent to the server until it gives
it back (after writing a whole answer, or when closing a stream).
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import logging
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from . import errors
from .dataset import Allocate
from .encoders import Body
from .ipc import MAX_PACKET, Channel, Shared
from .service import Reply, Scatter, Service, Settings, Stream, build_service

log = logging.getLogger("jupyter_h5grove.worker")

PR_SET_PDEATHSIG = 1
"""Linux prctl option: the signal this process gets when its parent dies."""

WATCHDOG_PERIOD = 1.0
"""Seconds between two checks that the parent still lives (where prctl cannot help)."""


KEEP_BUFFERS = 4
"""Shared buffers a worker keeps for reuse once the server gives them back..."""

KEEP_BYTES = 128 * 1024 * 1024
"""... up to this total size: a new buffer costs a mapping and a page fault per 4 KiB page
(about 2 ms for a 4 MiB heatmap), on both sides."""

MIN_BUFFER = 1024 * 1024
"""Smallest shared buffer; sizes are rounded up to powers of two (untouched pages of a
buffer cost no memory), so buffers fit answers of other sizes."""


class SharedBuffers:
    """The shared-memory buffers of a worker: lent to the server with an answer, reused once
    the server gives them back, closed when too many are kept (the server is told)."""

    def __init__(self) -> None:
        self.buffers: dict[int, tuple[Shared, int]] = {}
        """key -> (buffer, address of its first byte)."""
        self.free: list[int] = []
        self.known: set[int] = set()
        """Keys whose descriptor the server has."""
        self.dropped: list[int] = []
        """Keys closed since the last answer (the server unmaps them)."""
        self._keys = itertools.count()

    def take(self, nbytes: int) -> tuple[int, np.ndarray]:
        """A free buffer of at least `nbytes` (the smallest that fits), or a new one; and a
        writable uint8 array of exactly `nbytes` over it."""
        fitting = [k for k in self.free if self.buffers[k][0].size >= nbytes]
        if fitting:
            key = min(fitting, key=lambda k: self.buffers[k][0].size)
            self.free.remove(key)
        else:
            key = next(self._keys)
            shared = Shared.create(max(MIN_BUFFER, 1 << max(0, nbytes - 1).bit_length()))
            self.buffers[key] = (shared, _address(np.frombuffer(shared.view(), np.uint8)))
        return key, self.array(key, nbytes)

    def array(self, key: int, nbytes: int) -> np.ndarray:
        """A writable uint8 array over the first `nbytes` of buffer `key`."""
        return np.frombuffer(self.buffers[key][0].view(0, nbytes), np.uint8)

    def size(self, key: int) -> int:
        return self.buffers[key][0].size

    def give_back(self, keys: Iterable[int]) -> None:
        """Buffers the server is done with: free for reuse, or closed past the keep limits."""
        for key in keys:
            if key in self.buffers and key not in self.free:
                self.free.append(key)
        while len(self.free) > KEEP_BUFFERS or (
            self.free and sum(self.buffers[k][0].size for k in self.free) > KEEP_BYTES
        ):
            key = max(self.free, key=lambda k: self.buffers[k][0].size)
            self.free.remove(key)
            self.buffers.pop(key)[0].close()
            if key in self.known:
                self.known.discard(key)
                self.dropped.append(key)

    def locate(self, part: Body, keys: Iterable[int]) -> tuple[int, int] | None:
        """(key, start) of the buffer among `keys` holding `part`, if one does."""
        if not len(part):
            return None
        address = _address(np.frombuffer(part, np.uint8))
        for key in keys:
            shared, base = self.buffers[key]
            if base <= address and address + len(part) <= base + shared.size:
                return key, address - base
        return None

    def reference(self, key: int, start: int, stop: int) -> tuple[tuple[Any, ...], list[int]]:
        """The body message for bytes [start:stop] of buffer `key`, and the descriptor to send
        if the server does not have it yet."""
        shared = self.buffers[key][0]
        fds = [] if key in self.known else [shared.fd]
        self.known.add(key)
        return ("shared", key, shared.size, start, stop), fds

    def close(self) -> None:
        for shared, _ in self.buffers.values():
            shared.close()
        self.buffers.clear()


class Lent:
    """The buffers one answer borrows (the service's Allocate), lent to the server with it."""

    def __init__(self, shared: SharedBuffers) -> None:
        self.shared = shared
        self.keys: list[int] = []
        self.copies: int | None = None
        """The buffer the last copied block went to."""

    def allocate(self, nbytes: int) -> np.ndarray:
        """A writable uint8 array of `nbytes` bytes in shared memory."""
        key, array = self.shared.take(nbytes)
        self.keys.append(key)
        return array

    def body(
        self, parts: Sequence[Body], *, reuse: bool = False
    ) -> tuple[tuple[Any, ...], list[int]]:
        """The body message for `parts`, and the descriptors to send with it: a view of one
        of the answer's buffers as it is; anything else inline when small, or copied into a
        shared buffer (with `reuse`, the one the last copy went to, if big enough)."""
        if len(parts) == 1 and (found := self.shared.locate(parts[0], self.keys)) is not None:
            key, start = found
            return self.shared.reference(key, start, start + len(parts[0]))
        length = sum(len(part) for part in parts)
        if length <= MAX_PACKET // 2:
            return ("inline", b"".join(parts)), []
        if reuse and self.copies is not None and self.shared.size(self.copies) >= length:
            key, target = self.copies, self.shared.array(self.copies, length)
        else:
            target = self.allocate(length)
            key = self.copies = self.keys[-1]
        position = 0
        for part in parts:
            target[position : position + len(part)] = np.frombuffer(part, np.uint8)
            position += len(part)
        return self.shared.reference(key, 0, length)

    def unused(self, used: set[int]) -> None:
        """Give back at once the buffers the server was not sent."""
        self.shared.give_back(k for k in self.keys if k not in used)


def _address(array: np.ndarray) -> int:
    """Address of an array's first byte."""
    return int(array.__array_interface__["data"][0])


class Worker:
    """The message loop of a worker process."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.service: Service | None = None
        self.allow_hidden = False
        self.shared = SharedBuffers()
        self.streams: dict[int, tuple[Stream, Lent]] = {}

    def serve(self) -> None:
        """Answer messages until told to stop or the server goes away, then close files."""
        try:
            self._serve()
        finally:
            if self.service is not None:
                self.service.close()

    def _serve(self) -> None:
        while True:
            received = self.channel.receive()
            if received is None:
                return
            (released, message), fds = received
            for fd in fds:
                os.close(fd)
            self.shared.give_back(released)
            kind = message[0]
            if kind == "stop":
                return
            if kind == "init":
                self.service = build_service(message[1], lambda: self.allow_hidden)
                self.send(("ready", 0))
                continue
            self._answer(kind, message[1], message[2:])

    def send(self, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
        """Send an answer, with the keys of the buffers closed since the last one."""
        dropped, self.shared.dropped = self.shared.dropped, []
        self.channel.send((dropped, message), fds or [])

    def _answer(self, kind: str, job: int, args: tuple[Any, ...]) -> None:
        """Answer one request message; errors become ("error", ...) messages."""
        try:
            if kind == "run":
                query, self.allow_hidden, (helpers, spare) = args
                self._run(job, lambda allocate: self._service.run(query, allocate, helpers, spare))
            elif kind == "finish":
                query, self.allow_hidden, shipped = args
                found = [item for blob in shipped for item in pickle.loads(blob)]
                self._run(job, lambda allocate: self._service.finish(query, found, allocate))
            elif kind == "describe":
                tasks, self.allow_hidden, ship = args
                found = self._service.describe(tasks)  # kept in this worker's memo too
                blob = pickle.dumps(found, protocol=pickle.HIGHEST_PROTOCOL) if ship else b""
                self.send(("described", job, blob))
            elif kind == "next":
                self._next(job)
            elif kind == "close":
                self._close(job)
                self.send(("closed", job))
        except Exception as error:
            self._close(job)
            name = type(error).__name__
            if errors.http_status(error) is None or getattr(errors, name, None) is not type(error):
                log.exception("jupyter_h5grove worker: %s of job %s failed", kind, job)
                self.send(("error", job, None, "Internal server error"))
            else:
                self.send(("error", job, name, str(error)))

    @property
    def _service(self) -> Service:
        assert self.service is not None, "init must come first"
        return self.service

    def _run(self, job: int, work: Callable[[Allocate], Any]) -> None:
        """Do a request's work and send what came of it."""
        lent = Lent(self.shared)
        try:
            result = work(lent.allocate)
        except BaseException:
            lent.unused(set())
            raise
        if isinstance(result, Reply):
            headers, status = result.headers, result.status
            body, fds = lent.body(result.parts)
            del result
            lent.unused({body[1]} if body[0] == "shared" else set())
            self.send(("whole", job, headers, body, status), fds)
        elif isinstance(result, Stream):
            self.streams[job] = (result, lent)
            self.send(("stream", job, result.headers))
        elif isinstance(result, Scatter):
            lent.unused(set())
            self.send(("scatter", job, result.queries, result.bands))
        else:
            lent.unused(set())
            self.send(("gather", job, result.tasks))

    def _next(self, job: int) -> None:
        """The next block of a stream: the server has sent the last one, so a buffer the
        answer copied it into can take this one."""
        stream, answer = self.streams[job]
        block = stream.next_block()
        if block is None:
            self.send(("end", job))  # buffers stay lent until the server closes the stream
            return
        body, fds = answer.body([block], reuse=True)
        del block
        self.send(("block", job, body), fds)

    def _close(self, job: int) -> None:
        """End a stream: its file handle and its buffers are released."""
        found = self.streams.pop(job, None)
        if found is not None:
            stream, answer = found
            stream.close()
            del stream
            answer.unused(set())


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


__all__ = ["Settings", "SharedBuffers", "Worker", "main"]
