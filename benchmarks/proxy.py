"""TCP proxies on loopback, each a process of its own: what they share, and a network link.

- :class:`ProxyProcess`: the harness's handle of a proxy process: it starts a script that
  prints ``listening PORT`` once it accepts connections and then answers commands, one line
  each on its stdin, with one line on its stdout (:func:`serve` is the script's side). The
  remote rows' store proxy (``remote_store.DelayProxy``) and :class:`LinkProxy` are such.
- :class:`LinkProxy`: this file run as a script, ``python proxy.py TARGET RATE DELAY``: a
  proxy to loopback port TARGET modelling a network link (issue 13's rows, ``web.py``). Each
  direction is a pipe of RATE bytes/s and a one-way delay of DELAY seconds: a burst of bytes
  read at time t leaves when the bytes before it have left and its own length has passed
  (t_out = max(t, previous t_out) + len / RATE) and reaches the other side DELAY later, so a
  request and its answer cost one round-trip time (2 DELAY) plus their sizes / RATE. Bytes
  wait in a bounded buffer (``BUFFER`` per direction); when it is full the proxy stops
  reading and TCP's flow control holds the sender, as a router's queue would. Not modelled:
  losses, TCP's slow start and congestion control (the loopback connections on each side
  have their own windows), and the connection's set-up (not delayed: open the connection
  before timing). Commands: ``stats`` (a JSON line: bytes each way and connections since the
  last reset) and ``reset`` (``ok``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve()

CHUNK = 16 * 1024
"""Bytes read at once from a side (a link's burst: its granularity)."""
BUFFER = 1 << 20
"""Bytes a direction of a link holds at most (in its queue or in flight)."""
SPIN = 0.001
"""The last seconds before a burst is due are waited for by yielding to the event loop
(its timers round up to a millisecond: two such per exchange would add ~2 ms at 1 ms RTT)."""


def stop_process(process: subprocess.Popen) -> None:
    """Stop a process we started, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class ProxyProcess:
    """A proxy process (`command`, its stderr in `log_path`): its port and its commands."""

    def __init__(self, command: list[str], log_path: Path) -> None:
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
            )
        self._lock = threading.Lock()
        line = self._line()
        if not line.startswith("listening "):
            stop_process(self.process)
            raise RuntimeError(f"the proxy did not start ({line!r}): {log_path}")
        self.port = int(line.split()[1])

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the proxy exited ({self.process.poll()})")
        return line.strip()

    def ask(self, command: str) -> str:
        """Send one command, return its one-line answer."""
        assert self.process.stdin is not None
        with self._lock:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
            return self._line()

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def serve(handle: Handler, command: Callable[[str], Awaitable[str]]) -> None:
    """The script's side of a ProxyProcess: accept loopback connections with `handle`, print
    ``listening PORT``, answer each line of stdin with `command`'s answer; stop once stdin
    closes (the harness exited) or on SIGTERM."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        def commands() -> None:  # a thread: stdin, one command a line, until it closes
            for line in sys.stdin:
                answer = asyncio.run_coroutine_threadsafe(command(line.strip()), loop).result()
                print(answer, flush=True)
            loop.call_soon_threadsafe(server.close)

        print(f"listening {port}", flush=True)
        threading.Thread(target=commands, daemon=True).start()
        async with server:
            with contextlib.suppress(asyncio.CancelledError):
                await server.serve_forever()

    asyncio.run(main())


# --------------------------------------------------------------------------- a network link


class LinkProxy(ProxyProcess):
    """A proxy process to loopback port `target` modelling a link of `rate` bytes/s each way
    and `rtt` seconds of round-trip time (half of it each way)."""

    def __init__(self, target: int, rate: float, rtt: float, log_path: Path) -> None:
        self.rate, self.rtt = rate, rtt
        super().__init__(
            [sys.executable, str(HERE), str(target), repr(rate), repr(rtt / 2)], log_path
        )

    def reset(self) -> None:
        if self.ask("reset") != "ok":
            raise RuntimeError("the proxy did not reset")

    def counts(self) -> dict[str, int]:
        """Bytes up (client to server) and down, and connections, since the last reset."""
        return json.loads(self.ask("stats"))


async def _direction(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    rate: float,
    delay: float,
    counts: dict[str, int],
    key: str,
) -> None:
    """Carry bytes one way, each burst leaving at the link's rate and arriving `delay`
    later; at most BUFFER bytes held."""
    queue: deque[tuple[float, bytes]] = deque()
    held = 0
    room = asyncio.Event()
    ready = asyncio.Event()
    done = False

    async def take() -> None:
        nonlocal held, done
        leaves = 0.0
        try:
            while data := await reader.read(CHUNK):
                while held + len(data) > BUFFER and held:
                    room.clear()
                    await room.wait()
                leaves = max(time.monotonic(), leaves) + len(data) / rate
                queue.append((leaves + delay, data))
                held += len(data)
                ready.set()
        except OSError:
            pass
        finally:
            done = True
            ready.set()

    async def give() -> None:
        nonlocal held
        try:
            while True:
                if not queue:
                    if done:
                        break
                    ready.clear()
                    await ready.wait()
                    continue
                due = queue[0][0]
                if due - time.monotonic() > SPIN:
                    await asyncio.sleep(due - time.monotonic() - SPIN)
                while time.monotonic() < due:  # the loop's timers are ~1 ms coarse
                    await asyncio.sleep(0)
                # every burst due by now goes at once
                now, sent = time.monotonic(), 0
                while queue and queue[0][0] <= now:
                    data = queue.popleft()[1]
                    writer.write(data)
                    sent += len(data)
                await writer.drain()
                held -= sent
                counts[key] += sent
                room.set()
        except OSError:
            pass
        finally:
            writer.close()

    await asyncio.gather(take(), give())


def serve_link(target: int, rate: float, delay: float) -> None:
    """Proxy loopback connections to `target` through a link of `rate` bytes/s and a one-way
    `delay` each way; answer the commands of stdin (see the module's docstring)."""
    counts = {"up": 0, "down": 0, "connections": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts["connections"] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _direction(reader, up_writer, rate, delay, counts, "up"),
            _direction(up_reader, writer, rate, delay, counts, "down"),
        )

    async def command(line: str) -> str:
        if line == "stats":
            return json.dumps(counts)
        if line == "reset":
            counts.update(up=0, down=0, connections=0)
            return "ok"
        return f"unknown command {line!r}"

    serve(handle, command)


if __name__ == "__main__":
    serve_link(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))
