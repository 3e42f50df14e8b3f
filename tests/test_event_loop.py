"""HDF5 work runs off the event loop: Jupyter keeps answering while big requests are served.

The server runs in the test process (pytest-jupyter); the `/api/status` probe and the big
downloads run in processes of their own (``http_clients``), so the test measures the server's
event loop, not the work of a client sharing it.
"""

from __future__ import annotations

import hashlib
import io
import os

import h5py
import numpy as np
import orjson
import pytest
from conftest import WORKER_MODES
from http_clients import download, status_probe
from jupyter_server.utils import url_path_join

SHAPE = (1024, 1024)
CHUNKS = (2, 2)
"""262,144 chunks: HDF5 takes most of a second to read them all here, whatever the CPU, while
the answer stays small (4 MiB), so the download lasts about as long as the HDF5 work."""

STATUS_LIMIT = 1.0
"""Slowest acceptable /api/status answer during a big read. Wide on purpose: the issue that
asked for this said "within a second", and on a shared 2-core machine a healthy server answers
in milliseconds but a busy neighbour can stall any process for a few hundred. The tight figure,
the p99 under load, is measured in benchmarks/ (the concurrency row)."""

MIN_ANSWERS = 5
"""Probe answers that must start and end within one download. A probe (every 20 ms) gets
dozens while a healthy server reads; an event loop blocked by the read answers it at most
once or twice per download, however short the read: so this, not a time limit, is what a
blocked loop fails."""

MAX_DOWNLOADS = 5
"""Downloads made at most to see one with MIN_ANSWERS (one is enough on a quiet machine)."""


@pytest.fixture(params=list(WORKER_MODES))
def h5grove_config(request) -> dict:
    """Worker processes and worker threads alike keep the event loop free."""
    return WORKER_MODES[request.param]


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """8 MiB of float32 in a million chunks, written once per module."""
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    path = tmp_path_factory.mktemp("big") / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=CHUNKS)
    return path, data


@pytest.fixture
def big(big_file, jp_root_dir):
    """The big file, linked into this test's server root."""
    path, data = big_file
    os.link(path, jp_root_dir / "big.h5")
    return data


def npy_bytes(array: np.ndarray) -> bytes:
    """What np.save writes."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


EXPECTED = {
    "bin": lambda data: data.tobytes(),
    "json": lambda data: orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
    "npy": lambda data: npy_bytes(data.astype("<f4")),
}
QUERIES = {
    "bin": "format=bin",
    "json": "format=json",
    "npy": "format=npy&dtype=safe",
}


@pytest.mark.parametrize("kind", list(QUERIES))
async def test_status_answers_during_big_read(
    http_server_client, jp_base_url, jp_auth_header, big, kind
) -> None:
    """While big data requests are served, /api/status answers every time, within a second."""
    status_url = http_server_client.get_url(url_path_join(jp_base_url, "api/status"))
    data_url = http_server_client.get_url(url_path_join(jp_base_url, "h5grove/data"))
    data_url += f"?file=big.h5&path=/x&{QUERIES[kind]}"
    expected = hashlib.sha256(EXPECTED[kind](big)).hexdigest()
    downloads: list[tuple[float, float]] = []
    async with status_probe(status_url, jp_auth_header) as probe:
        for _ in range(MAX_DOWNLOADS):
            result = await download(data_url, jp_auth_header)
            assert result["status"] == 200, result
            assert result["sha256"] == expected, f"wrong body ({result['length']} bytes)"
            downloads.append((result["start"], result["end"]))
            if len(probe.answered_within(*downloads[-1])) >= MIN_ANSWERS:
                break
    assert all(status == 200 for _, _, status in probe.samples), probe.samples
    counts = [len(probe.answered_within(*download)) for download in downloads]
    assert max(counts) >= MIN_ANSWERS, f"event loop blocked? {counts} answers in {downloads}"
    during = [s for download in downloads for s in probe.started_within(*download)]
    slowest = sorted(seconds for _, seconds, _ in during)[-5:]
    assert slowest[-1] < STATUS_LIMIT, slowest
