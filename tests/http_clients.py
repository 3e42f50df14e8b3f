"""HTTP clients that run in processes of their own, so what they measure is the server alone.

The server under test runs in the test process (pytest-jupyter): a client living there shares
its event loop and its GIL, and receiving or parsing a big answer would count as a server
stall. Tests use :class:`StatusProbe` and :func:`download`, which run this file as a script:

    python http_clients.py probe URL HEADERS_JSON SECONDS
        GET URL every 20 ms; one JSON line [start, seconds, status] per answer (monotonic
        clock: on Linux one clock for every process) until stdin closes or SECONDS pass.
    python http_clients.py download URL HEADERS_JSON HASH
        GET URL once, reading the body in blocks and keeping none of it (hashing it if HASH
        is 1); one JSON line {"status", "headers", "length", "sha256", "head", "start", "end"}
        ("head": the first 64 bytes, hex).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import select
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

PROBE_INTERVAL = 0.02
BLOCK = 1 << 20
HEAD_BYTES = 64

Sample = tuple[float, float, int]
"""One probe answer: (start, seconds, status)."""


# --------------------------------------------------------------------------- in the child


def _connect(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection to the URL's host, and the request target."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout), target


def _probe(url: str, headers: dict[str, str], seconds: float) -> None:
    """Time GETs of `url` until stdin closes (the test is done) or `seconds` pass."""
    connection, target = _connect(url, timeout=60)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.monotonic()
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        response.read()
        print(json.dumps([start, time.monotonic() - start, response.status]), flush=True)
        readable, _, _ = select.select([sys.stdin], [], [], PROBE_INTERVAL)
        if readable and not sys.stdin.readline():
            break  # stdin closed: stop
    connection.close()


def _download(url: str, headers: dict[str, str], hash_body: bool) -> None:
    """GET `url` once, reading the body block by block."""
    connection, target = _connect(url, timeout=300)
    start = time.monotonic()
    connection.request("GET", target, headers=headers)
    response = connection.getresponse()
    digest = hashlib.sha256()
    head = b""
    length = 0
    while block := response.read(BLOCK):
        if hash_body:
            digest.update(block)
        if len(head) < HEAD_BYTES:
            head += block[: HEAD_BYTES - len(head)]
        length += len(block)
    end = time.monotonic()
    connection.close()
    result = {
        "status": response.status,
        "headers": {key.lower(): value for key, value in response.getheaders()},
        "length": length,
        "sha256": digest.hexdigest() if hash_body else None,
        "head": head.hex(),
        "start": start,
        "end": end,
    }
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- in the test


async def _start(*args: str) -> asyncio.subprocess.Process:
    """Run this file as a client process."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def download(
    url: str, headers: Mapping[str, str], *, hash_body: bool = True, timeout: float = 300
) -> dict[str, Any]:
    """GET `url` from another process; the result of the child (see the module docstring)."""
    child = await _start("download", url, json.dumps(dict(headers)), "1" if hash_body else "0")
    try:
        out, _ = await asyncio.wait_for(child.communicate(), timeout)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    return dict(json.loads(out))


class StatusProbe:
    """Answers of a URL polled every 20 ms from another process, while the probe is open."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def answered_within(self, start: float, end: float) -> list[Sample]:
        """Answers whose request started and ended within [start, end]."""
        return [s for s in self.samples if start <= s[0] and s[0] + s[1] <= end]

    def started_within(self, start: float, end: float) -> list[Sample]:
        """Answers whose request started within [start, end]."""
        return [s for s in self.samples if start <= s[0] <= end]


@contextlib.asynccontextmanager
async def status_probe(
    url: str, headers: Mapping[str, str], seconds: float = 600
) -> AsyncIterator[StatusProbe]:
    """Poll `url` from another process while the block runs; stop and reap it after."""
    probe = StatusProbe()
    child = await _start("probe", url, json.dumps(dict(headers)), str(seconds))

    async def collect() -> None:
        assert child.stdout is not None
        while line := await child.stdout.readline():
            probe.samples.append(tuple(json.loads(line)))  # type: ignore[arg-type]

    reader = asyncio.ensure_future(collect())
    try:
        for _ in range(300):  # the first answer, within 30 s
            if probe.samples or reader.done():
                break
            await asyncio.sleep(0.1)
        assert probe.samples, f"the probe got no answer from {url}"
        yield probe
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 30)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        await asyncio.wait_for(reader, 10)


if __name__ == "__main__":
    command, url, raw_headers, argument = sys.argv[1:]
    if command == "probe":
        _probe(url, json.loads(raw_headers), float(argument))
    else:
        _download(url, json.loads(raw_headers), argument == "1")
