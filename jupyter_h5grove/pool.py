"""Supervised worker processes running the HDF5 work of requests (worker_processes >= 1).

The event loop only routes: each request goes to a free worker, preferably one that served the
same file recently (its open-file cache and memory are warm), else to any free worker, else to
a new one while there are fewer than ``size``; otherwise it waits for the first to be free.
Requests for remote files wait on their store, not on the CPU: at most ``size - 1`` of them
run at once, so that local files always have a worker (with ``size`` 1, a second process is
started for local files while a remote request runs), and they are never split among
workers (the chunks they need are fetched concurrently by one worker: remotefiles.py).
Each worker runs one call at a time. A call that outlives ``timeout`` gets its worker killed
(504); a worker that dies fails its call (502) and is replaced when next needed. Workers start
with the first request, not with the server, and stop after ``idle_timeout`` seconds without
work. See worker.py for the messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from . import errors
from .compression import PIECE_CRC, gzip_pieces
from .encoders import Bands, Body
from .errors import WorkerDiedError, WorkTimeoutError
from .ipc import Channel, Shared, socket_pair
from .remote import is_url
from .runners import Blocks, Whole, timeout_message
from .service import Query, Settings

log = logging.getLogger(__name__)

AFFINITY_FILES = 64
"""Files a worker is remembered to have served recently, for routing."""

GATHER_SHARE = 128
"""Link targets a worker describes per message when several share a group's description."""

STOP_GRACE = 2.0
"""Seconds a stopping worker is given to exit before it is killed."""


class Worker:
    """One worker process, its channel, and the call it is running (at most one)."""

    _ids = itertools.count(1)

    def __init__(self, settings: Settings, on_exit: Callable[[Worker], None]) -> None:
        """Start the process (call on the event loop's thread: the kernel kills the worker
        when the thread that started it ends)."""
        mine, theirs = socket_pair()
        self.number = next(Worker._ids)
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyter_h5grove.worker",
                    "--fd",
                    str(theirs.fileno()),
                    "--parent",
                    str(os.getpid()),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            theirs.close()
        mine.setblocking(False)
        self.channel = Channel(mine)
        self.maps: dict[int, Shared] = {}
        """The worker's shared buffers, mapped here: key -> mapping."""
        self.released: list[int] = []
        """Keys of buffers written out, to give back with the next message."""
        self.channel.send(([], ("init", settings)))
        self.lock = asyncio.Lock()
        self.alive = True
        self.ready = False
        """Whether the process has started (a worker still starting is no help to others)."""
        self.last_used = time.monotonic()
        self.recent: OrderedDict[str, None] = OrderedDict()
        self.streams = 0
        self._reply: asyncio.Future[tuple[Any, list[int]]] | None = None
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(mine.fileno(), self._readable)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _readable(self) -> None:
        """Take the worker's answers off the socket (called by the event loop)."""
        while self.alive:
            try:
                received = self.channel.receive()
            except BlockingIOError:
                return
            except OSError:
                received = None
            if received is None:
                self._gone("its connection closed")
                return
            (dropped, message), fds = received
            for key in dropped:
                if key in self.maps:
                    self.maps.pop(key).close()
            if message[0] == "ready":
                self.ready = True
                continue
            reply, self._reply = self._reply, None
            if reply is not None and not reply.done():
                reply.set_result((message, fds))
            else:  # an answer nobody waits for any more: free what it carries
                for fd in fds:
                    os.close(fd)

    async def call(self, message: tuple[Any, ...], timeout: float) -> tuple[Any, list[int]]:
        """Send a message and wait for its answer (the caller holds ``lock``)."""
        if not self.alive:
            raise WorkerDiedError("The worker process for this request is gone")
        self._reply = self._loop.create_future()
        reply = self._reply
        released, self.released = self.released, []
        try:
            self.channel.send((released, message))
        except OSError:
            self._gone("it stopped reading")
        try:
            return await (asyncio.wait_for(reply, timeout) if timeout else reply)
        except asyncio.TimeoutError:
            self.kill(f"its call took longer than {timeout:g} s")
            text = timeout_message(timeout, " (its worker process was killed)")
            raise WorkTimeoutError(text) from None
        finally:
            self.last_used = time.monotonic()

    def view(self, body: tuple[Any, ...], fds: list[int]) -> tuple[Body, int | None]:
        """The bytes a body message describes (a view of shared memory, no copy), and the key
        of the buffer to give back once they are written (None for inline bytes)."""
        if body[0] == "inline":
            return bytes(body[1]), None
        _, key, size, start, stop = body
        if fds:
            if key in self.maps:
                self.maps.pop(key).close()
            self.maps[key] = Shared(fds.pop(0), size, writable=False)
        for fd in fds:
            os.close(fd)
        return self.maps[key].view(start, stop), key

    def give_back(self, key: int | None) -> None:
        """A buffer the server has written out (given back with the next message)."""
        if key is not None and self.alive:
            self.released.append(key)

    def kill(self, why: str) -> None:
        """Kill the process now (a stopped or stuck process too)."""
        if self.alive:
            log.warning("jupyter_h5grove | killing worker process %s: %s", self.pid, why)
            with contextlib.suppress(OSError):
                self.process.kill()
        self._gone(why)

    def _gone(self, why: str) -> None:
        """Forget the process: fail its call, close the channel, tell the pool."""
        if not self.alive:
            return
        self.alive = False
        self._loop.remove_reader(self.channel.fileno())
        self.channel.close()
        for shared in self.maps.values():
            shared.close()
        self.maps.clear()
        code = self.process.poll()
        if code is not None and code != 0:
            log.warning("jupyter_h5grove | worker process %s exited (%s)", self.pid, _exit(code))
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done():
            reply.set_exception(
                WorkerDiedError(
                    "The worker process running this request died "
                    f"({_exit(code) if code is not None else why}); the request can be retried"
                )
            )
        self._on_exit(self)

    def stop(self) -> None:
        """Ask the process to exit (it is killed if it has not after STOP_GRACE)."""
        if self.alive:
            with contextlib.suppress(OSError):
                self.channel.send(([], ("stop",)))
        self._gone("stopped")


