"""Limits: the server's memory stays bounded whatever is asked, big answers are refused (413)
before reading or streamed in blocks with a known Content-Length, stats of any size are computed
block by block, and Jupyter keeps answering meanwhile (issue 4)."""

# Fixtures imported from safety_helpers are module-local on purpose (they override
# jp_server_config for these modules only); tests take them as arguments, hence F811.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import io
import math
import resource
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest
import tifffile
from h5grove.content import create_content as oracle_content  # oracle only
from http_clients import StatusProbe, download, status_probe
from safety_helpers import (  # noqa: F401  (fixtures are used by name)
    MB,
    PeakRSS,
    assert_error,
    assert_ok_json,
    assert_stats_equal,
    big_client,
    describe,
    extra_config,
    h5_path,
    h5get,
    jp_server_config,
    raw_http,
    server_port,
)

HUGE_SHAPE = (24576, 32768)  # float32: 3 GiB declared, ~12 MB on disk
HUGE_BYTES = HUGE_SHAPE[0] * HUGE_SHAPE[1] * 4
CHUNK = (1024, 1024)
RSS_LIMIT = 512 * MB
REFUSAL_RSS_LIMIT = 128 * MB  # a refusal decided before reading allocates next to nothing
STATUS_LATENCY = 1.0
"""Slowest acceptable /api/status answer while a huge answer is served: wide on purpose (a
healthy server answers in milliseconds, a shared 2-core machine can stall any process for a
few hundred; a blocked event loop stalls for the whole read). The tight figure is measured in
benchmarks/."""

SMALL_BUDGET = {"H5GroveApp": {"max_response_bytes": 4096, "stream_block_bytes": 4096}}


@pytest.fixture
def memory_ceiling():
    """Safety net for the test machine: cap this process's address space ~10 GB above its
    current size, so a server that reads 3 GB into memory fails instead of being OOM-killed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    ceiling = psutil.Process().memory_info().vms + 10 * 1024**3
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def huge_expected_stats() -> dict[str, float]:
    """Stats of the huge dataset, computed exactly (it is zeros but for two chunks)."""
    n = HUGE_SHAPE[0] * HUGE_SHAPE[1] - 2  # NaN and +inf excluded, as h5grove does
    block = CHUNK[0] * CHUNK[1]
    total = 2.0 * block - 1.0 * block
    squares = 4.0 * block + 1.0 * block
    mean = total / n
    return {
        "strict_positive_min": 2.0,
        "positive_min": 0.0,
        "min": -1.0,
        "max": 2.0,
        "mean": mean,
        "std": math.sqrt(squares / n - mean * mean),
    }


@pytest.fixture
def huge(jp_root_dir: Path, memory_ceiling) -> Path:
    """root/huge.h5:/huge, 3 GiB of float32 declared; only 3 chunks written."""
    path = jp_root_dir / "huge.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("huge", shape=HUGE_SHAPE, dtype="f4", chunks=CHUNK, fillvalue=0)
        d[0 : CHUNK[0], 0 : CHUNK[1]] = 2.0
        d[CHUNK[0] : 2 * CHUNK[0], 0 : CHUNK[1]] = -1.0
        d[5000, 5000] = np.nan
        d[5000, 5001] = np.inf
        f.create_dataset("frame", shape=(4096, 4096), dtype="f4", chunks=(512, 4096), fillvalue=0)
        f["frame"][0, :4] = [1, 2, 3, 4]
    assert path.stat().st_size < 64 * MB
    return path


def status_url(http_server_client, jp_base_url: str) -> str:
    """Jupyter's /api/status, polled while big answers are served."""
    return str(http_server_client.get_url(f"{jp_base_url.rstrip('/')}/api/status"))


