"""The store of the remote benchmark (issue 12): moto's S3 server on loopback, and proxies in
front of it that delay each HTTP request and count the requests and the bytes.

- :func:`start_moto`: ``python -m moto.server`` on a free loopback port.
- :class:`DelayProxy`: this file run as a script, ``python remote_store.py PORT DELAY_S``: a
  TCP proxy to the store's port. Each burst of bytes from a client that starts with an HTTP
  method token (``GET``, ``HEAD``...) is one request: counted, noted (request line and
  ``Range`` header) and held DELAY_S seconds before it is forwarded, as a store that far
  away would answer it later (connection set-up is not delayed). The bytes the store sends
  back are counted as they pass (HTTP headers included). Connections are proxied
  concurrently: requests on different connections wait their delay at the same time.

The proxy is a ``proxy.ProxyProcess``: it prints ``listening PORT`` once it accepts
connections, then answers commands, one line each on its stdin: ``stats`` (a JSON line of the
counts since the last reset and the requests noted) and ``reset`` (``ok``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy import ProxyProcess
from proxy import serve as serve_proxy
from proxy import stop_process as _stop

HERE = Path(__file__).resolve()

KEY = "bench-key-for-local-moto"
SECRET = "bench-secret-for-local-moto"
"""Credentials of the local moto server only (it accepts any)."""

METHODS = tuple(
    m.encode() + b" " for m in ("GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH")
)
NOTED = 10_000
"""Requests noted between two resets, at most (the counts go on)."""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def start_moto(log_path: Path, timeout: float = 60) -> Iterator[int]:
    """moto's S3 server on loopback (its log in `log_path`); yields its port."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto's server exited ({process.returncode}): {log_path}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto's server does not listen after {timeout:.0f} s")
            time.sleep(0.1)
        yield port
    finally:
        _stop(process)


def s3_client(port: int, config: Any = None) -> Any:
    """A boto3 S3 client of the moto server (directly, not through a proxy; `config`: a
    botocore Config)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=config,
    )


@dataclass
class Counts:
    """What passed through a proxy since its last reset."""

    requests: int = 0
    received: int = 0  # bytes the store sent back
    sent: int = 0  # bytes sent to the store
    connections: int = 0
    noted: list[str] = field(default_factory=list)  # "METHOD path [bytes=a-b]", in order

    def methods(self) -> str:
        """The requests by kind, e.g. "1 HEAD, 2 GET (ranges)"."""
        kinds: dict[str, int] = {}
        for line in self.noted:
            parts = line.split()
            kind = parts[0] + (" (range)" if len(parts) > 2 else "")
            kinds[kind] = kinds.get(kind, 0) + 1
        return ", ".join(f"{n} {kind}" for kind, n in kinds.items()) or "none"


class DelayProxy(ProxyProcess):
    """A delaying, counting proxy process in front of the store's `target` port."""

    def __init__(self, target: int, delay_s: float, log_path: Path) -> None:
        self.delay_s = delay_s
        super().__init__([sys.executable, str(HERE), str(target), repr(delay_s)], log_path)

    def reset(self) -> None:
        """Zero the counts (and forget the requests noted)."""
        if self.ask("reset") != "ok":
            raise RuntimeError("the proxy did not reset")

    def counts(self) -> Counts:
        """The counts since the last reset."""
        return Counts(**json.loads(self.ask("stats")))


# --------------------------------------------------------------------------- as a script


def _note(data: bytes) -> str:
    """The request line of a request's first bytes, and its Range header if any."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    method, _, rest = head[0].decode("latin-1").partition(" ")
    path = rest.rsplit(" ", 1)[0]
    ranges = [
        line.split(b":", 1)[1].strip().decode("latin-1")
        for line in head[1:]
        if line.lower().startswith(b"range:")
    ]
    return " ".join([method, path, *ranges])


def serve(target: int, delay_s: float) -> None:
    """Proxy loopback connections to `target`, delaying and counting requests; answer the
    commands of stdin (see the module's docstring)."""
    counts = Counts()

    async def pipe(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        arrived: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """Copy one direction of a connection, each piece seen by `arrived` before it goes on."""
        try:
            while data := await reader.read(1 << 16):
                await arrived(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def request(data: bytes) -> None:
        """Client to store: each request held `delay_s` before it goes on."""
        if data.startswith(METHODS):
            counts.requests += 1
            if len(counts.noted) < NOTED:
                counts.noted.append(_note(data))
            if delay_s > 0:
                await asyncio.sleep(delay_s)
        counts.sent += len(data)

    async def answer(data: bytes) -> None:
        """Store to client: counted as it passes."""
        counts.received += len(data)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer, request), pipe(up_reader, writer, answer))

    async def command(line: str) -> str:
        nonlocal counts
        if line == "stats":
            return json.dumps(counts.__dict__)
        if line == "reset":
            counts = Counts()
            return "ok"
        return f"unknown command {line!r}"

    serve_proxy(handle, command)


if __name__ == "__main__":
    serve(int(sys.argv[1]), float(sys.argv[2]))
