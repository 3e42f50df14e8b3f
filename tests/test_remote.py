"""Remote data: HDF5 files in an S3-compatible store (moto) and on an HTTP server, served like
local files, only under the configured prefixes, and never from a stale cache (issue 12).

The stores are real servers on loopback (remote_servers.py); counting proxies in front of
them, and a tripwire listener, show which requests reach a network at all.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import boto3
import h5py
import numpy as np
import pytest
from conftest import error_message
from h5fixtures import build_everything_file, dataset_paths, entity_paths
from remote_servers import (
    TEST_KEY,
    TEST_SECRET,
    start_http,
    start_moto,
    start_proxy,
)

from jupyter_h5grove import H5Web

BUCKET = "test-bucket"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files every store serves: the everything file (and its link target), a NeXus-like
    master file with its scans, a file linking out of the prefix."""
    folder = tmp_path_factory.mktemp("remote") / "allowed"
    folder.mkdir()
    build_everything_file(folder / "everything.h5", loops=False)
    (folder / "scans").mkdir()
    for index in range(3):
        with h5py.File(folder / "scans" / f"scan_{index}.h5", "w") as f:
            f.create_dataset("data", data=np.full((4, 5), index, "u2"), compression="gzip")
    with h5py.File(folder / "master.h5", "w") as f:
        group = f.create_group("entry")
        for index in range(3):
            group[f"scan_{index}"] = h5py.ExternalLink(f"scans/scan_{index}.h5", "/data")
        group["outside"] = h5py.ExternalLink("../secret/s.h5", "/data")
        group["local"] = h5py.ExternalLink("/etc/passwd", "/data")
        group["absolute_url"] = h5py.ExternalLink("https://169.254.169.254/x.h5", "/data")
    with h5py.File(folder / "heat.h5", "w") as f:
        f.create_dataset(
            "x", data=np.arange(512 * 512, dtype="f4").reshape(512, 512), chunks=(64, 64),
            compression="gzip",
        )  # fmt: skip
    secret = folder.parent / "secret"
    secret.mkdir()
    with h5py.File(secret / "s.h5", "w") as f:
        f["data"] = np.arange(3)
    return folder.parent


@pytest.fixture(scope="module")
def moto(files: Path):
    """moto's S3 server holding the files under s3://test-bucket/, a counting proxy in
    front of it: yields the proxy."""
    with start_moto() as port, start_proxy(port) as proxy:
        client = s3_client(port)
        client.create_bucket(Bucket=BUCKET)
        for path in files.rglob("*"):
            if path.is_file():
                client.upload_file(str(path), BUCKET, str(path.relative_to(files)))
        proxy.moto_port = port  # type: ignore[attr-defined]
        yield proxy


def s3_client(port: int) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=TEST_KEY,
        aws_secret_access_key=TEST_SECRET,
    )


@pytest.fixture(scope="module")
def tripwire():
    """A listener nothing should ever reach: refused URLs and redirects point here."""
    with start_proxy(None) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def web(files: Path, tripwire):
    """The files over HTTP (with byte ranges), behind a counting proxy: yields the proxy.
    /allowed/moved.h5 redirects to /allowed/heat.h5, /allowed/away.h5 to the tripwire."""
    folder = files / "served"
    shutil.copytree(files, folder, ignore=shutil.ignore_patterns("served"))
    redirects = {
        "/allowed/moved.h5": "/allowed/heat.h5",
        "/allowed/away.h5": f"http://127.0.0.1:{tripwire.port}/allowed/heat.h5",
    }
    with start_http(folder, redirects) as server_port, start_proxy(server_port) as proxy:
        yield proxy


def s3_url(proxy, path: str = "") -> str:
    return f"s3://{BUCKET}/allowed/{path}"


def http_url(proxy, path: str = "") -> str:
    return f"http://127.0.0.1:{proxy.port}/allowed/{path}"


@pytest.fixture
def h5grove_config(moto, web) -> dict:
    """Both stores configured (the S3 one through its proxy), short timeouts."""
    roots = {
        f"s3://{BUCKET}/allowed/": {
            "endpoint_url": f"http://127.0.0.1:{moto.port}",
            "key": TEST_KEY,
            "secret": TEST_SECRET,
        },
        http_url(web): {},
    }
    return {"H5GroveApp": {"remote_roots": roots, "worker_processes": 2}}