def assert_status_answered(probe: StatusProbe, start: float, end: float) -> None:
    """/api/status answered, and in time, while [start, end] was being served."""
    during = probe.started_within(start, end)
    assert during and all(status == 200 for _, _, status in during), during
    slowest = max(seconds for _, seconds, _ in during)
    assert slowest < STATUS_LATENCY, sorted(seconds for _, seconds, _ in during)[-5:]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"format": "json"}, id="json"),
        pytest.param({}, id="default-format"),
        pytest.param({"format": "json", "dtype": "safe", "flatten": "true"}, id="json-safe-flat"),
        pytest.param({"format": "csv"}, id="csv"),
        pytest.param({"format": "tiff"}, id="tiff"),
        pytest.param({"format": "json", "selection": "0:20000"}, id="json-big-selection"),
        pytest.param({"format": "csv", "selection": "::2,::2"}, id="csv-strided"),
    ],
)
async def test_huge_answer_refused_before_reading(h5get, huge, params):
    """A 3 GiB dataset asked whole in a non-streamable format: 413 that suggests a selection,
    answered fast and without the memory growing."""
    with PeakRSS() as rss:
        resp = await h5get("data", file="huge.h5", path="/huge", timeout=60, **params)
    message = assert_error(resp, 413)
    assert "selection" in message.lower(), message
    # Reading even a part of the 3 GiB would show here (no timing: RSS tells what was read).
    assert rss.growth < REFUSAL_RSS_LIMIT, f"RSS grew {rss.growth / MB:.0f} MB for a refusal"


async def test_default_budget_serves_a_whole_frame(
    huge, big_client, http_server_client, jp_base_url, jp_auth_header
):
    """The default budget serves H5Web's ordinary request, a whole 4096x4096 float32 frame."""
    expected = np.zeros((4096, 4096), "f4")
    expected[0, :4] = [1, 2, 3, 4]
    for fmt in ("bin", "npy", "tiff", "json"):
        query = f"file=huge.h5&path=/frame&format={fmt}&dtype=safe"
        url = http_server_client.get_url(h5_path(jp_base_url, "data", query))
        resp = await big_client.fetch(
            url, headers=jp_auth_header, request_timeout=120, raise_error=False
        )
        assert resp.code == 200, describe(resp)
        if fmt == "bin":
            np.testing.assert_array_equal(np.frombuffer(resp.body, "<f4"), expected.ravel())
        elif fmt == "npy":
            np.testing.assert_array_equal(np.load(io.BytesIO(resp.body)), expected)
        elif fmt == "tiff":
            np.testing.assert_array_equal(tifffile.imread(io.BytesIO(resp.body)), expected)
        else:  # parsing 16M numbers in Python takes seconds: check the ends and the size
            assert resp.body.startswith(b"[[1.0,2.0,3.0,4.0,0.0,"), resp.body[:50]
            assert resp.body.endswith(b",0.0]]") and resp.body.count(b"],[") == 4095


# --------------------------------------------------------------------------- streaming


async def test_huge_bin_streamed_in_bounded_memory(
    huge, http_server_client, jp_base_url, jp_auth_header
):
    """3 GiB as bin: 413, or streamed with the right Content-Length and bytes, RSS < 512 MB,
    /api/status answering within 1 s meanwhile (client and probe in processes of their own)."""
    target = h5_path(jp_base_url, "data", "file=huge.h5&path=/huge&format=bin")
    url = http_server_client.get_url(target)
    async with status_probe(status_url(http_server_client, jp_base_url), jp_auth_header) as probe:
        with PeakRSS() as rss:
            result = await download(url, jp_auth_header, hash_body=False, timeout=240)
    assert rss.growth < RSS_LIMIT, f"RSS grew {rss.growth / MB:.0f} MB"
    head = bytes.fromhex(result["head"])
    if result["status"] == 413:
        assert b"selection" in head.lower()
        return
    assert result["status"] == 200, result
    assert result["headers"].get("content-length") == str(HUGE_BYTES), result
    assert result["length"] == HUGE_BYTES, result
    first = np.frombuffer(head[:16], "<f4")
    assert first.tolist() == [2.0] * 4, first  # row 0 starts in the chunk filled with 2.0
    assert_status_answered(probe, result["start"], result["end"])


