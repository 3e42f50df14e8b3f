"""Every endpoint and parameter, compared with h5grove 4.0.0's own tornado handlers.

h5grove's handlers are mounted in the same test server (under `h5grove-oracle/`, over the same
root), so each request is sent to both: where h5grove answers 2xx we must answer the same
bytes and headers, where it answers 4xx the same status, and where it crashes (500) a 4xx
JSON message.
"""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import WORKER_MODES, error_message

COMPARED_HEADERS = ("Content-Type", "Content-Disposition", "Content-Length")
REFUSED_ON_PURPOSE = {
    ("data", "tiff"): "TIFF is documented as 2D only: h5grove writes odd files for 1D/3D",
}
"""Answers h5grove gives that we replace by a 422 (see README, Differences from h5grove)."""
MODULUS_STATS = {
    "strict_positive_min": 5**0.5,
    "positive_min": 5**0.5,
    "min": 5**0.5,
    "max": 5.0,
    "mean": (5**0.5 + 5) / 2,
    "std": (5 - 5**0.5) / 2,
}
"""Statistics of /complex, [1+2j, 3-4j]: those of its moduli, sqrt(5) and 5."""


def build(f: h5py.File) -> None:
    """A file with every kind of entity, type and link the endpoints have to handle."""
    f.attrs["title"] = "sample"
    f.attrs["numbers"] = np.arange(3)
    group = f.create_group("group")
    group.attrs["NX_class"] = "NXdata"
    group.attrs["scale"] = 2.5
    group["int2d"] = np.arange(24, dtype=np.int32).reshape(4, 6)
    group["int2d"].attrs["units"] = "counts"
    group.create_group("sub")["leaf"] = np.arange(5)
    f["float3d"] = np.linspace(-1, 1, 60).reshape(3, 4, 5)
    f.create_dataset(
        "chunked", data=np.arange(400.0).reshape(20, 20), chunks=(5, 5), compression="gzip"
    )
    f["float16_be"] = np.arange(6, dtype=">f2")
    f["uint8"] = np.arange(250, 256, dtype=np.uint8)
    f["bool"] = np.array([True, False, True])
    f["complex"] = np.array([1 + 2j, 3 - 4j])
    f["nans"] = np.array([np.nan, 1.0, -2.0, np.inf, 0.0])
    f["scalar"] = 42.5
    f["string"] = "hello"
    f["strings"] = np.array([b"a", b"bc"])
    f["empty1d"] = np.zeros((0,))
    f["soft"] = h5py.SoftLink("/group/int2d")
    f["broken"] = h5py.SoftLink("/nowhere")
    f["external"] = h5py.ExternalLink("other.h5", "/values")
    f["broken_external"] = h5py.ExternalLink("missing.h5", "/values")


DATASETS = (
    "/group/int2d",
    "/float3d",
    "/chunked",
    "/float16_be",
    "/uint8",
    "/bool",
    "/complex",
    "/nans",
    "/scalar",
    "/string",
    "/strings",
    "/empty1d",
    "/soft",
    "/external",
)
ENTITIES = ("/", "/group", "/group/sub", *DATASETS, "/broken", "/broken_external", "/nope")
LINK_MODES = (None, "none", "only_valid", "all", "true", "false", "bad")