@pytest.fixture
def local(files: Path, jp_root_dir: Path) -> Path:
    """The same files in the server's root, to compare with."""
    shutil.copytree(files / "allowed", jp_root_dir / "allowed")
    return jp_root_dir / "allowed"


def queries(path: Path) -> list[tuple[str, dict[str, str]]]:
    """A representative set of requests on the everything file."""
    out: list[tuple[str, dict[str, str]]] = []
    for entity in entity_paths(path):
        out += [("meta", {"path": entity}), ("attr", {"path": entity})]
    for number, dataset in enumerate(dataset_paths(path)):
        out += [("data", {"path": dataset}), ("data", {"path": dataset, "format": "bin"})]
        if number % 3 == 0:
            out += [
                ("data", {"path": dataset, "format": "npy", "dtype": "safe"}),
                ("stats", {"path": dataset}),
                ("data", {"path": dataset, "selection": "0"}),
            ]
    out += [("paths", {}), ("paths", {"path": "/links", "resolve_links": "all"})]
    return out


STORAGE_IN_OTHER_FILES = {"/storage/vds", "/storage/vds_missing_source", "/storage/external_raw"}
"""Datasets whose values come from other files: read locally, refused (403) remotely."""


@pytest.mark.parametrize("store", ["s3", "http"])
async def test_same_answers_as_local(api, local, moto, web, store) -> None:
    """Every endpoint answers a remote file as it answers the same file on the local disk:
    same status, same bytes, same headers (but the datasets stored in other files)."""
    remote = s3_url(moto, "everything.h5") if store == "s3" else http_url(web, "everything.h5")
    differences = []
    for endpoint, params in queries(local / "everything.h5"):
        theirs = await api(endpoint, file="allowed/everything.h5", **params)
        ours = await api(endpoint, file=remote, **params)
        if params.get("path") in STORAGE_IN_OTHER_FILES and endpoint in ("data", "stats"):
            assert ours.code == 403, (endpoint, params, ours.body)
            continue
        same = ours.code == theirs.code and (theirs.code != 200 or ours.body == theirs.body)
        for header in ("Content-Type", "Content-Length", "Content-Disposition"):
            same = same and (
                theirs.code != 200 or ours.headers.get(header) == theirs.headers.get(header)
            )
        if not same:
            differences.append((endpoint, params, theirs.code, ours.code, ours.body[:200]))
    assert not differences, differences[:5]


@pytest.mark.parametrize("store", ["s3", "http"])
async def test_external_links_under_the_prefix(api, moto, web, store) -> None:
    """A master file's links to files beside it are followed; links out of the prefix, to a
    local file or to a host not configured stay unresolved, and reading through them is 403."""
    url = s3_url(moto, "master.h5") if store == "s3" else http_url(web, "master.h5")
    response = await api("meta", file=url, path="/entry")
    assert response.code == 200, response.body
    kinds = {c["name"]: c["kind"] for c in json.loads(response.body)["children"]}
    assert kinds == {
        "scan_0": "dataset",
        "scan_1": "dataset",
        "scan_2": "dataset",
        "outside": "external_link",
        "local": "external_link",
        "absolute_url": "external_link",
    }
    data = await api("data", file=url, path="/entry/scan_2")
    assert json.loads(data.body) == np.full((4, 5), 2).tolist()
    for name in ("outside", "local", "absolute_url"):
        error_message(await api("data", file=url, path=f"/entry/{name}"), 403)


