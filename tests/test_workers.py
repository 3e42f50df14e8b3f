"""Worker processes: started with the first request, killed and replaced when stuck or dead,
never outliving the server, never taking it down (issue 11).

Real worker processes of a real Jupyter server; the tests signal them as an administrator, a
crash or the kernel's OOM killer would.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import orjson
import psutil
import pytest
from conftest import GZIP, error_message, gunzip, pool_of
from remote_servers import free_port
from test_config import jupyter_server_command

from jupyter_h5grove.pool import ProcessPool

SLOW_SHAPE = (2048, 1024)
SLOW_CHUNKS = (1, 2)
"""A million chunks: statistics take seconds (HDF5 visits every chunk), whatever the CPU."""


@pytest.fixture(scope="module")
def slow_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset of a million chunks, written once per module."""
    path = tmp_path_factory.mktemp("slow") / "slow.h5"
    with h5py.File(path, "w") as f:
        data = np.arange(np.prod(SLOW_SHAPE), dtype=np.float32).reshape(SLOW_SHAPE)
        f.create_dataset("x", data=data, chunks=SLOW_CHUNKS)
    return path


@pytest.fixture
def files(jp_root_dir: Path, slow_file: Path) -> Path:
    """root/slow.h5 (linked) and two small files."""
    os.link(slow_file, jp_root_dir / "slow.h5")
    for name in ("a.h5", "b.h5"):
        with h5py.File(jp_root_dir / name, "w") as f:
            f["x"] = np.arange(10.0)
    return jp_root_dir


async def busy_worker(pool: ProcessPool, timeout: float = 30) -> int:
    """The pid of a worker running a call, once there is one (bounded wait)."""
    for _ in range(int(timeout / 0.01)):
        for worker in pool.workers:
            if worker.lock.locked():
                return worker.pid
        await asyncio.sleep(0.01)
    raise AssertionError("no worker became busy")


async def gone(pid: int, timeout: float = 15) -> bool:
    """Whether process `pid` has exited (a zombie has: only its parent's wait() is missing),
    within `timeout` seconds."""
    for _ in range(int(timeout / 0.05)):
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_workers_start_with_the_first_request(api, files, jp_serverapp) -> None:
    """No worker before the first HDF5 request; then children of the server, named in `ps`."""
    pool = pool_of(jp_serverapp)
    assert (await api("")).code == 200
    assert pool.pids == []
    assert json.loads((await api("data", file="a.h5", path="/x")).body) == list(range(10))
    (pid,) = pool.pids
    worker = psutil.Process(pid)
    assert worker.ppid() == os.getpid()
    assert "jupyter_h5grove" in " ".join(worker.cmdline())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["killed", "segfault"])
async def test_dead_worker_502_and_replaced(api, files, jp_serverapp, jp_fetch, sig) -> None:
    """A worker dying mid-request: that request answers 502 JSON; the server and the next
    request for the same file carry on, with a new worker."""
    pool = pool_of(jp_serverapp)
    stuck = asyncio.ensure_future(api("stats", file="slow.h5", path="/x"))
    pid = await busy_worker(pool)
    os.kill(pid, sig)
    message = error_message(await stuck, 502)
    assert "died" in message, message
    assert (await jp_fetch("api", "status")).code == 200
    assert json.loads((await api("data", file="a.h5", path="/x")).body) == list(range(10))
    stats = json.loads((await api("stats", file="slow.h5", path="/x", selection="0")).body)
    assert stats["max"] == SLOW_SHAPE[1] - 1
    assert pid not in pool.pids
    assert await gone(pid)


@pytest.mark.parametrize(
    "h5grove_config", [{"H5GroveApp": {"worker_processes": 2, "request_timeout": 3}}]
)
async def test_stuck_worker_504_while_others_serve(api, files, jp_serverapp) -> None:
    """A worker that stops answering (SIGSTOP, as a read stuck on a network file system):
    its request answers 504 after request_timeout, naming it, and the worker is killed;
    meanwhile requests for other files are served by the other worker."""
    pool = pool_of(jp_serverapp)
    stuck = asyncio.ensure_future(api("stats", file="slow.h5", path="/x"))
    pid = await busy_worker(pool)
    os.kill(pid, signal.SIGSTOP)
    served = 0
    while not stuck.done():  # bounded: request_timeout (3 s) ends it
        response = await api("data", file="a.h5", path="/x", selection="0:2")
        assert (response.code, response.body) == (200, b"[0.0,1.0]")
        served += 1
    assert served >= 2, "other files were not served while the worker was stuck"
    message = error_message(stuck.result(), 504)
    assert "request_timeout" in message, message
    assert await gone(pid)
    assert (await api("stats", file="a.h5", path="/x")).code == 200


