"""Bad input: every malformed or impossible request gets a 4xx with a JSON message, never a 5xx
or a traceback; big-endian data is served correctly; property-based fuzzing of every query
parameter of every endpoint (issue 4)."""

# Fixtures imported from safety_helpers are module-local on purpose (they override
# jp_server_config for these modules only); tests take them as arguments, hence F811.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import csv
import io
import json
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from h5grove.utils import get_array_stats  # oracle only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safety_helpers import (  # noqa: F401  (fixtures are used by name)
    FILE_ENDPOINTS,
    assert_error,
    assert_ok_json,
    assert_stats_equal,
    describe,
    extra_config,
    h5get,
    jp_server_config,
)

MISSING_FILTER_ID = 32123  # no plugin anywhere provides this id


def build_bad(path: Path) -> None:
    """One file with every kind of entity a request can stumble on."""
    with h5py.File(path, "w") as f:
        f["d1"] = np.arange(10, dtype="i4")
        f["d1"].attrs["a"] = 1
        f["d1"].attrs["s"] = "text"
        f["d2"] = np.arange(20, dtype="f8").reshape(4, 5)
        f["d3"] = np.arange(24, dtype="f4").reshape(2, 3, 4)
        f["scalar"] = 3.5
        f["vstr"] = np.array(["a", "bb", "ccc"], dtype=h5py.string_dtype())
        f["vstr_scalar"] = "hello"
        f["fstr"] = np.array([b"ab", b"cd"], dtype="S2")
        f["cmp"] = np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "i4"), ("b", "f8")])
        f["empty"] = h5py.Empty("f4")
        f["zero"] = np.zeros((0, 3))
        f["bool"] = np.array([True, False])
        f["cplx"] = np.array([1 + 2j, 3 - 4j])
        vlen = f.create_dataset("vlen_int", (2,), dtype=h5py.vlen_dtype(np.dtype("i4")))
        vlen[0] = [1, 2]
        vlen[1] = [3]
        f["enum"] = np.array([0, 1], dtype=h5py.enum_dtype({"A": 0, "B": 1}, basetype="i1"))
        g = f.create_group("g")
        g.attrs["ga"] = [1, 2, 3]
        g["inner"] = np.arange(3)
        f["soft"] = h5py.SoftLink("/d1")
        f["dangling"] = h5py.SoftLink("/nope")
        f["loop_a"] = h5py.SoftLink("/loop_b")
        f["loop_b"] = h5py.SoftLink("/loop_a")
        f["self"] = h5py.SoftLink("/self")
        f["g/loop_up"] = h5py.SoftLink("/g/loop_up")
        f["ext_missing"] = h5py.ExternalLink("missing.h5", "/x")
        f["dt"] = np.dtype("f4")
        f.attrs["root_attr"] = "r"


def build_missing_filter(path: Path) -> None:
    """A chunked dataset whose (optional) filter id is registered nowhere; chunks written raw
    with filter_mask=0, so reading requires the filter."""
    with h5py.File(path, "w") as f:
        space = h5py.h5s.create_simple((4, 4))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((2, 2))
        dcpl.set_filter(MISSING_FILTER_ID, h5py.h5z.FLAG_OPTIONAL, (1, 2))
        h5py.h5d.create(f.id, b"filtered", h5py.h5t.NATIVE_FLOAT, space, dcpl=dcpl)
        ds = f["filtered"]
        for i in (0, 2):
            for j in (0, 2):
                ds.id.write_direct_chunk((i, j), np.ones((2, 2), "f4").tobytes(), filter_mask=0)
        f["plain"] = np.arange(3)


def build_corrupt_chunk(path: Path) -> None:
    """A gzip dataset with one compressed chunk overwritten by zeros."""
    with h5py.File(path, "w") as f:
        f.create_dataset("z", data=np.arange(1000.0), chunks=(100,), compression="gzip")
        info = f["z"].id.get_chunk_info(3)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\0" * info.size)