def cases() -> list[tuple[str, list[tuple[str, str]]]]:
    """(endpoint, query pairs) covering every parameter and value class."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for path in ENTITIES:
        out.append(("meta", [("path", path)]))
        out.append(("attr", [("path", path)]))
        out.append(("paths", [("path", path)]))
    out.append(("meta", []))
    out.append(("paths", []))
    for mode in LINK_MODES:
        for path in ("/", "/soft", "/broken", "/external", "/broken_external"):
            pairs = [("path", path)] + ([("resolve_links", mode)] if mode else [])
            out.append(("meta", pairs))
            out.append(("paths", pairs))
    out.append(("attr", [("path", "/"), ("attr_keys", "title")]))
    out.append(("attr", [("path", "/"), ("attr_keys", "title"), ("attr_keys", "numbers")]))
    out.append(("attr", [("path", "/group"), ("attr_keys", "missing")]))
    for path in (*DATASETS, "/group", "/broken"):
        out.append(("data", [("path", path)]))
        out.append(("stats", [("path", path)]))
        for fmt in ("json", "bin", "npy", "csv", "tiff", "xml"):
            out.append(("data", [("path", path), ("format", fmt)]))
        for dtype in ("origin", "safe", "bogus"):
            out.append(("data", [("path", path), ("dtype", dtype), ("format", "bin")]))
    for selection in ("1", "1:3", "0:4:2", ":, 2", "1, 2:5", "::2, ::3", "-1", "5", "0:0",
                      "-99999999999999999999:99999999999999999999", "1:2:99"):  # fmt: skip
        for fmt in ("json", "bin", "npy", "csv", "tiff"):
            out.append(
                ("data", [("path", "/group/int2d"), ("selection", selection), ("format", fmt)])
            )
        out.append(("stats", [("path", "/group/int2d"), ("selection", selection)]))
    for selection in ("1, 2, 3", "a:b", "0:4:0", "99", "1,,2", "", "0:1:99999999999999999999"):
        out.append(("data", [("path", "/group/int2d"), ("selection", selection)]))
        out.append(("stats", [("path", "/group/int2d"), ("selection", selection)]))
    for flatten in ("true", "false", "False", "1", "0", ""):
        out.append(("data", [("path", "/float3d"), ("flatten", flatten)]))
        out.append(("data", [("path", "/float3d"), ("flatten", flatten), ("format", "npy")]))
    out.append(
        ("data", [("path", "/float3d"), ("selection", "1"), ("flatten", "true"), ("format", "csv")])
    )
    return out


@pytest.fixture(params=list(WORKER_MODES))
def h5grove_config(request) -> dict:
    """Every comparison runs against worker processes and against worker threads."""
    return WORKER_MODES[request.param]


@pytest.fixture
def sample(write_h5):
    """The sample file and the target of its external link."""
    write_h5("other.h5", lambda f: f.create_dataset("values", data=np.arange(3.0)))
    return write_h5("sample.h5", build)


@pytest.fixture
def both(both, sample):
    """conftest's `both`, on the sample file by default."""

    async def fetch(endpoint: str, pairs: list[tuple[str, str]], file: str = "sample.h5", raw=""):
        return await both(endpoint, pairs, file, raw)

    return fetch


def assert_same(theirs: Any, ours: Any, what: str, refused: bool = False) -> None:
    """Our answer equals h5grove's where it succeeds, has its status where it refuses."""
    if theirs.code < 300 and refused and ours.code == 422:
        error_message(ours, 422)
    elif theirs.code < 300:
        assert ours.code == theirs.code, (what, ours.code, ours.body[:300])
        assert ours.body == theirs.body, (what, ours.body[:300], theirs.body[:300])
        for header in COMPARED_HEADERS:
            assert ours.headers.get(header) == theirs.headers.get(header), (what, header)
    elif theirs.code < 500:
        assert ours.code == theirs.code, (what, ours.code, theirs.code, ours.body[:300])
        error_message(ours, theirs.code)
    else:
        # h5grove crashed: we answer a 4xx, or the right data where the input is usable
        # (e.g. h5grove's parser trips on spaces in "::2, ::3").
        assert ours.code < 500, (what, ours.code, ours.body[:300])
        if ours.code >= 400:
            error_message(ours, ours.code)


@pytest.mark.parametrize(("endpoint", "pairs"), cases(), ids=lambda v: str(v))
async def test_same_as_h5grove(both, endpoint: str, pairs: list[tuple[str, str]]) -> None:
    """Same answer as h5grove for every endpoint and parameter value."""
    theirs, ours = await both(endpoint, pairs)
    if endpoint == "stats" and dict(pairs)["path"] == "/complex":
        # On purpose: statistics of the moduli (README, Differences from h5grove).
        assert json.loads(ours.body) == pytest.approx(MODULUS_STATS), ours.body
        return
    refused = (endpoint, dict(pairs).get("format")) in REFUSED_ON_PURPOSE
    assert_same(theirs, ours, f"{endpoint} {pairs}", refused)