REFUSED = [
    "s3://test-bucket/other/everything.h5",
    "s3://another-bucket/allowed/everything.h5",
    "s3://test-bucket/allowed/../secret/s.h5",
    "s3://test-bucket/allowed/%2e%2e/secret/s.h5",
    "s3://test-bucket/allowed/everything.h5?versionId=1",
    "s3://key:secret@test-bucket/allowed/everything.h5",
    "file:///etc/passwd",
    "memory://allowed/everything.h5",
    "gopher://127.0.0.1/x",
    "http://169.254.169.254/latest/meta-data/",
    "HTTP://127.0.0.1:{trip}/allowed/heat.h5",
    "http://127.0.0.1:{web}/secret/s.h5",
    "http://127.0.0.1:{web}/allowed/%2E%2E/secret/s.h5",
    "http://127.0.0.1:{web}/allowed/..%2Fsecret/s.h5",
    "http://user@127.0.0.1:{web}/allowed/heat.h5",
    "http://127.0.0.1:{web}@127.0.0.1:{trip}/allowed/heat.h5",
    "http://127.0.0.1:{web}/allowed/heat.h5#x",
]


@pytest.mark.parametrize("template", REFUSED)
async def test_refused_before_any_network_access(api, moto, web, tripwire, template) -> None:
    """URLs outside the prefixes, with dot segments, user-info, a query or fragment, or
    another scheme: 403 JSON, and no store, proxy or tripwire sees a connection."""
    url = template.format(web=web.port, trip=tripwire.port)
    before = (moto.connections, web.connections, tripwire.connections)
    response = await api("meta", file=url, path="/")
    message = error_message(response, 403, 422)
    assert "Traceback" not in message
    assert (moto.connections, web.connections, tripwire.connections) == before


class TestOffByDefault:
    """No remote_roots: no URL is served."""

    @pytest.fixture
    def h5grove_config(self) -> dict:
        return {}

    async def test_refused(self, api, tripwire) -> None:
        url = f"http://127.0.0.1:{tripwire.port}/allowed/heat.h5"
        before = tripwire.connections
        message = error_message(await api("meta", file=url, path="/"), 403)
        assert "remote_roots" in message
        assert tripwire.connections == before


async def test_redirects_only_under_the_prefixes(api, web, tripwire) -> None:
    """A redirect to a URL under a prefix is followed; one elsewhere is not (502 naming the
    store), and the place it points to is never contacted."""
    moved = await api("data", file=http_url(web, "moved.h5"), path="/x", selection="0, 0:3")
    assert moved.code == 200 and json.loads(moved.body) == [0.0, 1.0, 2.0]
    before = tripwire.connections
    message = error_message(await api("meta", file=http_url(web, "away.h5"), path="/"), 502)
    assert "redirected" in message and "127.0.0.1" in message
    assert tripwire.connections == before


@pytest.mark.parametrize("store", ["s3", "http"])
async def test_missing_object_404(api, moto, web, store) -> None:
    url = s3_url(moto, "nope.h5") if store == "s3" else http_url(web, "nope.h5")
    assert "nope.h5" in error_message(await api("meta", file=url, path="/"), 404)


@pytest.mark.parametrize("store", ["s3", "http"])
async def test_chunks_fetched_together(api, moto, web, jp_serverapp, store) -> None:
    """A window of compressed chunks costs about the chunks' bytes, fetched in one go."""
    url = s3_url(moto, "heat.h5") if store == "s3" else http_url(web, "heat.h5")
    proxy = moto if store == "s3" else web
    assert (await api("meta", file=url, path="/x")).code == 200
    before = proxy.connections
    response = await api("data", file=url, path="/x", selection="64:192,64:192", format="bin")
    want = np.arange(512 * 512, dtype="f4").reshape(512, 512)[64:192, 64:192]
    assert response.body == want.tobytes()
    assert proxy.connections - before <= 10  # 4 chunks, fetched concurrently at most


class TestChangedObject:
    """An object replaced in the store is seen as it is now at the next request."""

    async def test_replaced_object(self, api, moto, files, tmp_path) -> None:
        client = s3_client(moto.moto_port)
        url = s3_url(moto, "changing.h5")
        for values in ([1, 2, 3], [7, 8, 9, 10]):
            with h5py.File(tmp_path / "changing.h5", "w") as f:
                f["x"] = np.array(values)
            client.upload_file(str(tmp_path / "changing.h5"), BUCKET, "allowed/changing.h5")
            response = await api("data", file=url, path="/x")
            assert json.loads(response.body) == values


@pytest.fixture(scope="module")
def silent():
    """A store that accepts connections and never answers."""
    with start_proxy(None, "hold") as proxy:
        yield proxy