UNREADABLE = [
    "notes.txt", "empty.h5", "truncated.h5", "truncated_tiny.h5", "signature_only.h5",
    "bad_superblock.h5", "adir.h5", "sub", ".", "",
]  # fmt: skip
"""Not openable as HDF5 at all: every request is a 4xx."""
DAMAGED = ["bad_btree.h5", "bad_snod.h5", "bad_heap.h5", "garbled.h5"]
"""Open fine but their root group's link index is damaged: what needs it is a 4xx, what does
not (e.g. the root's attributes, stored elsewhere) may still be served."""


def build_broken_files(root: Path) -> None:
    """Files that are not (valid) HDF5 files, or are damaged ones, and a directory."""
    good = root / "good.h5"
    with h5py.File(good, "w") as f:
        f.create_dataset("d", data=np.arange(10000, dtype="f4").reshape(100, 100), chunks=(10, 10))
        g = f.create_group("g")
        for i in range(20):
            g[f"x{i}"] = np.arange(i + 1)
    data = good.read_bytes()
    (root / "notes.txt").write_text("hello, not an HDF5 file\n" * 10)
    (root / "empty.h5").write_bytes(b"")
    (root / "truncated.h5").write_bytes(data[: len(data) // 2])
    (root / "truncated_tiny.h5").write_bytes(data[:100])
    (root / "signature_only.h5").write_bytes(data[:8])
    bad_super = bytearray(data)
    bad_super[8:16] = b"\xff" * 8
    (root / "bad_superblock.h5").write_bytes(bytes(bad_super))
    for name, sig in (
        ("bad_btree.h5", b"TREE"),
        ("bad_snod.h5", b"SNOD"),
        ("bad_heap.h5", b"HEAP"),
    ):
        corrupt = bytearray(data)
        i = corrupt.find(sig)
        corrupt[i : i + 4] = b"XXXX"
        (root / name).write_bytes(bytes(corrupt))
    garbled = bytearray(data)
    garbled[1000:3000] = bytes((i * 37) % 256 for i in range(2000))
    (root / "garbled.h5").write_bytes(bytes(garbled))
    (root / "adir.h5").mkdir()


BE_F8 = np.arange(6, dtype=">f8").reshape(2, 3) * 1.5
BE_I4 = np.arange(-3, 3, dtype=">i4")
BE_U2 = np.arange(12, dtype=">u2").reshape(3, 4) * 1000
BE_C16 = np.array([1 + 2j, -3.5 + 0.25j], dtype=">c16")


def build_big_endian(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["be_f8"] = BE_F8
        f["be_i4"] = BE_I4
        f["be_u2"] = BE_U2
        f["be_c16"] = BE_C16
        f["be_scalar"] = np.array(2.5, dtype=">f4")
        f.create_dataset("be_chunked", data=BE_F8, chunks=(1, 3), compression="gzip")
        f["be_f8"].attrs.create("be_i8", np.int64(123456789), dtype=">i8")
        f["be_f8"].attrs.create("be_f4_arr", [1.5, -2.25], dtype=">f4")
        f["be_f8"].attrs.create("be_i2", -7, dtype=">i2")
        f.attrs.create("be_u4_arr", [1, 2, 70000], dtype=">u4")


@pytest.fixture
def files(jp_root_dir: Path) -> Path:
    (jp_root_dir / "sub").mkdir()
    build_bad(jp_root_dir / "bad.h5")
    build_missing_filter(jp_root_dir / "filter.h5")
    build_corrupt_chunk(jp_root_dir / "corrupt_chunk.h5")
    build_big_endian(jp_root_dir / "be.h5")
    build_broken_files(jp_root_dir)
    return jp_root_dir


# --------------------------------------------------------------------------- selections

BAD_SELECTIONS = [
    ("d1", "0:10:0", "zero-step"),
    ("d1", "::0", "zero-step-only"),
    ("d1", "1,2", "too-many-dims"),
    ("d2", "0,0,0", "too-many-dims-2d"),
    ("scalar", "0", "index-scalar"),
    ("d1", "100", "out-of-range"),
    ("d1", "-11", "out-of-range-negative"),
    ("d2", "4,0", "out-of-range-2d"),
    ("d2", "0,5", "out-of-range-2nd-axis"),
    ("d1", "99999999999999999999999", "overflow"),
    ("d1", "0:1:99999999999999999999", "huge-step"),
    ("d1", "::9223372036854775808", "step-over-int64"),
    ("d2", "0, ::18446744073709551616", "huge-step-2nd-axis"),
    ("d1", "1.5", "float"),
    ("d1", "1e3", "exponent"),
    ("d1", "0x10", "hex"),
    ("d1", "a", "letters"),
    ("d1", "1:b", "letters-in-slice"),
    ("d1", "1:2:3:4", "four-part-slice"),
    ("d1", "::::", "colons"),
    ("d1", "[1]", "brackets"),
    ("d1", "1,,", "empty-members"),
    ("d1", ",", "comma"),
    ("d1", "...", "ellipsis"),
    ("d1", "None", "none"),
    ("d1", "1;2", "semicolon"),
    ("d1", "\x00", "nul"),
]


@pytest.mark.parametrize("endpoint", ["data", "stats"])
@pytest.mark.parametrize(
    "path, selection", [pytest.param(p, s, id=i) for p, s, i in BAD_SELECTIONS]
)
async def test_bad_selection(h5get, files, endpoint, path, selection):
    """Malformed or impossible selections: 422 with a JSON message."""
    resp = await h5get(endpoint, file="bad.h5", path=f"/{path}", selection=selection)
    assert_error(resp, 422)


async def test_good_selections_still_work(h5get, files):
    """Control for the table above (huge starts and stops are clamped, as NumPy does)."""
    got = assert_ok_json(await h5get("data", file="bad.h5", path="/d2", selection="0:4:2,1"))
    assert got == [1.0, 11.0]
    got = assert_ok_json(await h5get("data", file="bad.h5", path="/d1", selection="-1"))
    assert got == 9
    got = assert_ok_json(await h5get("data", file="bad.h5", path="/d3", selection="1"))
    assert got == np.arange(12.0, 24.0).reshape(3, 4).tolist()
    huge = "99999999999999999999"
    got = assert_ok_json(
        await h5get("data", file="bad.h5", path="/d1", selection=f"-{huge}:{huge}")
    )
    assert got == np.arange(10.0).tolist()
    got = assert_ok_json(await h5get("data", file="bad.h5", path="/d1", selection=f"{huge}:"))
    assert got == []
    got = assert_ok_json(await h5get("data", file="bad.h5", path="/d1", selection="2::9"))
    assert got == [2.0]


# ------------------------------------------------------------------ wrong entity or parameter


BAD_REQUESTS = [
    # (endpoint, params, expected statuses, id)
    ("attr", {"path": "/d1", "attr_keys": "nope"}, (400, 404, 422), "unknown-attr-key"),
    ("attr", {"path": "/", "attr_keys": ""}, (400, 404, 422), "empty-attr-key"),
    ("data", {"path": "/g"}, (422,), "data-of-group"),
    ("data", {"path": "/"}, (422,), "data-of-root"),
    ("stats", {"path": "/g"}, (422,), "stats-of-group"),
    ("data", {"path": "/dt"}, (422,), "data-of-datatype"),
    ("stats", {"path": "/dt"}, (422,), "stats-of-datatype"),
    ("paths", {"path": "/d1"}, (422,), "paths-of-dataset"),
    ("paths", {"path": "/dt"}, (422,), "paths-of-datatype"),
    ("data", {"path": "/dangling"}, (404, 422), "data-of-dangling-link"),
    ("stats", {"path": "/ext_missing"}, (404, 422), "stats-of-broken-external-link"),
    ("attr", {"path": "/dangling"}, (404, 422), "attr-of-dangling-link"),
    ("attr", {"path": "/ext_missing"}, (404, 422), "attr-of-broken-external-link"),
    ("paths", {"path": "/dangling"}, (404, 422), "paths-of-dangling-link"),
    ("data", {"path": "/loop_a"}, (404, 422), "data-of-soft-link-loop"),
    ("attr", {"path": "/self"}, (404, 422), "attr-of-self-link"),
    ("meta", {"path": "/nope"}, (404,), "meta-missing-path"),
    ("meta", {"path": "/d1/x"}, (404,), "meta-below-dataset"),
    ("meta", {"path": "/g/../d1"}, (404,), "meta-dotdot-in-hdf5"),
    ("meta", {"path": "/loop_a", "resolve_links": "all"}, (404, 422), "resolve-all-loop"),
    ("data", {"path": "/d1", "format": "tiff"}, (422,), "tiff-of-1d"),
    ("data", {"path": "/d3", "format": "tiff"}, (422,), "tiff-of-3d"),
    ("data", {"path": "/scalar", "format": "tiff"}, (422,), "tiff-of-scalar"),
    ("data", {"path": "/d3", "format": "csv"}, (422,), "csv-of-3d"),
    ("data", {"path": "/scalar", "format": "csv"}, (422,), "csv-of-scalar"),
    ("data", {"path": "/vstr", "format": "bin"}, (422,), "bin-of-vlen-str"),
    ("data", {"path": "/vlen_int", "format": "bin"}, (422,), "bin-of-vlen-int"),
    ("data", {"path": "/vstr", "format": "npy"}, (422,), "npy-of-vlen-str"),
    ("data", {"path": "/vstr", "format": "csv"}, (422,), "csv-of-vlen-str"),
    ("data", {"path": "/vstr", "format": "tiff"}, (422,), "tiff-of-vlen-str"),
    ("data", {"path": "/cmp", "format": "csv"}, (422,), "csv-of-compound"),
    ("data", {"path": "/vstr", "dtype": "safe"}, (422,), "safe-of-vlen-str"),
    ("data", {"path": "/fstr", "dtype": "safe"}, (422,), "safe-of-fixed-str"),
    ("data", {"path": "/cmp", "dtype": "safe"}, (422,), "safe-of-compound"),
    ("data", {"path": "/d1", "dtype": "float32"}, (422,), "unknown-dtype"),
    ("data", {"path": "/d1", "dtype": ""}, (422,), "empty-dtype"),
    ("data", {"path": "/d1", "format": "xml"}, (422,), "unknown-format"),
    ("data", {"path": "/d1", "format": ""}, (422,), "empty-format"),
    ("data", {"path": "/d1", "format": "JSON;rm -rf"}, (422,), "garbage-format"),
    ("meta", {"path": "/", "resolve_links": "maybe"}, (422,), "meta-bad-resolve-links"),
    ("paths", {"path": "/", "resolve_links": "maybe"}, (422,), "paths-bad-resolve-links"),
    ("data", {"path": "/d1", "resolve_links": "maybe"}, (422,), "data-bad-resolve-links"),
]


@pytest.mark.parametrize(
    "endpoint, params, statuses", [pytest.param(*r[:3], id=r[3]) for r in BAD_REQUESTS]
)
async def test_bad_request(h5get, files, endpoint, params, statuses):
    """Impossible requests answer a 4xx JSON message, never a 500 or raw memory."""
    resp = await h5get(endpoint, file="bad.h5", **params)
    assert_error(resp, *statuses)


async def test_bin_of_vlen_string_scalar(h5get, files):
    """A variable-length string scalar as bin: refused, or its UTF-8 bytes (never a pointer)."""
    resp = await h5get("data", file="bad.h5", path="/vstr_scalar", format="bin")
    if resp.code == 200:
        assert resp.body == b"hello", describe(resp)
    else:
        assert_error(resp, 422)


async def test_missing_file_parameter(h5get, files):
    for endpoint in FILE_ENDPOINTS:
        assert_error(await h5get(endpoint, path="/"), 400)


@pytest.mark.parametrize("endpoint", FILE_ENDPOINTS)
async def test_missing_file_is_404(h5get, files, endpoint):
    assert_error(await h5get(endpoint, file="nope.h5", path="/"), 404)
    assert_error(await h5get(endpoint, file="sub/nope.h5", path="/"), 404)
    assert_error(await h5get(endpoint, file="nodir/nope.h5", path="/"), 404)


@pytest.mark.parametrize("endpoint", FILE_ENDPOINTS)
async def test_not_hdf5_corrupt_and_directories(h5get, files, endpoint):
    """Non-HDF5, empty, truncated, corrupt files and directories: clean 4xx on every endpoint."""
    for name in UNREADABLE:
        for path in ("/", "/d", "/g", "/g/x5"):
            resp = await h5get(endpoint, file=name, path=path)
            assert_error(resp)
    for name in DAMAGED:
        for path in ("/", "/d", "/g", "/g/x5"):
            resp = await h5get(endpoint, file=name, path=path)
            needs_links = path != "/" or endpoint in ("meta", "paths")
            if needs_links or resp.code != 200:
                assert_error(resp)


async def test_corrupt_chunk(h5get, files):
    """A chunk that fails to decompress: 4xx; the intact chunks are still served."""
    for endpoint in ("data", "stats"):
        assert_error(await h5get(endpoint, file="corrupt_chunk.h5", path="/z"))
        resp = await h5get(endpoint, file="corrupt_chunk.h5", path="/z", selection="250:350")
        assert_error(resp)
    got = assert_ok_json(await h5get("data", file="corrupt_chunk.h5", path="/z", selection="0:3"))
    assert got == [0.0, 1.0, 2.0]


async def test_soft_link_loops_do_not_break_parent(h5get, files):
    """Soft-link loops: the parent group's meta and paths still answer 200."""
    meta = assert_ok_json(await h5get("meta", file="bad.h5", path="/"))
    kinds = {c["name"]: c["kind"] for c in meta["children"]}
    for name in ("loop_a", "loop_b", "self", "dangling"):
        assert kinds[name] == "soft_link", kinds
    assert kinds["ext_missing"] == "external_link", kinds
    meta_g = assert_ok_json(await h5get("meta", file="bad.h5", path="/g"))
    assert {c["name"] for c in meta_g["children"]} == {"inner", "loop_up"}
    for resolve in ("only_valid", "none"):
        paths = assert_ok_json(await h5get("paths", file="bad.h5", path="/", resolve_links=resolve))
        assert {"/loop_a", "/loop_b", "/self", "/g/loop_up", "/d1"} <= set(paths), paths
    for name in ("loop_a", "self", "g/loop_up"):
        link = assert_ok_json(await h5get("meta", file="bad.h5", path=f"/{name}"))
        assert link["kind"] == "soft_link", link
    resp = await h5get("meta", file="bad.h5", path="/", resolve_links="all")
    if resp.code != 200:
        assert_error(resp)
    resp = await h5get("paths", file="bad.h5", path="/", resolve_links="all")
    if resp.code != 200:
        assert_error(resp)


async def test_unavailable_filter(h5get, files):
    """A dataset compressed with a filter that is not available: meta 200; data and stats 4xx
    naming the filter and hdf5plugin."""
    meta = assert_ok_json(await h5get("meta", file="filter.h5", path="/filtered"))
    assert [flt["id"] for flt in meta["filters"]] == [MISSING_FILTER_ID], meta
    for endpoint, extra in [
        ("data", {}),
        ("data", {"format": "bin"}),
        ("data", {"format": "npy", "selection": "0:2,0:2"}),
        ("data", {"dtype": "safe"}),
        ("stats", {}),
    ]:
        resp = await h5get(endpoint, file="filter.h5", path="/filtered", **extra)
        message = assert_error(resp)
        assert str(MISSING_FILTER_ID) in message, message
        assert "hdf5plugin" in message, message
    assert assert_ok_json(await h5get("data", file="filter.h5", path="/plain")) == [0, 1, 2]


ODD_NAMES = ['we"ird', "semi;colon", "new\r\nX-Injected: 1", "ünï 日本", "back\\slash",
             "per%2Fcent", "q?m=1&x=2", "tab\tname", " lead-space", "emoji 🧪"]  # fmt: skip


async def test_odd_file_and_dataset_names(h5get, jp_root_dir):
    """Quotes, CR/LF, `%`, `?`, `&`, unicode in file and dataset names: served normally, and
    never echoed raw into response headers (no header injection, no 500)."""
    for i, name in enumerate(ODD_NAMES):
        file = f"{i}-{name}.h5"
        with h5py.File(jp_root_dir / file, "w") as f:
            f[name] = np.arange(4.0).reshape(2, 2)
            f[name].attrs[name] = 1
        for endpoint, extra in [
            ("meta", {}),
            ("attr", {}),
            ("stats", {}),
            *(("data", {"format": fmt}) for fmt in ("json", "bin", "npy", "csv", "tiff")),
        ]:
            resp = await h5get(endpoint, file=file, path=f"/{name}", **extra)
            assert resp.code == 200, (name, endpoint, extra, describe(resp))
            assert "X-Injected" not in resp.headers, resp.headers
            for value in resp.headers.get_all():
                assert "\r" not in value[1] and "\n" not in value[1], value
        paths = assert_ok_json(await h5get("paths", file=file, path="/"))
        assert paths == ["/", f"/{name}"]


# --------------------------------------------------------------------------- big-endian


@pytest.mark.parametrize(
    "name, expected", [("be_f8", BE_F8), ("be_i4", BE_I4), ("be_u2", BE_U2), ("be_chunked", BE_F8)]
)
async def test_big_endian_data(h5get, files, name, expected):
    """Big-endian datasets: right values in every format, bytes consistent with meta's dtype."""
    path = f"/{name}"
    meta = assert_ok_json(await h5get("meta", file="be.h5", path=path))
    assert assert_ok_json(await h5get("data", file="be.h5", path=path)) == expected.tolist()

    origin = await h5get("data", file="be.h5", path=path, format="bin")
    assert origin.code == 200, describe(origin)
    decoded = np.frombuffer(origin.body, dtype=np.dtype(meta["type"]["dtype"]))
    np.testing.assert_array_equal(decoded, expected.ravel())

    safe = await h5get("data", file="be.h5", path=path, format="bin", dtype="safe")
    assert safe.code == 200, describe(safe)
    little = expected.astype(expected.dtype.newbyteorder("<"))
    assert safe.body == little.tobytes()

    npy = await h5get("data", file="be.h5", path=path, format="npy")
    assert npy.code == 200, describe(npy)
    np.testing.assert_array_equal(np.load(io.BytesIO(npy.body)), expected)

    stats = assert_ok_json(await h5get("stats", file="be.h5", path=path))
    assert_stats_equal(stats, get_array_stats(expected))

    if expected.ndim == 2:
        csv_resp = await h5get("data", file="be.h5", path=path, format="csv")
        assert csv_resp.code == 200, describe(csv_resp)
        rows = list(csv.reader(io.StringIO(csv_resp.body.decode())))
        np.testing.assert_allclose(np.array(rows, dtype=float), expected)
        tiff = await h5get("data", file="be.h5", path=path, format="tiff")
        assert tiff.code == 200, describe(tiff)
        np.testing.assert_array_equal(tifffile.imread(io.BytesIO(tiff.body)), expected)


async def test_big_endian_complex_and_scalar(h5get, files):
    got = assert_ok_json(await h5get("data", file="be.h5", path="/be_c16"))
    assert got == [[1.0, 2.0], [-3.5, 0.25]]
    assert assert_ok_json(await h5get("data", file="be.h5", path="/be_scalar")) == 2.5
    safe = await h5get("data", file="be.h5", path="/be_scalar", format="bin", dtype="safe")
    assert safe.code == 200 and safe.body == np.float32(2.5).tobytes(), describe(safe)


COMPLEX_WITH_SPECIALS = np.array(
    [3 + 4j, np.nan + 1j, 2 - np.inf * 1j, 0j, -0.6 + 0.8j, 1 + np.nan * 1j], dtype=">c16"
)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda f: f.create_dataset("z", data=COMPLEX_WITH_SPECIALS), id="be-c16"),
        pytest.param(
            lambda f: f.create_dataset("z", data=COMPLEX_WITH_SPECIALS.astype(np.complex64)),
            id="c8",
        ),
        pytest.param(
            lambda f: f.create_dataset(
                "z", data=np.tile(COMPLEX_WITH_SPECIALS, 400_000), chunks=(100_000,)
            ),
            id="multi-block",
        ),
        pytest.param(
            lambda f: h5py.h5d.create(
                f.id, b"z", h5py.h5t.COMPLEX_IEEE_F64LE, h5py.h5s.create_simple((6,))
            ).write(h5py.h5s.ALL, h5py.h5s.ALL, COMPLEX_WITH_SPECIALS.astype("<c16")),
            id="hdf5-native-complex",
        ),
    ],
)
async def test_complex_stats_are_stats_of_the_modulus(h5get, jp_root_dir, build):
    """Statistics of complex data are those of the finite moduli |z| (README, Differences
    from h5grove): h5grove answered a strictly positive minimum of 0 and nulls here."""
    with h5py.File(jp_root_dir / "cplx.h5", "w") as f:
        build(f)
    stats = assert_ok_json(await h5get("stats", file="cplx.h5", path="/z"))
    # finite moduli: 5, 0, 1 (NaN and infinite parts left out)
    assert stats["min"] == stats["positive_min"] == 0.0
    assert stats["strict_positive_min"] == pytest.approx(1.0)
    assert stats["max"] == pytest.approx(5.0)
    assert stats["mean"] == pytest.approx(2.0)
    assert stats["std"] == pytest.approx(np.std([5.0, 0.0, 1.0]))
    some = assert_ok_json(await h5get("stats", file="cplx.h5", path="/z", selection="3:5"))
    assert (some["min"], some["max"], some["strict_positive_min"]) == (0.0, 1.0, 1.0)


