"""HTTP revalidation and compression (issue 13): ETags from what answers are read from,
304 without reading HDF5, gzip negotiated for JSON and CSV, binary never compressed."""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import orjson
import pytest
from conftest import GZIP, WORKER_MODES, gunzip
from tornado.web import GZipContentEncoding

from jupyter_h5grove.compression import MIN_BYTES, gzip_body, strategy
from jupyter_h5grove.errors import InvalidFileError
from jupyter_h5grove.service import Limits, Query, Reply, Service, Settings, build_service


@pytest.fixture(params=list(WORKER_MODES))
def h5grove_config(request) -> dict:
    """Each server test runs with worker processes and with threads."""
    return WORKER_MODES[request.param]


TICK = 0.05
"""Seconds between writes whose status-change times must differ: the kernel stamps them
from a clock that ticks every few milliseconds (tests only: a real rewrite comes later)."""

ENDPOINT_QUERIES: list[tuple[str, dict[str, str]]] = [
    ("meta", {"path": "/group"}),
    ("attr", {"path": "/values"}),
    ("data", {"path": "/values"}),
    ("data", {"path": "/values", "format": "bin"}),
    ("data", {"path": "/values", "format": "npy"}),
    ("data", {"path": "/values", "format": "csv"}),
    ("data", {"path": "/image", "format": "tiff"}),
    ("stats", {"path": "/values"}),
    ("paths", {"path": "/"}),
]


def build_sample(f: h5py.File, values: Any = (1.0, 2.0, 3.0)) -> None:
    f["values"] = np.asarray(values, dtype="f8")
    f["values"].attrs["units"] = "mm"
    f["image"] = np.arange(64, dtype="u2").reshape(8, 8)
    group = f.create_group("group")
    for index in range(2000):
        group[f"child_{index:04d}"] = np.int32(index)


@pytest.fixture
def sample(write_h5) -> Path:
    return write_h5("sample.h5", build_sample)


def tagged(response: Any) -> dict[str, str]:
    """The If-None-Match header of a client holding this answer."""
    return {"If-None-Match": response.headers["ETag"]}


# ----------------------------------------------------------------------------- revalidation


@pytest.mark.parametrize(("endpoint", "params"), ENDPOINT_QUERIES, ids=str)
async def test_etag_stable_and_304(api, sample, endpoint, params) -> None:
    """Every 200 has a strong ETag and no-cache; the same again has the same tag; with
    If-None-Match it is a 304 with the tag and no body; a tag of nothing here is a 200."""
    first = await api(endpoint, file="sample.h5", **params)
    assert first.code == 200, first.body[:200]
    tag = first.headers["ETag"]
    assert tag.startswith('"') and not tag.startswith("W/")
    assert first.headers["Cache-Control"] == "no-cache"
    again = await api(endpoint, file="sample.h5", **params)
    assert (again.headers["ETag"], again.body) == (tag, first.body)

    for header in (tag, f'"other", {tag}', f"W/{tag}", "*"):
        cached = await api(endpoint, file="sample.h5", headers={"If-None-Match": header}, **params)
        assert cached.code == 304, (header, cached.code)
        assert cached.body == b""
        assert cached.headers["ETag"] == tag
        assert cached.headers["Cache-Control"] == "no-cache"
    stale = await api(endpoint, file="sample.h5", headers={"If-None-Match": '"other"'}, **params)
    assert (stale.code, stale.body) == (200, first.body)


async def test_queries_have_their_own_tags(api, sample) -> None:
    """Different answers of one file never share a tag; arguments an endpoint does not read
    do not change it."""
    queries = [("data", {"path": "/values", **extra}) for extra in ({}, {"format": "bin"})]
    queries += [("data", {"path": "/image", "selection": "1:3"}), ("meta", {"path": "/values"})]
    queries += [("stats", {"path": "/image"}), ("stats", {"path": "/image", "selection": "0"})]
    tags = [(await api(e, file="sample.h5", **p)).headers["ETag"] for e, p in queries]
    assert len(set(tags)) == len(tags)
    ignored = await api("meta", file="sample.h5", path="/values", format="csv", selection="0")
    assert ignored.headers["ETag"] == tags[3]