@pytest.mark.parametrize("h5grove_config", [{"H5GroveApp": {"request_timeout": 1}}])
async def test_million_chunk_stats_times_out(api, files, jp_serverapp) -> None:
    """The pathological stats (a million chunks) is cut at request_timeout with a 504; its
    worker is killed; the next request works."""
    pool = pool_of(jp_serverapp)
    assert (await api("meta", file="slow.h5", path="/x")).code == 200
    (pid,) = pool.pids
    assert "request_timeout" in error_message(await api("stats", file="slow.h5", path="/x"), 504)
    assert await gone(pid)
    assert (await api("meta", file="slow.h5", path="/x")).code == 200


@pytest.mark.parametrize("h5grove_config", [{"H5GroveApp": {"worker_processes": 2}}])
async def test_busy_worker_does_not_hold_up_other_files(api, files, jp_serverapp) -> None:
    """While one worker runs a long request, another serves the rest; afterwards each file
    goes back to the worker that served it (whose open files are warm)."""
    pool = pool_of(jp_serverapp)
    slow = asyncio.ensure_future(api("stats", file="slow.h5", path="/x"))
    busy = await busy_worker(pool)
    other = await api("data", file="a.h5", path="/x")
    assert other.code == 200
    assert not slow.done(), "the slow request was too fast to show anything"
    assert (await slow).code == 200
    (free,) = [w for w in pool.workers if w.pid != busy]
    assert "a.h5" in free.recent
    before = free.last_used
    assert (await api("meta", file="a.h5", path="/x")).code == 200
    assert free.last_used > before


SHARED = (np.arange(1024 * 2048, dtype=np.float32).reshape(1024, 2048) % 977) / 8
"""8 MiB of float32 in gzip chunks of 128 x 256: eight chunk rows to share."""


def npy_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


SHARED_QUERIES = [
    ({"format": "bin"}, lambda a: a.tobytes()),
    ({"format": "npy"}, npy_of),
    ({"format": "bin", "dtype": "safe", "path": "/be"}, lambda a: a.tobytes()),
    ({"format": "npy", "path": "/be"}, lambda a: npy_of(a.astype(">f4"))),
    ({"format": "bin", "selection": "1:1024:3, 0:2048:2"}, lambda a: a[1:1024:3, 0:2048:2]),
    (
        {"format": "bin", "selection": "5:1020, 3:2000", "flatten": "true"},
        lambda a: a[5:1020, 3:2000],
    ),
    ({}, lambda a: orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY)),
    ({"flatten": "true"}, lambda a: orjson.dumps(a.ravel(), option=orjson.OPT_SERIALIZE_NUMPY)),
    (
        {"selection": "::2,10:2000", "dtype": "safe", "path": "/be"},
        lambda a: orjson.dumps(
            np.ascontiguousarray(a[::2, 10:2000]), option=orjson.OPT_SERIALIZE_NUMPY
        ),
    ),
]


@pytest.mark.parametrize("h5grove_config", [{"H5GroveApp": {"worker_processes": 2}}])
@pytest.mark.parametrize(
    ("params", "expected"), SHARED_QUERIES, ids=[str(p) for p, _ in SHARED_QUERIES]
)
async def test_answer_shared_by_two_workers(
    api, files, jp_serverapp, write_h5, params, expected
) -> None:
    """A big answer of compressed chunks (bin, npy) or numbers (JSON), read in bands by both
    workers and put together: the same bytes as read whole, whatever the selection, dtype,
    byte order or flatten; JSON compressed in bands is one gzip stream."""

    def build(f: h5py.File) -> None:
        for name, dtype in (("le", "<f4"), ("be", ">f4")):
            f.create_dataset(name, data=SHARED.astype(dtype), chunks=(128, 256), compression=4)

    write_h5("shared.h5", build)
    pool = pool_of(jp_serverapp)
    slow = asyncio.ensure_future(api("stats", file="slow.h5", path="/x", selection="0:64"))
    await busy_worker(pool)
    assert (await api("meta", file="a.h5", path="/x")).code == 200  # a second worker starts
    assert (await slow).code == 200 and len(pool.pids) == 2
    started = time.monotonic()
    query = {"path": "/le", **params}
    response = await api("data", file="shared.h5", **query)
    assert response.code == 200, response.body[:300]
    want = expected(SHARED)
    assert response.body == (want if isinstance(want, bytes) else want.tobytes())
    assert all(worker.last_used > started for worker in pool.workers), "one worker did it all"
    if "format" not in params:  # JSON in bands, compressed in pieces: one gzip member
        raw = await api("data", file="shared.h5", decompress=False, headers=GZIP, **query)
        assert raw.headers["Content-Encoding"] == "gzip"
        assert gunzip(raw.body) == response.body