async def test_big_endian_attributes(h5get, files):
    attrs = assert_ok_json(await h5get("attr", file="be.h5", path="/be_f8"))
    assert attrs == {"be_i8": 123456789, "be_f4_arr": [1.5, -2.25], "be_i2": -7}
    some = await h5get("attr", file="be.h5", path="/be_f8", params=[("attr_keys", "be_i2")])
    assert assert_ok_json(some) == {"be_i2": -7}
    assert assert_ok_json(await h5get("attr", file="be.h5", path="/")) == {
        "be_u4_arr": [1, 2, 70000]
    }
    meta = assert_ok_json(await h5get("meta", file="be.h5", path="/be_f8"))
    dtypes = {a["name"]: a["type"]["dtype"] for a in meta["attributes"]}
    assert dtypes == {"be_i8": ">i8", "be_f4_arr": ">f4", "be_i2": ">i2"}


# --------------------------------------------------------------------------- fuzzing

FUZZ_FILES = ["bad.h5", "be.h5", "filter.h5", "notes.txt", "empty.h5", "truncated.h5", "sub",
              "nope.h5", "../bad.h5", "/bad.h5", ".", ""]  # fmt: skip
FUZZ_PATHS = ["/", "/g", "/g/inner", "/d1", "/d2", "/d3", "/scalar", "/vstr", "/vstr_scalar",
              "/fstr", "/cmp", "/empty", "/zero", "/bool", "/cplx", "/vlen_int", "/enum", "/soft",
              "/dangling", "/loop_a", "/self", "/ext_missing", "/dt", "/nope", "/be_f8",
              "/filtered", "/be_c16", "d1", "//d1", "/d1/"]  # fmt: skip