def _exit(code: int) -> str:
    """A process exit status in words."""
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


class ProcessPool:
    """Up to `size` worker processes, started on demand, routed to by file affinity."""

    def __init__(
        self,
        settings: Settings,
        size: int,
        allow_hidden: Callable[[], bool],
        *,
        timeout: float = 0,
        idle_timeout: float = 0,
    ) -> None:
        self.settings = settings
        self.size = size
        self.allow_hidden = allow_hidden
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.remote_size = max(1, size - 1)
        """Requests for remote files running at most at once."""
        self.capacity = max(size, self.remote_size + 1)
        """Processes at most: `size`, or 2 if that is 1 (one for local files)."""
        self.busy = {False: 0, True: 0}
        """Requests running now, for local files (False) and remote ones (True)."""
        self.workers: list[Worker] = []
        self.exited: list[Worker] = []
        """Processes told to stop or killed, not yet reaped."""
        self._waiters: list[asyncio.Future[None]] = []
        self._jobs = itertools.count(1)
        self._reaper: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- requests

    async def run(self, query: Query) -> Whole | Blocks:
        """The answer to one request, from a worker process (and its helpers)."""
        remote = is_url(query.file)
        worker = await self._acquire(query.file, remote)
        job = next(self._jobs)
        allow_hidden = bool(self.allow_hidden())
        try:
            helpers = (0, 0) if remote else self._helpers()
            message, fds = await worker.call(
                ("run", job, query, allow_hidden, helpers), self.timeout
            )
            if message[0] == "scatter":
                return await self._scatter(worker, message[2], message[3], allow_hidden)
            if message[0] == "gather":
                found = await self._gather(worker, message[2], allow_hidden)
                message, fds = await worker.call(
                    ("finish", job, query, allow_hidden, found), self.timeout
                )
        finally:
            self.busy[remote] -= 1
            self._release(worker)
        return self._answer(worker, job, message, fds)

    def _helpers(self) -> tuple[int, int]:
        """(free workers, workers yet to start) that could share a local request's work."""
        return len(self._free()), max(0, self.size - len(self.workers))

    def _answer(
        self, worker: Worker, job: int, message: tuple[Any, ...], fds: list[int]
    ) -> Whole | Blocks:
        """A worker's answer as the handlers take it."""
        kind = message[0]
        if kind == "whole":
            part, key = worker.view(message[3], fds)
            parts = [part] if len(part) else []
            return Whole(message[2], parts, lambda: worker.give_back(key), message[4])
        if kind == "stream":
            worker.streams += 1
            return _ProcessBlocks(self, worker, job, message[2])
        raise _error(message)

    async def _scatter(
        self, main: Worker, queries: list[Query], bands: Bands, allow_hidden: bool
    ) -> Whole:
        """Have the bands of a data answer read by `main` and the workers free now, each
        taking the next band when done with one; then put the answer together."""
        answers: list[tuple[Body, dict[str, str]] | None] = [None] * len(queries)
        lent: list[tuple[Worker, int | None]] = []

        async def band(worker: Worker, number: int) -> None:
            message, fds = await worker.call(
                ("run", next(self._jobs), queries[number], allow_hidden, (0, 0)), self.timeout
            )
            if message[0] != "whole":
                for fd in fds:
                    os.close(fd)
                raise _error(message)
            body, key = worker.view(message[3], fds)
            answers[number] = (body, message[2])
            lent.append((worker, key))

        try:
            await self._share(main, len(queries), band, spawn=False)
        except BaseException:
            for worker, key in lent:
                worker.give_back(key)
            raise
        done = [answer for answer in answers if answer is not None]
        if all(PIECE_CRC in headers for _, headers in done):  # pieces of one gzip stream
            parts = gzip_pieces(done)
            length = sum(len(part) for part in parts)
            headers = {**bands.headers, "Content-Encoding": "gzip", "Content-Length": str(length)}
        else:
            whole = bands.assemble([body for body, _ in done])
            headers, parts = whole.headers, list(whole.chunks)

        def release() -> None:
            for worker, key in lent:
                worker.give_back(key)

        return Whole(headers, parts, release=release)

    async def _gather(
        self, main: Worker, tasks: list[tuple[str, str, str]], allow_hidden: bool
    ) -> list[bytes]:
        """Have link targets described by `main`, the free workers and new ones (up to the
        pool's size), in shares taken one after the other; return what the others found
        (pickled: it only passes through here), `main` keeping its own in its memo."""
        shares = max(1, min(len(tasks) // GATHER_SHARE, 8 * self.size))
        bounds = [round(i * len(tasks) / shares) for i in range(shares + 1)]
        found: list[bytes] = []

        async def share(worker: Worker, number: int) -> None:
            part = tasks[bounds[number] : bounds[number + 1]]
            message, _ = await worker.call(
                ("describe", next(self._jobs), part, allow_hidden, worker is not main),
                self.timeout,
            )
            if message[0] != "described":
                raise _error(message)
            if message[2]:
                found.append(message[2])

        await self._share(main, shares, share, spawn=True)
        return found

    async def _share(
        self,
        main: Worker,
        count: int,
        work: Callable[[Worker, int], Awaitable[None]],
        *,
        spawn: bool,
    ) -> None:
        """Run work(worker, number) for numbers 0..count-1 on `main` and on the workers that
        are free (and, with `spawn`, new ones up to the pool's size), each worker taking the
        next number when done; the helpers are given back at the end."""
        helpers = [w for w in self._free() if w is not main][: count - 1]
        while spawn and len(helpers) + 1 < count and len(self.workers) < self.size:
            helpers.append(self._spawn())
        if not helpers and len(self.workers) < self.size:
            self._spawn()  # too late for this answer (it starts in ~0.15 s): for the next ones
        for helper in helpers:
            await helper.lock.acquire()  # free: taken at once
        numbers = iter(range(count))

        async def drain(worker: Worker) -> None:
            for number in numbers:
                await work(worker, number)

        try:  # every call ends before its worker is given back (one call per worker)
            outcomes = await asyncio.gather(
                *(drain(w) for w in (main, *helpers)), return_exceptions=True
            )
        finally:
            for helper in helpers:
                self._release(helper)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _acquire(self, file: str, remote: bool) -> Worker:
        """A worker for a request about `file` (a URL if `remote`), its lock held, counted
        in ``busy``."""
        while True:
            worker = None
            if self.busy[remote] < (self.remote_size if remote else self.size):
                worker = self._pick(file)
                if worker is None and len(self.workers) < self.capacity:
                    worker = self._spawn()
            if worker is not None:
                await worker.lock.acquire()  # free: taken at once
                self.busy[remote] += 1
                worker.recent[file] = None
                worker.recent.move_to_end(file)
                while len(worker.recent) > AFFINITY_FILES:
                    worker.recent.popitem(last=False)
                return worker
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _free(self, starting: bool = False) -> list[Worker]:
        """The workers running no call now (also those still starting, if `starting`)."""
        return [
            w for w in self.workers if w.alive and not w.lock.locked() and (w.ready or starting)
        ]

    def _pick(self, file: str) -> Worker | None:
        """A free worker, preferably one that served `file` recently, one that has started,
        one that served fewer files."""
        free = self._free(starting=True)
        for worker in free:
            if file in worker.recent:
                return worker
        return min(free, key=lambda w: (not w.ready, len(w.recent)), default=None)

    def _release(self, worker: Worker) -> None:
        """Give the worker back and wake whoever waits for one."""
        worker.lock.release()
        self.wake()

    def wake(self) -> None:
        """A worker may be free: let waiting requests look again."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _spawn(self) -> Worker:
        worker = Worker(self.settings, self._exited)
        self.workers.append(worker)
        log.info("jupyter_h5grove | started worker process %s", worker.pid)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._maintain())
        return worker

    def _exited(self, worker: Worker) -> None:
        """A worker is gone (stopped, killed or dead): reap it soon, let requests move on."""
        if worker in self.workers:
            self.workers.remove(worker)
        self.exited.append(worker)
        self.wake()

    # ----------------------------------------------------------------- lifecycle

    async def _maintain(self) -> None:
        """Stop idle workers and reap exited ones, while there are any."""
        period = max(0.5, min(5.0, self.idle_timeout / 4)) if self.idle_timeout else 5.0
        while self.workers or self.exited:
            await asyncio.sleep(period)
            now = time.monotonic()
            for worker in list(self.workers):
                idle = not worker.lock.locked() and not worker.streams
                if self.idle_timeout and idle and now - worker.last_used > self.idle_timeout:
                    log.info("jupyter_h5grove | stopping idle worker process %s", worker.pid)
                    worker.stop()
            self._reap()

    def _reap(self, force: bool = False) -> None:
        """Collect exited processes; kill those that overstay STOP_GRACE (or all if force)."""
        for worker in list(self.exited):
            if worker.process.poll() is not None:
                self.exited.remove(worker)
            elif force or time.monotonic() - worker.last_used > STOP_GRACE:
                worker.process.kill()

    async def stop(self) -> None:
        """Stop every worker (the server is stopping) and wait until they have exited."""
        for worker in list(self.workers):
            worker.last_used = time.monotonic()
            worker.stop()
        for _ in range(int(STOP_GRACE / 0.01)):
            self._reap()
            if not self.exited:
                break
            await asyncio.sleep(0.01)
        self._reap(force=True)
        for worker in list(self.exited):
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(5)
        self.exited.clear()
        if self._reaper is not None:
            self._reaper.cancel()

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [w.pid for w in self.workers if w.alive]


def _error(message: tuple[Any, ...]) -> Exception:
    """The domain error a worker reported (500 for what it could not name)."""
    _, _job, name, text = message
    cls = getattr(errors, name, None) if name else None
    if isinstance(cls, type) and issubclass(cls, Exception) and errors.http_status(cls()):
        return cls(text)
    return RuntimeError(text)


class _ProcessBlocks:
    """A stream whose reader lives in one worker: each block is one call to it."""

    def __init__(self, pool: ProcessPool, worker: Worker, job: int, headers: dict[str, str]):
        self.pool = pool
        self.worker = worker
        self.job = job
        self.headers = headers
        self.keys: set[int] = set()
        self.open = True

    async def next_block(self) -> Body | None:
        """One call: the worker reads the next block (the last one has been written)."""
        async with self.worker.lock:
            message, fds = await self.worker.call(("next", self.job), self.pool.timeout)
        self.pool.wake()
        if message[0] == "block":
            part, key = self.worker.view(message[2], fds)
            if key is not None:
                self.keys.add(key)
            return part
        for fd in fds:
            os.close(fd)
        if message[0] == "end":
            return None
        self._ended()
        raise _error(message)

    async def close(self) -> None:
        """Tell the worker to close the stream; its buffers come back with the message."""
        if self.open and self.worker.alive:
            self.worker.released.extend(self.keys)
            try:
                async with self.worker.lock:
                    await self.worker.call(("close", self.job), self.pool.timeout)
            except (WorkerDiedError, WorkTimeoutError):
                pass
            self.pool.wake()
        self._ended()

    def _ended(self) -> None:
        if self.open:
            self.open = False
            self.worker.streams -= 1
