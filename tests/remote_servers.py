"""Stores for the remote-data tests, each a real server process on loopback.

- :func:`start_moto`: moto's S3-compatible server (``python -m moto.server``).
- :func:`start_http`: a folder served over HTTP with byte ranges (Tornado's static file
  handler), plus redirects from a JSON map.
- :func:`start_proxy`: a TCP proxy in front of a store that counts connections and can hold
  them (a store that accepts and never answers), or, with no target, a tripwire listener.

Run as a script, this file is the HTTP server or the proxy:

    python remote_servers.py http PORT FOLDER REDIRECTS_JSON
    python remote_servers.py proxy PORT TARGET_PORT|- MODE       (MODE: forward or hold)

The proxy prints "connect" for every connection it accepts (the tests count the lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()

TEST_KEY = "test-key-for-local-moto"
TEST_SECRET = "test-secret-for-local-moto"
"""Credentials of the local moto server only (it accepts any)."""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until something listens on the port (the process must stay up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server on port {port} exited ({process.returncode})"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def stop(process: subprocess.Popen) -> None:
    """Stop a server process and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def serving(command: list[str], port: int, output: Any = None) -> Iterator[subprocess.Popen]:
    """Run a server process until the block ends, once it listens on `port`; its output
    goes to `output` (an open file, subprocess.PIPE, or nowhere)."""
    output = subprocess.DEVNULL if output is None else output
    errors = subprocess.STDOUT if output is not subprocess.PIPE else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=output, stderr=errors)
    try:
        wait_listening(port, process)
        yield process
    finally:
        stop(process)


@contextlib.contextmanager
def start_moto(log: Any = None) -> Iterator[int]:
    """moto's S3 server on loopback (its log to `log`, an open file); yields its port."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with serving(command, port, log):
        yield port


@contextlib.contextmanager
def start_http(folder: Path, redirects: dict[str, str] | None = None) -> Iterator[int]:
    """`folder` served over HTTP with byte ranges; yields the port."""
    port = free_port()
    arguments = ["http", str(port), str(folder), json.dumps(redirects or {})]
    with serving([sys.executable, str(HERE), *arguments], port):
        yield port


class Proxy:
    """A running proxy: its port, and how many connections it accepted so far."""

    def __init__(self, port: int, process: subprocess.Popen) -> None:
        self.port = port
        self.process = process
        self._connections = 0
        self._reader = threading.Thread(target=self._count, daemon=True)
        self._reader.start()

    def _count(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(b"connect"):
                self._connections += 1

    @property
    def connections(self) -> int:
        time.sleep(0.2)  # let lines printed a moment ago arrive (counts only grow)
        return self._connections


@contextlib.contextmanager
def start_proxy(target_port: int | None, mode: str = "forward") -> Iterator[Proxy]:
    """A counting proxy to `target_port` ("forward"), one that accepts and never answers
    ("hold"), or a tripwire with no target (counts, then holds)."""
    port = free_port()
    target = "-" if target_port is None else str(target_port)
    command = [sys.executable, str(HERE), "proxy", str(port), target, mode]
    with serving(command, port, subprocess.PIPE) as process:
        proxy = Proxy(port, process)
        time.sleep(0.3)
        proxy._connections = 0  # wait_listening's own probe does not count
        yield proxy


# --------------------------------------------------------------------------- as a script


def serve_http(port: int, folder: str, redirects: dict[str, str]) -> None:
    """Tornado's static file handler (ETag, Range) over `folder`, and redirects."""
    import tornado.web

    class Redirect(tornado.web.RequestHandler):
        def head(self, path: str) -> None:
            self.get(path)

        def get(self, path: str) -> None:
            self.redirect(redirects["/" + path], status=302)

    routes: list = [(rf"/({path.lstrip('/')})", Redirect) for path in redirects]
    routes.append((r"/(.*)", tornado.web.StaticFileHandler, {"path": folder}))

    async def main() -> None:
        tornado.web.Application(routes).listen(port, address="127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_proxy(port: int, target: int | None, mode: str) -> None:
    """Accept on `port`; forward to `target`, or hold connections open without a word."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        print("connect", flush=True)
        if mode == "hold" or target is None:
            await asyncio.sleep(3600)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


if __name__ == "__main__":
    kind, port_text, *rest = sys.argv[1:]
    if kind == "http":
        serve_http(int(port_text), rest[0], json.loads(rest[1]))
    else:
        serve_proxy(int(port_text), None if rest[0] == "-" else int(rest[0]), rest[1])
