"""Helpers for the safety test modules: raw HTTP access, error checks, config, memory probes.

Import the fixtures you need explicitly in a test module (``from safety_helpers import ...``):
they then live at module scope and do not leak into other test modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import psutil
import pytest
from tornado.httpclient import HTTPResponse
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from traitlets.config import Config

PREFIX = "h5grove"
FILE_ENDPOINTS = ("meta", "attr", "data", "stats", "paths")
ALL_ENDPOINTS = ("", *FILE_ENDPOINTS)

Params = Mapping[str, Any] | Iterable[tuple[str, Any]]


# --------------------------------------------------------------------------- config


@pytest.fixture
def extra_config() -> dict[str, Any]:
    """Extra traitlets config for one test; override with ``@pytest.mark.parametrize``."""
    return {}


@pytest.fixture
def jp_server_config(jp_server_config, extra_config):
    """The project's server config, with the extension enabled and ``extra_config`` merged in."""
    config = Config(jp_server_config)
    config.merge(Config({"ServerApp": {"jpserver_extensions": {"jupyter_h5grove": True}}}))
    config.merge(Config(extra_config))
    return config


# --------------------------------------------------------------------------- HTTP


def encode_query(params: Params | None = None, raw: str = "") -> str:
    """Query string from params (repeatable with a list of pairs) plus an already-encoded tail."""
    items = list(params.items()) if isinstance(params, Mapping) else list(params or [])
    parts = [urllib.parse.urlencode(items, doseq=True, quote_via=urllib.parse.quote)]
    parts.append(raw)
    return "&".join(p for p in parts if p)


def h5_path(base_url: str, endpoint: str, query: str = "") -> str:
    """URL path (with query) of an endpoint of the extension under the server's base URL."""
    path = f"{base_url.rstrip('/')}/{PREFIX}/{endpoint}"
    return f"{path}?{query}" if query else path


@pytest.fixture
def h5get(http_server_client, jp_base_url, jp_auth_header):
    """Fetch an endpoint of the extension; never raises on HTTP errors (returns the response).

    ``await h5get("data", file="a.h5", path="/d", format="bin")``;
    ``await h5get("attr", params=[("attr_keys", "a"), ("attr_keys", "b")], file="a.h5")``;
    ``await h5get("meta", raw="file=%2e%2e%2Fx.h5")`` for an exact, already-encoded query.
    """

    async def get(
        endpoint: str = "",
        *,
        params: Params | None = None,
        raw: str = "",
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        body: bytes | None = None,
        timeout: float = 30,
        **kwargs: Any,
    ) -> HTTPResponse:
        items = list(params.items()) if isinstance(params, Mapping) else list(params or [])
        items += list(kwargs.items())
        url = h5_path(jp_base_url, endpoint, encode_query(items, raw))
        all_headers = dict(jp_auth_header)
        all_headers.update(headers or {})
        return await http_server_client.fetch(
            url,
            method=method,
            body=body,
            headers=all_headers,
            raise_error=False,
            request_timeout=timeout,
            connect_timeout=timeout,
        )

    return get


@pytest.fixture
def server_port(http_server_client) -> int:
    """TCP port of the in-process test server (loopback)."""
    return int(http_server_client.get_http_port())


@pytest.fixture
def big_client(jp_asyncio_loop):
    """A separate HTTP client allowing many parallel connections and huge streamed bodies."""
    client = SimpleAsyncHTTPClient(force_instance=True, max_clients=256, max_body_size=8 * 1024**3)
    yield client
    client.close()


def body_text(resp: HTTPResponse) -> str:
    """Response body as text, for messages."""
    return (resp.body or b"").decode("utf-8", errors="replace")


def describe(resp: HTTPResponse) -> str:
    """One-line summary of a response for assertion messages."""
    return f"{resp.code} {resp.headers.get('Content-Type', '')!r} {body_text(resp)[:400]!r}"


def assert_error(resp: HTTPResponse, *statuses: int) -> str:
    """Assert a clean 4xx: expected status, JSON {"message": str}, no traceback. Return message."""
    if statuses:
        assert resp.code in statuses, f"expected {statuses}, got {describe(resp)}"
    else:
        assert 400 <= resp.code < 500, f"expected a 4xx, got {describe(resp)}"
    assert "json" in resp.headers.get("Content-Type", ""), f"error is not JSON: {describe(resp)}"
    try:
        body = json.loads(resp.body)
    except ValueError:
        pytest.fail(f"error body is not valid JSON: {describe(resp)}")
    assert isinstance(body, dict), describe(resp)
    message = body.get("message")
    assert isinstance(message, str), f"no str message: {describe(resp)}"
    assert message.strip(), f"empty message: {describe(resp)}"
    assert message != "Unhandled error", f"unhandled exception behind: {describe(resp)}"
    assert not body.get("traceback"), f"traceback sent to client: {describe(resp)}"
    assert "Traceback (most recent call last)" not in body_text(resp), describe(resp)
    return message


def assert_ok_json(resp: HTTPResponse) -> Any:
    """Assert a 200 JSON answer and return the decoded body."""
    assert resp.code == 200, describe(resp)
    return json.loads(resp.body)


def assert_no_server_error(resp: HTTPResponse) -> None:
    """Assert no 5xx (599 = client-side timeout/connection failure, also a failure)."""
    assert resp.code < 500, describe(resp)
    if resp.code >= 400:
        assert_error(resp)


def assert_stats_equal(got: Mapping[str, Any], want: Mapping[str, Any], rel: float = 1e-6) -> None:
    """Stats equal to the oracle's (h5grove's get_array_stats) within floating-point tolerance."""
    assert set(got) >= set(want), (got, want)
    for key, expected in want.items():
        if expected is None:
            assert got[key] is None, (key, got, want)
        else:
            assert got[key] == pytest.approx(expected, rel=rel, abs=1e-9), (key, got, want)


# --------------------------------------------------------------------------- raw sockets


async def raw_http(
    port: int,
    target: str,
    headers: Mapping[str, str],
    *,
    read_body: int | None = None,
    timeout: float = 30,
    pause: float = 0,
) -> tuple[int, dict[str, str], bytes]:
    """Send one GET over a raw loopback socket, read the head and at most ``read_body`` bytes
    of the body (all of it when None, counted but discarded beyond 1 MB), stay connected
    without reading for ``pause`` seconds, then close.

    Returns (status, lowercased headers, first MB of body). The body length actually read is
    in headers["x-bytes-read"].
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        hdrs: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        kept = bytearray()
        n_read = 0
        deadline = time.monotonic() + timeout
        limit = read_body
        if limit is None and "content-length" in hdrs:
            limit = int(hdrs["content-length"])
        while limit is None or n_read < limit:
            want = 1 << 20 if limit is None else min(1 << 20, limit - n_read)
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"body not received within {timeout}s ({n_read} bytes read)"
            chunk = await asyncio.wait_for(reader.read(want), remaining)
            if not chunk:
                break
            n_read += len(chunk)
            if len(kept) < (1 << 20):
                kept += chunk[: (1 << 20) - len(kept)]
        hdrs["x-bytes-read"] = str(n_read)
        if pause:
            await asyncio.sleep(pause)
        return status, hdrs, bytes(kept)
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 5)


# --------------------------------------------------------------------------- memory


class PeakRSS:
    """Sample this process's RSS in a background thread; ``growth`` = peak - baseline (bytes).

    The test server runs in-process (pytest-jupyter), so this is the server's memory.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.baseline = 0
        self.peak = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRSS:
        self.baseline = self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


MB = 1024**2