async def test_rewritten_in_place_same_size_and_mtime(api, sample, write_h5) -> None:
    """A file rewritten in place with the same size and modification time: a new tag and the
    new values, never a 304 for the old tag nor an answer from the old open handle."""
    before = await api("data", file="sample.h5", path="/values")
    assert json.loads(before.body) == [1.0, 2.0, 3.0]
    old = os.stat(sample)
    newer = write_h5("newer.h5", lambda f: build_sample(f, [7.0, 8.0, 9.0])).read_bytes()
    assert len(newer) == old.st_size
    time.sleep(TICK)
    with open(sample, "r+b") as file:  # the same inode, written over
        file.write(newer)
    os.utime(sample, ns=(old.st_atime_ns, old.st_mtime_ns))
    new = os.stat(sample)
    assert (new.st_ino, new.st_size, new.st_mtime_ns) == (old.st_ino, old.st_size, old.st_mtime_ns)

    after = await api("data", file="sample.h5", path="/values", headers=tagged(before))
    assert (after.code, json.loads(after.body)) == (200, [7.0, 8.0, 9.0])
    assert after.headers["ETag"] != before.headers["ETag"]


async def test_replaced_file(api, sample, write_h5) -> None:
    """A file replaced by another (a new inode): a new tag, the new values."""
    before = await api("data", file="sample.h5", path="/values")
    replacement = write_h5("next.h5", lambda f: build_sample(f, [4.0, 5.0, 6.0]))
    os.replace(replacement, sample)
    after = await api("data", file="sample.h5", path="/values", headers=tagged(before))
    assert (after.code, json.loads(after.body)) == (200, [4.0, 5.0, 6.0])
    assert after.headers["ETag"] != before.headers["ETag"]


async def test_link_targets_in_the_tag(api, write_h5, jp_root_dir) -> None:
    """Group metadata describing an external link's target changes its tag when the target
    file changes, disappears or appears."""

    def master(f: h5py.File) -> None:
        f["scan"] = h5py.ExternalLink("scan.h5", "/data")

    write_h5("master.h5", master)
    absent = await api("meta", file="master.h5")
    assert (await api("meta", file="master.h5", headers=tagged(absent))).code == 304

    write_h5("scan.h5", lambda f: f.create_dataset("data", data=np.zeros(4)))
    present = await api("meta", file="master.h5", headers=tagged(absent))
    assert present.code == 200 and present.headers["ETag"] != absent.headers["ETag"]
    assert json.loads(present.body)["children"][0]["shape"] == [4]

    time.sleep(TICK)
    write_h5("scan.h5", lambda f: f.create_dataset("data", data=np.zeros(6)))
    changed = await api("meta", file="master.h5", headers=tagged(present))
    assert changed.code == 200 and changed.headers["ETag"] != present.headers["ETag"]
    assert json.loads(changed.body)["children"][0]["shape"] == [6]

    os.remove(Path(jp_root_dir) / "scan.h5")
    gone = await api("meta", file="master.h5", headers=tagged(changed))
    assert (gone.code, gone.headers["ETag"]) == (200, absent.headers["ETag"])


async def test_no_tag_for_unfollowed_files(api, write_h5) -> None:
    """Values HDF5 reads from files nobody notes (a virtual dataset's sources in other
    files) get no tag, only no-cache; the metadata, read from the file itself, has one."""
    write_h5("source.h5", lambda f: f.create_dataset("x", data=np.arange(4.0)))

    def build(f: h5py.File) -> None:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
        layout[:] = h5py.VirtualSource("source.h5", "x", shape=(4,))
        f.create_virtual_dataset("v", layout)

    write_h5("virtual.h5", build)
    data = await api("data", file="virtual.h5", path="/v")
    assert (data.code, json.loads(data.body)) == (200, [0.0, 1.0, 2.0, 3.0])
    assert "ETag" not in data.headers and data.headers["Cache-Control"] == "no-cache"
    assert "ETag" in (await api("meta", file="virtual.h5", path="/v")).headers