ATTR_KEYS = ["a", "s", "ga", "root_attr", "be_i8", "nope", ""]

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)
raw_bytes = st.binary(max_size=16).map(urllib.parse.quote_from_bytes)  # may be invalid UTF-8
opt_int = st.one_of(st.just(""), st.integers(-40, 40).map(str), st.integers().map(str))
slice_member = st.one_of(
    st.integers(-40, 40).map(str),
    st.tuples(opt_int, opt_int).map(":".join),
    st.tuples(opt_int, opt_int, opt_int).map(":".join),
)
selections = st.one_of(
    st.lists(slice_member, min_size=1, max_size=4).map(",".join),
    st.text("0123456789:,-+ .eE[]x", max_size=14),
    text,
)


def value(choices, *extra):
    """A known-good value, a tweaked one, free text or raw (possibly invalid) bytes."""
    known = st.sampled_from(choices)
    return st.one_of(
        known.map(lambda v: (v, False)),
        known.map(lambda v: (v.upper(), False)),
        text.map(lambda v: (v, False)),
        raw_bytes.map(lambda v: (v, True)),
        *(s.map(lambda v: (v, False)) for s in extra),
    )


PARAMS = {
    "file": value(FUZZ_FILES),
    "path": value(FUZZ_PATHS),
    "selection": value(["0", "0:2", "1,0:3", ":,1", "::2"], selections),
    "dtype": value(["origin", "safe"]),
    "format": value(["json", "bin", "csv", "npy", "tiff"]),
    "flatten": value(["true", "false", "True", "0", "1"]),
    "resolve_links": value(["only_valid", "all", "none", "true", "false"]),
    "attr_keys": value(ATTR_KEYS),
}
ENDPOINT_PARAMS = {
    "": ["file", "path"],
    "meta": ["file", "path", "resolve_links"],
    "attr": ["file", "path", "attr_keys", "resolve_links"],
    "data": ["file", "path", "selection", "dtype", "format", "flatten", "resolve_links"],
    "stats": ["file", "path", "selection", "resolve_links"],
    "paths": ["file", "path", "resolve_links"],
}


