"""HDF5 work runs off the event loop: Jupyter keeps answering while a big request is served."""

from __future__ import annotations

import asyncio
import json
import os
import time

import h5py
import numpy as np
import pytest

SHAPE = (4096, 4096)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """64 MiB of float32, gzip-compressed: reading it takes a good fraction of a second
    (decompression), encoding it as JSON as long again. Written once per module."""
    rng = np.random.default_rng(0)
    data = (rng.random(SHAPE, dtype=np.float32) * 1000).round(1)
    path = tmp_path_factory.mktemp("big") / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=(64, 4096), compression="gzip", compression_opts=1)
    return path, data


@pytest.fixture
def big(big_file, jp_root_dir):
    """The big file, linked into this test's server root."""
    path, data = big_file
    os.link(path, jp_root_dir / "big.h5")
    return data


async def status_latencies(jp_fetch, task: asyncio.Task) -> list[float]:
    """Time /api/status requests, one after another, until `task` is done."""
    latencies = []
    while not task.done():
        start = time.perf_counter()
        response = await jp_fetch("api", "status")
        latencies.append(time.perf_counter() - start)
        assert response.code == 200
        await asyncio.sleep(0.01)
    return latencies


@pytest.mark.parametrize(
    ("params", "check"),
    [
        ({"format": "bin"}, lambda body, data: body == data.tobytes()),
        (
            {"selection": "0:2048"},
            lambda body, data: np.array_equal(np.array(json.loads(body), np.float32), data[:2048]),
        ),
        ({"format": "npy", "dtype": "safe"}, lambda body, data: len(body) == data.nbytes + 128),
    ],
    ids=["bin", "json", "npy"],
)
async def test_status_answers_during_big_read(api, jp_fetch, big, params, check) -> None:
    """While a ~1 s data request is in flight, /api/status answers within 0.2 s every time."""
    await jp_fetch("api", "status")  # warm up
    started = time.perf_counter()
    task = asyncio.ensure_future(api("data", file="big.h5", path="/x", **params))
    latencies = await status_latencies(jp_fetch, task)
    elapsed = time.perf_counter() - started
    response = task.result()
    assert response.code == 200, response.body[:200]
    assert check(response.body, big)
    assert elapsed > 0.3, "the request was too fast to show anything"
    assert len(latencies) >= 3, (elapsed, latencies)
    assert max(latencies) < 0.2, (elapsed, sorted(latencies)[-5:])