async def test_errors_have_no_tag(api, sample) -> None:
    response = await api("data", file="sample.h5", path="/nowhere")
    assert response.code == 404 and "ETag" not in response.headers


def service_over(root: Path) -> Service:
    """The service a worker runs, over `root`."""
    settings = Settings(str(root), False, False, 8, 64, Limits(2**26, 2**22))
    return build_service(settings, lambda: False)


def test_304_without_opening_hdf5(tmp_path: Path, monkeypatch) -> None:
    """A current tag is answered from the file's status alone: with HDF5 unable to open any
    file, the conditional request still gets its 304 (and a plain one fails)."""
    with h5py.File(tmp_path / "a.h5", "w") as f:
        build_sample(f)
    service = service_over(tmp_path)
    query = Query("data", "a.h5", "/values")
    answer = service.run(query)
    assert isinstance(answer, Reply)
    tag = answer.headers["ETag"]
    service.close()  # no open handle left to answer from

    opened: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        opened.append(args)
        raise OSError("HDF5 may not open files in this test")

    monkeypatch.setattr(h5py.h5f, "open", refuse)
    reply = service.run(query._replace(if_none_match=(tag,)))
    assert isinstance(reply, Reply)
    assert (reply.status, reply.parts, reply.headers["ETag"], opened) == (304, [], tag, [])
    with pytest.raises(InvalidFileError):
        service.run(query)
    assert opened


def test_copies_have_their_own_tags(tmp_path: Path) -> None:
    """Two copies of a file are two files (the identity is the file's, not its bytes')."""
    with h5py.File(tmp_path / "a.h5", "w") as f:
        build_sample(f)
    shutil.copy2(tmp_path / "a.h5", tmp_path / "copy.h5")
    service = service_over(tmp_path)
    answers = [service.run(Query("meta", name, "/values")) for name in ("a.h5", "copy.h5")]
    service.close()
    assert all(isinstance(answer, Reply) for answer in answers)
    assert answers[0].parts == answers[1].parts
    assert answers[0].headers["ETag"] != answers[1].headers["ETag"]


# ----------------------------------------------------------------------------- compression


@pytest.mark.parametrize(
    ("endpoint", "params"),
    [
        ("meta", {"path": "/group"}),
        ("paths", {"path": "/"}),
        ("data", {"path": "/big"}),
        ("data", {"path": "/big", "format": "csv"}),
        ("attr", {"path": "/big"}),
    ],
    ids=str,
)
async def test_compressed_when_asked(api, write_h5, endpoint, params) -> None:
    """Big JSON and CSV answers are gzip-compressed for clients that take it, and decode to
    the uncompressed answer; their tag differs from the uncompressed answer's."""

    def build(f: h5py.File) -> None:
        build_sample(f)
        f["big"] = np.arange(50_000) / 4
        f["big"].attrs["long"] = "word " * 2000

    write_h5("sample.h5", build)
    plain = await api(endpoint, file="sample.h5", decompress=False, **params)
    packed = await api(endpoint, file="sample.h5", decompress=False, headers=GZIP, **params)
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    assert plain.headers["Vary"] == packed.headers["Vary"] == "Accept-Encoding"
    assert plain.headers["Content-Type"] == packed.headers["Content-Type"]
    assert int(packed.headers["Content-Length"]) == len(packed.body) < len(plain.body) / 2
    assert gunzip(packed.body) == plain.body
    assert packed.headers["ETag"] != plain.headers["ETag"]
    conditional = {**GZIP, "If-None-Match": plain.headers["ETag"]}
    assert (await api(endpoint, file="sample.h5", headers=conditional, **params)).code == 200
    conditional["If-None-Match"] = packed.headers["ETag"]
    revalidated = await api(endpoint, file="sample.h5", headers=conditional, **params)
    assert revalidated.code == 304 and revalidated.headers["Vary"] == "Accept-Encoding"


