"""Big answers: bin/npy streamed block by block with a Content-Length, others refused with 413."""

from __future__ import annotations

import asyncio
import io
import json

import h5py
import numpy as np
import orjson
import pytest
from conftest import WORKER_MODES, error_message

from jupyter_h5grove.runners import ThreadRunner

MiB = 1024 * 1024
VALUES = np.arange(3 * MiB // 8, dtype=np.float64).reshape(384, 1024)


@pytest.fixture
def h5grove_config():
    """Small limits so a 3 MiB dataset is 'big'."""
    return {"H5GroveApp": {"stream_block_bytes": MiB, "max_response_bytes": 8 * MiB}}


@pytest.fixture
def big(write_h5):
    """3 MiB of float64 in 4 chunks, plus a big-endian float16 copy (converted by dtype=safe)."""

    def build(f):
        f.create_dataset("x", data=VALUES, chunks=(96, 1024), compression="gzip")
        f.create_dataset("half", data=(VALUES % 1000).astype(">f2"), chunks=(96, 1024))

    return write_h5("big.h5", build)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"format": "bin"}, lambda: VALUES.tobytes()),
        ({"format": "npy"}, lambda: npy(VALUES)),
        ({"format": "npy", "flatten": "true"}, lambda: npy(VALUES.ravel())),
        ({"format": "bin", "selection": "::2, 1:"}, lambda: VALUES[::2, 1:].tobytes()),
        ({"format": "npy", "selection": "10:300, ::3"}, lambda: npy(VALUES[10:300, ::3])),
    ],
    ids=["bin", "npy", "npy-flat", "bin-sel", "npy-sel"],
)
async def test_streamed_equals_whole(api, big, params, expected) -> None:
    """A streamed answer has the exact bytes and headers of the in-memory one."""
    response = await api("data", file="big.h5", path="/x", **params)
    assert response.code == 200, response.body[:200]
    assert response.body == expected()
    assert int(response.headers["Content-Length"]) == len(response.body)
    assert response.headers["Content-Type"] == "application/octet-stream"
    if params["format"] == "npy":
        assert response.headers["Content-Disposition"] == 'attachment; filename="data.npy"'


async def test_streamed_with_safe_dtype(api, big) -> None:
    """dtype=safe conversion (big-endian float16 -> little-endian float32) works per block."""
    response = await api("data", file="big.h5", path="/half", format="bin", dtype="safe")
    assert response.body == (VALUES % 1000).astype("<f2").astype("<f4").tobytes()