@st.composite
def queries(draw, endpoint: str) -> str:
    """A query string: each known parameter absent, once or repeated; plus stray parameters."""
    items: list[tuple[str, str, bool]] = []
    for name in ENDPOINT_PARAMS[endpoint]:
        count = draw(st.sampled_from([0, 1, 1, 1, 2]) if name != "attr_keys" else st.integers(0, 4))
        if name == "file" and count == 0 and draw(st.booleans()):
            count = 1  # mostly exercise the file-opening code
        for _ in range(count):
            v, is_raw = draw(PARAMS[name])
            items.append((name, v, is_raw))
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.one_of(st.sampled_from(list(PARAMS)), text.filter(bool)))
        v, is_raw = draw(value(["x"]))
        items.append((name, v, is_raw))
    items = draw(st.permutations(items))
    return "&".join(
        f"{urllib.parse.quote(n, safe='')}={v if raw else urllib.parse.quote(v, safe='')}"
        for n, v, raw in items
    )


@pytest.mark.parametrize("endpoint", list(ENDPOINT_PARAMS))
async def test_fuzz_every_parameter(h5get, files, endpoint):
    """Property: whatever the query, never a 5xx; every 4xx is JSON with a str message;
    a 200 JSON answer is valid JSON."""
    loop = asyncio.get_running_loop()
    seen: dict[int, int] = {}

    def check(query: str) -> None:
        future = asyncio.run_coroutine_threadsafe(h5get(endpoint, raw=query, timeout=30), loop)
        resp = future.result(60)
        seen[resp.code] = seen.get(resp.code, 0) + 1
        assert resp.code < 500, f"query {query!r}: {describe(resp)}"
        if resp.code >= 400:
            assert_error(resp)
        elif "json" in resp.headers.get("Content-Type", ""):
            json.loads(resp.body)

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(queries(endpoint))
    def property_holds(query: str) -> None:
        check(query)

    # Hypothesis drives from a worker thread; each example's request runs on the server's loop.
    with ThreadPoolExecutor(1, thread_name_prefix="hypothesis") as pool:
        await loop.run_in_executor(pool, property_holds)
    assert sum(seen.values()) >= 60, seen
