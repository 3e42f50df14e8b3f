"""Where the HDF5 work of requests runs: worker threads of the server, or worker processes.

A runner takes a :class:`~jupyter_h5grove.service.Query` and gives back the answer as the
handlers write it: :class:`Whole` (headers and body parts in memory) or :class:`Blocks`
(headers, then blocks asked for one at a time). Errors are the domain errors of ``errors``,
including WorkerDiedError (502) and WorkTimeoutError (504). Nothing here knows of HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from .encoders import Body
from .errors import WorkTimeoutError
from .service import Query, Reply, Service, Stream

T = TypeVar("T")


@dataclass
class Whole:
    """An answer in memory: headers (with Content-Length) and the body as parts."""

    headers: dict[str, str]
    parts: list[Body]
    release: Callable[[], None] = field(default=lambda: None)
    """Call once the parts are written (frees shared memory)."""
    status: int = 200
    """200, or 304 (no body: the client's copy is current)."""


class Blocks(Protocol):
    """A big answer read block by block: headers (with Content-Length), then the blocks."""

    headers: dict[str, str]

    async def next_block(self) -> Body | None:
        """The next block (valid until the next call), None at the end."""
        ...

    async def close(self) -> None:
        """Release what the answer holds, whether or not every block was read."""
        ...


class Runner(Protocol):
    """What the handlers ask of the layer that runs the work."""

    async def run(self, query: Query) -> Whole | Blocks:
        """The answer to one request."""
        ...

    async def stop(self) -> None:
        """Stop everything (the server is stopping)."""
        ...


def timeout_message(timeout: float, stopped: str) -> str:
    """The 504 message: what happened, and the setting that decides it."""
    return (
        f"The HDF5 work of this request took longer than {timeout:g} s "
        f"(H5GroveApp.request_timeout) and was stopped{stopped}; ask for less data with a "
        "selection, or ask the server's administrator to raise the limit"
    )


class ThreadRunner:
    """The work runs in the server process, in a pool of threads (worker_processes = 0).

    A thread cannot be stopped: past ``timeout`` the request answers 504 but its thread goes
    on until the HDF5 call returns (its result is then dropped).
    """

    def __init__(self, service: Service, executor: ThreadPoolExecutor, timeout: float = 0) -> None:
        self.service = service
        self.timeout = timeout
        self.executor = executor

    async def run(self, query: Query) -> Whole | Blocks:
        """Run the request in a thread."""
        result = await self.call(self.service.run, query)  # no helpers: no plan comes back
        if isinstance(result, Reply):
            return Whole(result.headers, result.parts, status=result.status)
        assert isinstance(result, Stream)
        return _ThreadBlocks(self, result)

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function` in a thread, within the timeout."""
        future = asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        if not self.timeout:
            return await future
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except asyncio.TimeoutError:
            future.add_done_callback(_drop_result)
            message = timeout_message(self.timeout, " (its thread ends when HDF5 returns)")
            raise WorkTimeoutError(message) from None

    async def stop(self) -> None:
        """Stop the threads (running HDF5 calls finish on their own)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.service.close()


def _drop_result(future: asyncio.Future[Any] | Future[Any]) -> None:
    """Release the result of work whose request timed out (a stream holds a file)."""
    if not future.cancelled() and future.exception() is None:
        result = future.result()
        if isinstance(result, Stream):
            result.close()


class _ThreadBlocks:
    """A Stream of the service, its blocks read in the runner's threads."""

    def __init__(self, runner: ThreadRunner, stream: Stream) -> None:
        self.runner = runner
        self.stream = stream
        self.headers = stream.headers

    async def next_block(self) -> Body | None:
        return await self.runner.call(self.stream.next_block)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.runner.executor, self.stream.close)