class TestFaults:
    """Stores that fail: answers name them, never 500, never past request_timeout."""

    @pytest.fixture
    def dead_port(self) -> int:
        from remote_servers import free_port

        return free_port()  # nothing listens there

    @pytest.fixture
    def h5grove_config(self, silent, dead_port) -> dict:
        roots = {f"http://127.0.0.1:{port}/data/": {} for port in (silent.port, dead_port)}
        return {"H5GroveApp": {"remote_roots": roots, "request_timeout": 6, "worker_processes": 2}}

    async def test_store_not_listening_502(self, api, dead_port) -> None:
        url = f"http://127.0.0.1:{dead_port}/data/a.h5"
        assert f"127.0.0.1:{dead_port}" in error_message(await api("meta", file=url), 502)

    async def test_store_never_answering_504(self, api, silent, write_h5) -> None:
        """A store that accepts and never answers: 504 naming it, after the store timeout
        (half of request_timeout); meanwhile local files are served by the other worker."""
        write_h5("here.h5", lambda f: f.create_dataset("x", data=[1, 2]))
        url = f"http://127.0.0.1:{silent.port}/data/a.h5"
        waiting = asyncio.ensure_future(api("meta", file=url, path="/"))
        served = 0
        while not waiting.done():  # bounded: the store timeout ends it
            response = await api("data", file="here.h5", path="/x")
            assert (response.code, response.body) == (200, b"[1,2]")
            served += 1
            await asyncio.sleep(0.05)
        message = error_message(waiting.result(), 504)
        assert f"127.0.0.1:{silent.port}" in message, message
        assert served >= 3


LOCAL_ANSWER_LIMIT = 2.5
"""Seconds a local answer may take while remote requests wait on a silent store: ~10 ms
normally, a second or so on a loaded VM; a local request queued behind a remote one would
wait for the store timeout (5 s here)."""


class TestLocalFirst:
    """Remote requests waiting on their store never hold up local files, whatever the
    number of worker processes."""

    @pytest.fixture(params=[1, 2], ids=lambda n: f"{n}-workers")
    def h5grove_config(self, request, silent) -> dict:
        roots = {f"http://127.0.0.1:{silent.port}/data/": {}}
        return {
            "H5GroveApp": {
                "remote_roots": roots,
                "request_timeout": 10,  # the store timeout is half of it
                "worker_processes": request.param,
            }
        }

    async def test_local_answers_while_remote_waits(self, api, silent, write_h5) -> None:
        write_h5("here.h5", lambda f: f.create_dataset("x", data=[1, 2]))
        before = silent.connections
        remote = [
            asyncio.ensure_future(
                api("data", file=f"http://127.0.0.1:{silent.port}/data/{name}.h5", path="/x")
            )
            for name in ("a", "b")
        ]
        for _ in range(200):  # bounded: until the first remote request reached the store
            if silent.connections > before:
                break
            await asyncio.sleep(0.05)
        slowest = 0.0
        served = 0
        while not all(task.done() for task in remote):  # bounded: the store timeouts end them
            started = time.monotonic()
            response = await api("data", file="here.h5", path="/x")
            slowest = max(slowest, time.monotonic() - started)
            assert (response.code, response.body) == (200, b"[1,2]")
            served += 1
            await asyncio.sleep(0.05)
        for task in remote:
            error_message(task.result(), 504)
        assert served >= 5
        assert slowest < LOCAL_ANSWER_LIMIT, slowest


def test_notebook_helper(tmp_path: Path, monkeypatch) -> None:
    """H5Web(...) outputs what jupyterlab-h5web renders: a URL as given, a local path
    (relative to the notebook's folder) made absolute, checked to exist."""
    bundle, _ = H5Web("s3://beamline-data/2026/scan_17.nxs")._repr_mimebundle_()
    assert bundle == {"application/x-hdf5": "s3://beamline-data/2026/scan_17.nxs"}
    (tmp_path / "a.h5").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    bundle, _ = H5Web("a.h5")._repr_mimebundle_()
    assert bundle == {"application/x-hdf5": str(tmp_path / "a.h5")}
    with pytest.raises(FileNotFoundError):
        H5Web("missing.h5")