@pytest.mark.parametrize(
    "accept", ["gzip;q=0", "identity", "br", "", "*;q=0", "gzip;q=0, *"], ids=repr
)
async def test_not_compressed_unless_taken(api, sample, accept) -> None:
    """gzip only for clients that take it (a zero quality refuses it)."""
    headers = {"Accept-Encoding": accept}
    response = await api("meta", file="sample.h5", path="/group", headers=headers)
    assert "Content-Encoding" not in response.headers, accept
    assert len(response.body) > 50_000


@pytest.mark.parametrize("accept", ["GZIP", "deflate, gzip;q=0.5", "*", "br;q=1, x-gzip"])
async def test_gzip_taken_in_any_spelling(api, sample, accept) -> None:
    headers = {"Accept-Encoding": accept}
    response = await api("meta", file="sample.h5", path="/group", headers=headers)
    assert response.headers.get("X-Consumed-Content-Encoding") == "gzip", accept


@pytest.mark.parametrize("fmt", ["bin", "npy", "tiff"])
async def test_binary_never_compressed(api, write_h5, fmt) -> None:
    """Binary answers go as they are, however compressible: no Content-Encoding, no Vary."""
    write_h5("zeros.h5", lambda f: f.create_dataset("x", data=np.zeros((256, 256), "f4")))
    response = await api(
        "data", file="zeros.h5", path="/x", format=fmt, decompress=False, headers=GZIP
    )
    assert response.code == 200
    assert "Content-Encoding" not in response.headers and "Vary" not in response.headers
    assert len(response.body) >= 256 * 256 * 4


async def test_small_answers_not_compressed(api, sample) -> None:
    """Under MIN_BYTES an answer fits the first round trip anyway: sent as it is."""
    response = await api("data", file="sample.h5", path="/values", decompress=False, headers=GZIP)
    assert len(response.body) < MIN_BYTES and "Content-Encoding" not in response.headers
    assert response.headers["Vary"] == "Accept-Encoding"


async def test_tornado_compression_not_doubled(api, sample, jp_web_app) -> None:
    """With tornado's compress_response on, answers are still compressed once, by us."""
    jp_web_app.transforms.append(GZipContentEncoding)
    try:
        raw = {"decompress": False, "path": "/group"}
        response = await api("meta", file="sample.h5", headers=GZIP, **raw)
        plain = await api("meta", file="sample.h5", **raw)
    finally:
        jp_web_app.transforms.remove(GZipContentEncoding)
    assert response.headers["Vary"] == "Accept-Encoding"
    assert "Content-Encoding" not in plain.headers
    assert gunzip(response.body) == plain.body


@pytest.mark.parametrize(
    ("values", "chosen"),
    [
        (np.cumsum(np.random.default_rng(1).standard_normal(300_000)), zlib.Z_HUFFMAN_ONLY),
        (np.zeros(300_000), zlib.Z_DEFAULT_STRATEGY),
        (np.repeat(np.arange(300), 1000), zlib.Z_DEFAULT_STRATEGY),
    ],
    ids=["measured", "zeros", "steps"],
)
def test_compression_strategy(values, chosen) -> None:
    """Big numeric JSON: Huffman coding alone where string matching finds nothing to reuse,
    level 1 where it does; either way one gzip member that decodes to the body."""
    body = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    parts = [body[: len(body) // 3], body[len(body) // 3 :]]
    assert strategy(parts) == chosen
    packed = gzip_body(parts)
    assert gunzip(packed) == body
    assert len(packed) <= len(zlib.compress(body, 1)) * 1.01