ENDPOINT_PATHS = {"meta": "/group", "attr": "/group", "data": "/chunked", "stats": "/chunked",
                  "paths": "/group"}  # fmt: skip
ARGUMENTS = ("path", "resolve_links", "attr_keys", "selection", "dtype", "format", "flatten")


@pytest.mark.parametrize("argument", ARGUMENTS)
@pytest.mark.parametrize("endpoint", list(ENDPOINT_PATHS))
async def test_argument_that_is_not_utf8(both, endpoint: str, argument: str) -> None:
    """An argument holding a byte that is not UTF-8 matters only to the endpoints that read
    it (400 there, as h5grove): the others answer as if it were absent."""
    pairs = [] if argument == "path" else [("path", ENDPOINT_PATHS[endpoint])]
    theirs, ours = await both(endpoint, pairs, raw=f"{argument}=%FF")
    assert_same(theirs, ours, f"{endpoint} {argument}=%FF")
    if theirs.code == 200:
        plain = (await both(endpoint, pairs))[1]
        assert (ours.code, ours.body) == (plain.code, plain.body)


@pytest.mark.parametrize("file", ["missing.h5", "group-does-not-matter/x.h5"])
async def test_missing_file_404(both, file: str) -> None:
    """A missing file is 404 'File not found', like h5grove."""
    for endpoint in ("meta", "attr", "data", "stats", "paths"):
        theirs, ours = await both(endpoint, [], file=file)
        assert theirs.code == ours.code == 404
        assert error_message(ours, 404).startswith("File not found")


async def test_missing_file_argument_400(api, sample) -> None:
    """`file` is required on every file endpoint (400, as h5grove)."""
    for endpoint in ("meta", "attr", "data", "stats", "paths"):
        assert error_message(await api(endpoint, path="/"), 400) == "Missing argument file"


async def test_root_get_and_head(api) -> None:
    """The root endpoint answers 200 to GET and HEAD, with and without a final slash."""
    for slash in (False, True):
        response = await api("", trailing_slash=slash)
        assert (response.code, response.body) == (200, b"ok")
        # h5grove's tornado handler answers with tornado's default content type for text.
        assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
        head = await api("", method="HEAD", trailing_slash=slash)
        assert head.code == 200


@pytest.mark.parametrize("endpoint", ["meta", "attr", "data", "stats", "paths"])
async def test_trailing_slash(api, sample, endpoint: str) -> None:
    """Every endpoint also answers with a trailing slash."""
    path = "/group/int2d" if endpoint in ("data", "stats") else "/group"
    plain = await api(endpoint, file="sample.h5", path=path)
    slashed = await api(endpoint, file="sample.h5", path=path, trailing_slash=True)
    assert plain.code == slashed.code == 200
    assert plain.body == slashed.body


async def test_exact_content_length(api, sample) -> None:
    """Content-Length is the body's length (test_http_caching.py checks the ETags)."""
    response = await api("data", file="sample.h5", path="/chunked", format="bin")
    assert response.code == 200
    assert int(response.headers["Content-Length"]) == len(response.body) == 400 * 8


async def test_subfolder_with_space_and_unicode(api, write_h5) -> None:
    """Files in sub-folders with spaces and non-ASCII names are found (URL-decoded once)."""
    write_h5("my data/été 1.h5", lambda f: f.create_dataset("x", data=[1, 2, 3]))
    response = await api("data", file="my data/été 1.h5", path="/x")
    assert json.loads(response.body) == [1, 2, 3]


async def test_error_is_json_without_traceback(api, sample) -> None:
    """Errors carry only a message: never a traceback or a 'reason' from jupyter_server."""
    response = await api("data", file="sample.h5", path="/group/int2d", selection="0:4:0")
    message = error_message(response, 422)
    assert "Traceback" not in message