@pytest.mark.parametrize("h5grove_config", [{"H5GroveApp": {"worker_idle_timeout": 0.5}}])
async def test_idle_workers_stop(api, files, jp_serverapp) -> None:
    """An idle worker stops after worker_idle_timeout; the next request starts another."""
    pool = pool_of(jp_serverapp)
    assert (await api("meta", file="a.h5", path="/x")).code == 200
    (pid,) = pool.pids
    assert await gone(pid)
    assert pool.pids == []
    assert (await api("meta", file="a.h5", path="/x")).code == 200
    assert len(pool.pids) == 1


@pytest.mark.parametrize(
    "h5grove_config",
    [{"H5GroveApp": {"max_response_bytes": 1 << 20, "stream_block_bytes": 1 << 20}}],
)
async def test_worker_dying_mid_stream(
    files, jp_serverapp, http_server_client, jp_base_url, jp_auth_header, api
) -> None:
    """A worker killed while streaming: the download is cut short (its headers were sent),
    the server stays healthy and serves the file again."""
    pool = pool_of(jp_serverapp)
    port = http_server_client.get_http_port()
    target = f"{jp_base_url}h5grove/data?file=slow.h5&path=/x&format=bin"
    auth = "".join(f"{k}: {v}\r\n" for k, v in jp_auth_header.items())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n"
        writer.write(request.encode())
        await writer.drain()
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)).decode().lower()
        assert " 200 " in head.split("\r\n")[0], head
        length = int(head.split("content-length:")[1].split("\r\n")[0])
        (pid,) = pool.pids
        os.kill(pid, signal.SIGKILL)
        received = 0
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 60):
            received += len(chunk)
        assert received < length
    finally:
        writer.close()
    assert await gone(pid)
    response = await api("data", file="slow.h5", path="/x", format="bin", selection="0:2")
    assert response.body == np.arange(2 * 1024, dtype=np.float32).tobytes()


def start_server(root: Path, port: int, token: str) -> subprocess.Popen:
    """A Jupyter server process serving `root` on loopback with two worker processes."""
    command = jupyter_server_command(root, port, token, "--H5GroveApp.worker_processes=2")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def workers_of(server: subprocess.Popen, expected: int) -> list[int]:
    """Pids of the server's worker processes, once there are `expected` (bounded wait)."""
    for _ in range(600):
        children = psutil.Process(server.pid).children()
        found = [c.pid for c in children if "jupyter_h5grove.worker" in " ".join(c.cmdline())]
        if len(found) >= expected:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("the workers did not start")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
async def test_no_orphan_workers(tmp_path: Path, how: signal.Signals) -> None:
    """When the server stops, or is killed with SIGKILL, its workers exit within seconds, even
    one that is stuck (stopped) and cannot notice."""
    from http_clients import download

    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = np.arange(4)
    port, token = free_port(), "test-token-local-only"
    server = start_server(tmp_path, port, token)
    try:
        for _ in range(600):  # until it listens (bounded: 60 s)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        url = f"http://127.0.0.1:{port}/h5grove/meta?file=a.h5&path=/x"
        result = await download(url, {"Authorization": f"token {token}"}, timeout=60)
        assert result["status"] == 200, result
        workers = await workers_of(server, 1)
        os.kill(workers[0], signal.SIGSTOP)  # stuck: it cannot notice the server is gone
        server.send_signal(how)
        server.wait(30)
        for pid in workers:
            assert await gone(pid, timeout=20), f"worker {pid} outlived the server"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)