async def test_huge_npy_streamed_header_then_disconnect(
    huge, server_port, jp_base_url, jp_auth_header, h5get
):
    """3 GiB as npy: 413, or a streamed answer whose Content-Length and header describe the
    whole array; the client leaves after 32 MB and the server stays healthy and bounded."""
    target = h5_path(jp_base_url, "data", "file=huge.h5&path=/huge&format=npy")
    with PeakRSS() as rss:
        status, headers, head = await raw_http(
            server_port, target, jp_auth_header, read_body=32 * MB, timeout=120
        )
        await asyncio.sleep(1)  # let the server notice the disconnection
        resp = await h5get("meta", file="huge.h5", path="/huge")
    assert rss.growth < RSS_LIMIT, f"RSS grew {rss.growth / MB:.0f} MB"
    assert resp.code == 200, describe(resp)
    if status == 413:
        return
    assert status == 200, (status, headers, head[:200])
    version = np.lib.format.read_magic(io.BytesIO(head))
    fh = io.BytesIO(head)
    np.lib.format.read_magic(fh)
    shape, fortran, dtype = (
        np.lib.format.read_array_header_1_0(fh)
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0(fh)
    )
    assert (shape, fortran, np.dtype(dtype)) == (HUGE_SHAPE, False, np.dtype("<f4"))
    assert int(headers["content-length"]) == fh.tell() + HUGE_BYTES, headers


async def test_slow_reader_does_not_make_the_server_buffer(
    huge, server_port, jp_base_url, jp_auth_header, h5get
):
    """A client that stops reading a 3 GiB bin download: the server waits for the socket
    instead of queueing the rest of the answer in memory."""
    target = h5_path(jp_base_url, "data", "file=huge.h5&path=/huge&format=bin")
    with PeakRSS() as rss:
        status, _, _ = await raw_http(
            server_port, target, jp_auth_header, read_body=1 * MB, timeout=60, pause=4
        )
    assert rss.growth < RSS_LIMIT, f"RSS grew {rss.growth / MB:.0f} MB while the client paused"
    assert status in (200, 413), status
    assert (await h5get("", timeout=10)).code == 200


# --------------------------------------------------------------------------- stats


async def test_huge_stats_bounded_and_correct(
    h5get, huge, http_server_client, jp_base_url, jp_auth_header
):
    """stats of 3 GiB: exact values (NaN/inf excluded), RSS < 512 MB, /api/status < 1 s."""
    async with status_probe(status_url(http_server_client, jp_base_url), jp_auth_header) as probe:
        with PeakRSS() as rss:
            start = time.monotonic()
            resp = await h5get("stats", file="huge.h5", path="/huge", timeout=240)
            end = time.monotonic()
    stats = assert_ok_json(resp)
    assert rss.growth < RSS_LIMIT, f"RSS grew {rss.growth / MB:.0f} MB"
    expected = huge_expected_stats()
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value, rel=1e-5, abs=1e-12), (key, stats, expected)
    assert_status_answered(probe, start, end)


async def test_stats_selection_of_huge(h5get, huge):
    """stats of a selection of the huge dataset covers only that selection."""
    stats = assert_ok_json(
        await h5get("stats", file="huge.h5", path="/huge", selection="0:2048,0:1024")
    )
    assert stats["min"] == -1.0 and stats["max"] == 2.0
    assert stats["mean"] == pytest.approx(0.5)
    assert stats["std"] == pytest.approx(1.5)
    assert stats["strict_positive_min"] == 2.0 and stats["positive_min"] == 2.0


# --------------------------------------------------------------------------- small budget


@pytest.fixture
def small(jp_root_dir: Path) -> Path:
    """Datasets well above a 4 KiB budget, for cheap streaming and refusal checks."""
    path = jp_root_dir / "small.h5"
    with h5py.File(path, "w") as f:
        f["f8"] = np.arange(10000, dtype="f8").reshape(100, 100) / 7
        f.create_dataset("chunked", data=np.arange(30000, dtype="i4").reshape(3, 100, 100),
                         chunks=(1, 7, 13), compression="gzip")  # fmt: skip
        f["f2"] = (np.arange(5000, dtype="f2") / 3).reshape(50, 100)
        f["be"] = np.arange(5000, dtype=">i8").reshape(50, 100) - 2500
        f["vstr"] = np.array([f"s{i}" for i in range(1000)], dtype=h5py.string_dtype())
        g = f.create_group("many")
        for i in range(300):
            g.attrs[f"attr_{i:04d}"] = np.arange(10)
        f["cmp"] = COMPOUND
    for i in range(3):  # three source files behind one virtual dataset
        with h5py.File(jp_root_dir / f"part{i}.h5", "w") as f:
            f.create_dataset("p", data=VDS_DATA[i * 100 : (i + 1) * 100], chunks=(9, 11))
    with h5py.File(jp_root_dir / "small.h5", "a") as f:
        layout = h5py.VirtualLayout(shape=VDS_DATA.shape, dtype="i4")
        for i in range(3):
            layout[i * 100 : (i + 1) * 100] = h5py.VirtualSource(f"part{i}.h5", "p", (100, 100))
        f.create_virtual_dataset("vds", layout, fillvalue=-1)
    return path


