"""Shared fixtures: a Jupyter server with the extension enabled, h5 files in its root, a client."""

from __future__ import annotations

import json
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import pytest
from jupyter_server.utils import url_path_join
from traitlets.config import Config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

PREFIX = "h5grove"
ORACLE = "h5grove-oracle"
"""Where h5grove 4.0.0's own tornado handlers are mounted by the `oracle` fixture."""

Params = Mapping[str, Any] | Iterable[tuple[str, Any]]


WORKER_MODES = {
    "processes": {},  # the default: worker processes
    "threads": {"H5GroveApp": {"worker_processes": 0}},
}
"""Config of each way to run the HDF5 work, for modules that test both."""


@pytest.fixture
def h5grove_config() -> dict[str, Any]:
    """Extra config for one test module or test (override to change traits)."""
    return {}


@pytest.fixture
def jp_server_config(h5grove_config: dict[str, Any]) -> Config:
    """Enable the extension (as installing the package does), plus per-test config."""
    config = Config({"ServerApp": {"jpserver_extensions": {"jupyter_h5grove": True}}})
    config.merge(Config(h5grove_config))
    return config


@pytest.fixture
def prefix(h5grove_config: dict[str, Any]) -> str:
    """The URL prefix the server under test uses."""
    return str(h5grove_config.get("H5GroveApp", {}).get("url_prefix", PREFIX)).strip("/")


@pytest.fixture
def write_h5(jp_root_dir: Path) -> Callable[..., Path]:
    """Factory writing an HDF5 file under the server root: write_h5("a.h5", build)."""

    def write(relative: str, build: Callable[[h5py.File], None], **kwargs: Any) -> Path:
        path = Path(jp_root_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w", **kwargs) as h5file:
            build(h5file)
        return path

    return write


def query_string(params: Params | None = None, raw: str = "") -> str:
    """Query string from a dict or (repeatable) pairs, plus an already-encoded tail."""
    items = list(params.items()) if isinstance(params, Mapping) else list(params or [])
    encoded = urllib.parse.urlencode(items, doseq=True, quote_via=urllib.parse.quote)
    return "&".join(part for part in (encoded, raw) if part)


@pytest.fixture
def api(http_server_client, jp_base_url: str, jp_auth_header: dict[str, str], prefix: str):
    """GET an endpoint; returns the response whatever its status.

    ``await api("meta", file="a.h5")``, ``await api("attr", [("attr_keys", "a")], file="a.h5")``,
    ``await api("meta", raw="file=%2e%2e/x.h5")``, ``await api("", method="HEAD")``.
    Like a browser, the client takes gzip and decodes it (``decompress=False``: it takes only
    what ``headers`` say, and keeps the body as sent).
    """

    async def fetch(
        endpoint: str = "",
        params: Params | None = None,
        *,
        raw: str = "",
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        trailing_slash: bool = False,
        decompress: bool = True,
        **kwargs: Any,
    ):
        items = list(params.items()) if isinstance(params, Mapping) else list(params or [])
        items += list(kwargs.items())
        path = f"{jp_base_url.rstrip('/')}/{prefix}/{endpoint}".rstrip("/")
        if trailing_slash:
            path += "/"
        query = query_string(items, raw)
        all_headers = {**jp_auth_header, **(headers or {})}
        return await http_server_client.fetch(
            f"{path}?{query}" if query else path,
            method=method,
            headers=all_headers,
            raise_error=False,
            request_timeout=60,
            decompress_response=decompress,
        )

    return fetch


def error_message(response: Any, *statuses: int) -> str:
    """Assert an error answer is JSON {"message": str} with one of `statuses`; return it."""
    assert response.code in statuses, (response.code, response.body[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    body = json.loads(response.body)
    assert set(body) == {"message"}, body
    assert isinstance(body["message"], str) and body["message"]
    return str(body["message"])


GZIP = {"Accept-Encoding": "gzip"}
"""The header of a client taking gzip (with ``api(..., decompress=False)``)."""


def gunzip(body: bytes) -> bytes:
    """The content of exactly one gzip member (browsers read no more): fails on anything
    else."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    content = decoder.decompress(body)
    assert decoder.eof and not decoder.unused_data, "not exactly one gzip member"
    return content


@pytest.fixture
def oracle(jp_web_app, jp_root_dir, jp_base_url):
    """Mount h5grove 4.0.0's tornado handlers over the same root, unauthenticated, test only."""
    from h5grove.tornado_utils import get_handlers

    base = url_path_join(jp_base_url, ORACLE)
    routes = [
        (base + route.rstrip("/"), cls, kw) for route, cls, kw in get_handlers(str(jp_root_dir))
    ]
    jp_web_app.add_handlers(".*$", routes)


@pytest.fixture
def both(http_server_client, jp_base_url, jp_auth_header, oracle, prefix):
    """Send one query to h5grove's handlers and to ours; return (theirs, ours), both
    uncompressed (test_http_caching.py shows compressed answers decode to the same)."""

    async def fetch(endpoint: str, pairs: Params, file: str, raw: str = ""):
        query = query_string(
            [("file", file), *(pairs.items() if isinstance(pairs, Mapping) else pairs)], raw
        )
        responses = []
        for where in (ORACLE, prefix):
            url = url_path_join(jp_base_url, where, endpoint) + "?" + query
            responses.append(
                await http_server_client.fetch(
                    url,
                    headers=jp_auth_header,
                    raise_error=False,
                    request_timeout=120,
                    decompress_response=False,  # no Accept-Encoding: bodies as h5grove's
                )
            )
        return responses

    return fetch


def pool_of(jp_serverapp: Any) -> Any:
    """The running extension's pool of worker processes."""
    from jupyter_h5grove.pool import ProcessPool

    (extension,) = jp_serverapp.extension_manager.extension_apps["jupyter_h5grove"]
    assert isinstance(extension.runner, ProcessPool)
    return extension.runner