def npy(array: np.ndarray) -> bytes:
    """What np.save writes."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["json", "csv"])
async def test_text_over_budget_is_413(api, big, fmt: str) -> None:
    """Text answers over max_response_bytes are refused before reading, suggesting a selection."""
    message = error_message(await api("data", file="big.h5", path="/x", format=fmt), 413)
    assert "selection" in message
    small = await api("data", file="big.h5", path="/x", format=fmt, selection="0:2")
    assert small.code == 200
    if fmt == "json":
        assert json.loads(small.body) == VALUES[:2].tolist()


async def test_bad_request_still_422_when_big(api, big) -> None:
    """An invalid format or dtype on a big dataset is a 422, not a 413."""
    error_message(await api("data", file="big.h5", path="/x", format="xml"), 422)
    error_message(await api("data", file="big.h5", path="/x", format="bin", dtype="no"), 422)
    error_message(await api("data", file="big.h5", path="/x", format="bin", selection="9999"), 422)


async def test_stats_of_big_dataset(api, big) -> None:
    """Statistics need no budget: computed block by block."""
    stats = json.loads((await api("stats", file="big.h5", path="/x")).body)
    assert stats["min"] == 0.0 and stats["max"] == float(VALUES.max())
    assert stats["mean"] == pytest.approx(float(VALUES.mean()))


@pytest.mark.parametrize("h5grove_config", list(WORKER_MODES.values()), ids=list(WORKER_MODES))
async def test_client_leaving_mid_download(api, big, http_server_client, jp_base_url, jp_serverapp):
    """A client closing the connection mid-stream leaves the server healthy, file released."""
    port = http_server_client.get_http_port()
    token = jp_serverapp.identity_provider.token
    target = f"{jp_base_url}h5grove/data?file=big.h5&path=/x&format=bin"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = f"Host: 127.0.0.1:{port}\r\nAuthorization: token {token}"
    request = f"GET {target} HTTP/1.1\r\n{headers}\r\n\r\n"
    writer.write(request.encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    await reader.readexactly(100_000)
    writer.close()
    await asyncio.sleep(0.5)
    (extension,) = jp_serverapp.extension_manager.extension_apps["jupyter_h5grove"]
    runner = extension.runner
    if isinstance(runner, ThreadRunner):  # the file's lease was returned
        assert all(entry.users == 0 for entry in runner.service.files._entries.values())
    else:  # the worker closed the stream (and its lease) and is free
        assert all(not w.streams and not w.lock.locked() for w in runner.workers)
    response = await api("data", file="big.h5", path="/x", format="bin")
    assert response.body == VALUES.tobytes()


class TestChunkLimit:
    """Compressed chunks bigger than max_chunk_bytes are refused before reading."""

    @pytest.fixture
    def h5grove_config(self):
        """Chunks of `x` (768 KiB, gzip) are over the limit; `half` is not compressed."""
        return {"H5GroveApp": {"max_chunk_bytes": 64 * 1024}}

    @pytest.mark.parametrize("endpoint", ["data", "stats"])
    async def test_big_compressed_chunks_413(self, api, big, endpoint: str) -> None:
        """Even one value: HDF5 would inflate the whole chunk."""
        response = await api(endpoint, file="big.h5", path="/x", selection="0, 0:2")
        assert "max_chunk_bytes" in error_message(response, 413)

    async def test_virtual_dataset_judged_by_its_source(self, api, big, write_h5) -> None:
        """A VDS over the compressed dataset is refused the same way."""

        def build(f):
            layout = h5py.VirtualLayout(shape=VALUES.shape, dtype="f8")
            layout[:] = h5py.VirtualSource("big.h5", "x", shape=VALUES.shape)
            f.create_virtual_dataset("v", layout)

        write_h5("vds.h5", build)
        response = await api("data", file="vds.h5", path="/v", selection="0, 0:2")
        assert "max_chunk_bytes" in error_message(response, 413)

    async def test_uncompressed_chunks_served(self, api, big) -> None:
        """Unfiltered chunks are read partially by HDF5: no limit applies."""
        response = await api("data", file="big.h5", path="/half", selection="0, 0:2")
        assert response.body == b"[0.0,1.0]"

    async def test_metadata_still_served(self, api, big) -> None:
        """Only reads are refused."""
        assert (await api("meta", file="big.h5", path="/x")).code == 200


@pytest.mark.parametrize("h5grove_config", list(WORKER_MODES.values()), ids=list(WORKER_MODES))
async def test_keep_alive_answers_are_framed_exactly(
    api, big, http_server_client, jp_base_url, jp_serverapp, monkeypatch
) -> None:
    """Bodies sent as array views, JSON pieces (threads: the block sizes are patched) or
    shared memory (processes) keep exact lengths over one connection."""
    monkeypatch.setattr("jupyter_h5grove.encoders.JSON_WHOLE_ITEMS", 10_000)  # JSON in pieces
    monkeypatch.setattr("jupyter_h5grove.encoders.JSON_BLOCK_ITEMS", 10_000)
    port = http_server_client.get_http_port()
    token = jp_serverapp.identity_provider.token
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    cases = [
        ("format=bin&selection=0:64", VALUES[:64].tobytes()),  # in memory, > 64 KiB
        ("format=npy&selection=0:64", npy(VALUES[:64])),
        ("selection=0:64", orjson.dumps(VALUES[:64], option=orjson.OPT_SERIALIZE_NUMPY)),
        ("format=bin", VALUES.tobytes()),  # streamed
        ("format=bin&selection=0,0:4", VALUES[0, :4].tobytes()),  # small: one write
    ]
    try:
        for query, expected in cases * 2:
            target = f"{jp_base_url}h5grove/data?file=big.h5&path=/x&{query}"
            headers = f"Host: 127.0.0.1:{port}\r\nAuthorization: token {token}"
            writer.write(f"GET {target} HTTP/1.1\r\n{headers}\r\n\r\n".encode())
            await writer.drain()
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            assert " 200 " in head.split("\r\n")[0], head
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            assert length == len(expected)
            assert await reader.readexactly(length) == expected, query
    finally:
        writer.close()


class TestBlockOverBudget:
    """stream_block_bytes > max_response_bytes: bin/npy answers between the two are streamed."""

    @pytest.fixture
    def h5grove_config(self):
        """A budget smaller than one stream block."""
        return {"H5GroveApp": {"stream_block_bytes": 4096, "max_response_bytes": 1000}}

    @pytest.mark.parametrize("fmt", ["bin", "npy"])
    async def test_streamed_not_refused(self, api, big, fmt: str) -> None:
        """2,000 bytes: over the budget, under a block, and streamable: served, not 413."""
        response = await api("data", file="big.h5", path="/x", format=fmt, selection="0,0:250")
        assert response.code == 200, response.body[:200]
        expected = VALUES[0, :250]
        assert response.body == (expected.tobytes() if fmt == "bin" else npy(expected))
        assert int(response.headers["Content-Length"]) == len(response.body)

    async def test_json_still_refused(self, api, big) -> None:
        """The same selection as JSON cannot be streamed: 413."""
        response = await api("data", file="big.h5", path="/x", selection="0,0:250")
        assert "selection" in error_message(response, 413)


class TestCompressedResponses:
    """With tornado's gzip transform configured, bodies go through it and stay exact."""

    @pytest.fixture
    def h5grove_config(self):
        """gzip on, and the module's small limits."""
        return {
            "ServerApp": {"tornado_settings": {"compress_response": True}},
            "H5GroveApp": {"stream_block_bytes": MiB, "max_response_bytes": 8 * MiB},
        }

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"format": "bin", "selection": "0:64"}, lambda: VALUES[:64].tobytes()),
            ({"format": "bin"}, lambda: VALUES.tobytes()),
            ({"selection": "0:64"}, lambda: json.dumps(VALUES[:64].tolist()).encode()),
        ],
        ids=["bin", "bin-streamed", "json"],
    )
    async def test_gzip(self, api, big, params, expected) -> None:
        """Same bodies as without compression (the client inflates them)."""
        response = await api("data", {"path": "/x", "file": "big.h5"}, **params)
        assert response.code == 200, response.body[:200]
        if "format" in params:  # tornado gzips text and JSON only
            assert response.body == expected()
        else:
            assert response.headers.get("X-Consumed-Content-Encoding") == "gzip"
            assert json.loads(response.body) == json.loads(expected())