COMPOUND = np.array(
    [(i, i / 3, i % 7) for i in range(1000)], dtype=[("a", "<i4"), ("b", "<f8"), ("c", "u1")]
)
VDS_DATA = np.arange(30000, dtype="i4").reshape(300, 100) * 3


BUDGET_CASES = [
    ("/f8", None, None),
    ("/f8", "0:100:3,1:50:7", None),
    ("/f8", "5", None),
    ("/chunked", None, None),
    ("/chunked", "1,3:97,::9", None),
    ("/chunked", ":,::-1", "skip-if-4xx"),
    ("/f2", None, "safe"),
    ("/be", None, "safe"),
    ("/be", ":,10:90", None),
    ("/vds", None, None),
    ("/vds", "95:205:2,::3", None),
]


def expected_array(path: str, selection: str | None, dtype: str | None) -> np.ndarray:
    arrays = {
        "/f8": np.arange(10000, dtype="f8").reshape(100, 100) / 7,
        "/chunked": np.arange(30000, dtype="i4").reshape(3, 100, 100),
        "/f2": (np.arange(5000, dtype="f2") / 3).reshape(50, 100),
        "/be": np.arange(5000, dtype=">i8").reshape(50, 100) - 2500,
        "/vds": VDS_DATA,
    }
    data = arrays[path]
    if selection:
        index = tuple(
            int(part)
            if ":" not in part
            else slice(*[int(x) if x else None for x in part.split(":")])
            for part in selection.split(",")
        )
        data = data[index]
    if dtype == "safe":
        target = (
            np.dtype("<f4") if data.dtype.kind == "f" and data.dtype.itemsize < 4 else data.dtype
        )
        data = data.astype(target.newbyteorder("<"))
    return np.ascontiguousarray(data)


@pytest.mark.parametrize("extra_config", [SMALL_BUDGET])
@pytest.mark.parametrize(
    "path, selection, dtype",
    [pytest.param(*case, id="-".join(map(str, case))) for case in BUDGET_CASES],
)
async def test_small_budget_bin_and_npy_streamed_exactly(h5get, small, path, selection, dtype):
    """Above the budget, bin and npy are streamed block by block: same bytes as in memory."""
    params = {"file": "small.h5", "path": path}
    if selection:
        params["selection"] = selection
    if dtype:
        params["dtype"] = dtype
    binary = await h5get("data", format="bin", **params)
    if binary.code != 200 and path == "/chunked" and selection == ":,::-1":
        assert_error(binary)  # negative steps may be refused; then consistently
        return
    expected = expected_array(path, selection, dtype)
    assert binary.code == 200, describe(binary)
    assert binary.headers["Content-Length"] == str(expected.nbytes), binary.headers
    meta = assert_ok_json(await h5get("meta", file="small.h5", path=path))
    wire_dtype = expected.dtype if dtype else np.dtype(meta["type"]["dtype"])
    np.testing.assert_array_equal(np.frombuffer(binary.body, wire_dtype), expected.ravel())

    npy = await h5get("data", format="npy", **params)
    assert npy.code == 200, describe(npy)
    assert npy.headers["Content-Length"] == str(len(npy.body))
    np.testing.assert_array_equal(np.load(io.BytesIO(npy.body)), expected)


@pytest.mark.parametrize("extra_config", [SMALL_BUDGET])
async def test_small_budget_streams_flattened_and_compound(h5get, small):
    """Streamed npy of a flattened 3D selection has the flat shape; streamed bin of a numeric
    compound dataset gives the packed records (h5grove's bytes), or a clean refusal."""
    npy = await h5get("data", file="small.h5", path="/chunked", format="npy", flatten="true")
    assert npy.code == 200, describe(npy)
    flat = np.load(io.BytesIO(npy.body))
    np.testing.assert_array_equal(flat, np.arange(30000, dtype="i4"))
    binary = await h5get("data", file="small.h5", path="/cmp", format="bin")
    if binary.code == 200:
        assert binary.body == COMPOUND.tobytes()
        assert binary.headers["Content-Length"] == str(COMPOUND.nbytes)
    else:
        assert_error(binary)


@pytest.mark.parametrize("extra_config", [SMALL_BUDGET])
async def test_small_budget_refusals_and_what_still_works(h5get, small):
    """Above the budget json/csv/tiff answer 413; a small selection, stats and meta still work."""
    for fmt in ("json", "csv", "tiff"):
        resp = await h5get("data", file="small.h5", path="/f8", format=fmt)
        assert "selection" in assert_error(resp, 413).lower()
    got = assert_ok_json(await h5get("data", file="small.h5", path="/f8", selection="0:2,0:3"))
    np.testing.assert_allclose(got, expected_array("/f8", "0:2,0:3", None))
    stats = assert_ok_json(await h5get("stats", file="small.h5", path="/f8"))
    assert stats["max"] == pytest.approx(9999 / 7)
    assert_ok_json(await h5get("meta", file="small.h5", path="/f8"))
    # variable-length strings can only be sent as JSON: over the budget they are refused too
    assert_error(await h5get("data", file="small.h5", path="/vstr"), 413)
    resp = await h5get("data", file="small.h5", path="/vstr", format="bin")
    assert_error(resp, 413, 422)
    # other answers than data (large attribute lists) must not crash either
    for endpoint in ("attr", "meta"):
        resp = await h5get(endpoint, file="small.h5", path="/many")
        if resp.code != 200:
            assert_error(resp, 413)


async def test_repeated_refusals_do_not_accumulate_memory(h5get, huge):
    """Twenty refused huge requests in a row: memory stays flat."""
    with PeakRSS() as rss:
        for i in range(20):
            fmt = ("json", "csv", "tiff")[i % 3]
            resp = await h5get("data", file="huge.h5", path="/huge", format=fmt)
            assert_error(resp, 413)
    assert rss.growth < REFUSAL_RSS_LIMIT, f"RSS grew {rss.growth / MB:.0f} MB"


# --------------------------------------------------------------------------- stats, block by block


def build_stats_file(path: Path) -> dict[str, float]:
    """Datasets with odd chunkings and awkward values; name -> relative tolerance."""
    rng = np.random.default_rng(4)
    with h5py.File(path, "w") as f:
        nan_inf = rng.normal(3, 10, (100, 37))
        nan_inf[3, 4], nan_inf[50, 0], nan_inf[99, 36] = np.nan, np.inf, -np.inf
        f.create_dataset("f8_nan_inf", data=nan_inf, chunks=(7, 5))
        f.create_dataset("f4_normal", data=rng.normal(-2, 5, 50000).astype("f4"), chunks=(999,))
        f.create_dataset(
            "i8_3d", data=rng.integers(-(10**9), 10**9, (10, 20, 30)), chunks=(3, 7, 11)
        )
        f.create_dataset("u8_big", data=rng.integers(0, 10**12, 5000, dtype="u8"), chunks=(333,))
        f.create_dataset("f8_negative", data=-rng.random((64, 64)) - 1, chunks=(10, 64))
        f.create_dataset("f8_all_nan", data=np.full((20, 3), np.nan), chunks=(3, 3))
        f.create_dataset("zero_size", data=np.zeros((0, 3)), chunks=(1, 3), maxshape=(None, 3))
        f["scalar"] = np.float64(-4.25)
        f.create_dataset("be_f8", data=nan_inf.astype(">f8"), chunks=(11, 13))
    tolerances = {"f4_normal": 1e-5}
    return tolerances


STATS_CASES = [
    ("f8_nan_inf", None),
    ("f8_nan_inf", "1:90:4,::3"),
    ("f8_nan_inf", "50"),
    ("f8_nan_inf", "5:5"),
    ("f4_normal", None),
    ("f4_normal", "100:40000:7"),
    ("i8_3d", None),
    ("i8_3d", "2:9,::5,3"),
    ("u8_big", None),
    ("f8_negative", None),
    ("f8_all_nan", None),
    ("zero_size", None),
    ("scalar", None),
    ("be_f8", None),
]


@pytest.mark.parametrize(
    "extra_config",
    [{}, {"H5GroveApp": {"stream_block_bytes": 4096}}],
    ids=["default-blocks", "tiny-blocks"],
)
async def test_stats_equal_h5grove(h5get, jp_root_dir, extra_config):
    """Block-by-block stats equal h5grove's (NaN/inf excluded, ints cast as h5grove does)."""
    path = jp_root_dir / "stats.h5"
    tolerances = build_stats_file(path)
    with h5py.File(path, "r") as f:  # closed before the server opens it (same process)
        wants = [oracle_content(f, f"/{n}").data_stats(sel) for n, sel in STATS_CASES]
    for (name, selection), want in zip(STATS_CASES, wants, strict=True):
        params = {"selection": selection} if selection else {}
        resp = await h5get("stats", file="stats.h5", path=f"/{name}", **params)
        got = assert_ok_json(resp)
        assert_stats_equal(got, want, rel=tolerances.get(name, 1e-6))


# --------------------------------------------------------------------------- one huge chunk


def gzip_of_zeros(nbytes: int, piece: int = 16 * MB) -> bytes:
    """zlib stream of `nbytes` zero bytes, built from one compressed piece repeated (a full
    flush makes pieces independent), so a GiB-sized chunk costs milliseconds to make."""
    assert nbytes % piece == 0
    zero = bytes(piece)
    comp = zlib.compressobj(1)
    first = comp.compress(zero) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(zero) + comp.flush(zlib.Z_FULL_FLUSH)
    assert first[2:] == again
    adler = 1
    for _ in range(nbytes // piece):
        adler = zlib.adler32(zero, adler)
    return first + again * (nbytes // piece - 1) + b"\x03\x00" + adler.to_bytes(4, "big")


@pytest.fixture
def one_big_chunk(jp_root_dir: Path, memory_ceiling) -> Path:
    """root/bigchunk.h5:/one, 768 MiB of float32 zeros in ONE gzip chunk (~3 MB on disk)."""
    shape = (12288, 16384)
    path = jp_root_dir / "bigchunk.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("one", shape=shape, dtype="f4", chunks=shape, compression="gzip")
        d.id.write_direct_chunk((0, 0), gzip_of_zeros(shape[0] * shape[1] * 4))
    with h5py.File(jp_root_dir / "bigchunk_vds.h5", "w") as f:  # same chunk behind a VDS
        layout = h5py.VirtualLayout(shape=shape, dtype="f4")
        layout[:] = h5py.VirtualSource("bigchunk.h5", "one", shape=shape)
        f.create_virtual_dataset("one", layout, fillvalue=-1)
    with h5py.File(jp_root_dir / "bigchunk_vds2.h5", "w") as f:  # a VDS of that VDS
        layout = h5py.VirtualLayout(shape=shape, dtype="f4")
        layout[:] = h5py.VirtualSource("bigchunk_vds.h5", "one", shape=shape)
        f.create_virtual_dataset("one", layout, fillvalue=-1)
    return path


@pytest.mark.parametrize(
    "file",
    ["bigchunk.h5", "bigchunk_vds.h5", "bigchunk_vds2.h5"],
    ids=["direct", "via-vds", "via-vds-of-vds"],
)
async def test_tiny_selection_of_one_huge_compressed_chunk(h5get, one_big_chunk, file):
    """Reading 4 values of a dataset stored as one 768 MiB compressed chunk (directly, or as
    the source of a virtual dataset) would decompress the whole chunk: the server must serve it
    in bounded memory or refuse it (4xx)."""
    with PeakRSS() as rss:
        answers = [
            await h5get("data", file=file, path="/one", selection="0,0:4"),
            await h5get("stats", file=file, path="/one", selection="0:2,0:2"),
        ]
    for resp in answers:
        if resp.code != 200:
            assert_error(resp)
    assert rss.growth < RSS_LIMIT, f"RSS grew {rss.growth / MB:.0f} MB for 4 values"
    if answers[0].code == 200:
        assert assert_ok_json(answers[0]) == [0.0] * 4
