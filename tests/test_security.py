"""Security: containment of `file`, hidden files, symlinks, HDF5 links / VDS / external storage
leaving the root, and authentication on every endpoint (issue 4, issue 3)."""

# Fixtures imported from safety_helpers are module-local on purpose (they override
# jp_server_config for these modules only); tests take them as arguments, hence F811.
# ruff: noqa: F811

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import h5py
import numpy as np
import pytest
from safety_helpers import (  # noqa: F401  (fixtures are used by name)
    ALL_ENDPOINTS,
    FILE_ENDPOINTS,
    assert_error,
    assert_ok_json,
    body_text,
    describe,
    extra_config,
    h5get,
    jp_server_config,
)

SECRET_VALUES = [700001, 700002, 700003, 700004, 700005]
CWD_VALUES = [900001, 900002, 900003, 900004, 900005]
SECRET_ATTR = "hunter2-outside-attr"
PASSWD = b"root:x:0:0:root:/root:/bin/bash\n"
CWD_RAW = b"CWDSECRETBYTES!!"

NO_SYMLINKS_OUT = {"H5GroveApp": {"allow_symlinks_outside_root": False}}
ALLOW_HIDDEN = {"ContentsManager": {"allow_hidden": True}}


def leaks(resp) -> bool:
    """True when a response body carries any byte of the outside secrets."""
    text = body_text(resp)
    raw = resp.body or b""
    return (
        SECRET_ATTR in text
        or "700003" in text
        or "900003" in text
        or b"root:x:0" in raw
        or CWD_RAW in raw
        or np.array(SECRET_VALUES).tobytes() in raw
        or np.array(CWD_VALUES).tobytes() in raw
    )


def write_secret(path: Path, values=SECRET_VALUES) -> None:
    with h5py.File(path, "w") as f:
        f["secret"] = np.array(values, dtype="i8")
        f["secret"].attrs["pw"] = SECRET_ATTR
        f.attrs["pw"] = SECRET_ATTR


@pytest.fixture
def tree(jp_root_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """root/{data.h5, sub/inner.h5, .hidden.h5, .hiddendir/v.h5, sub/.dot.h5} and
    tmp/outside/{secret.h5, passwd.txt}, tmp/cwd/{cwdsecret.h5, raw.bin}."""
    root = jp_root_dir
    outside = tmp_path / "outside"
    cwd = tmp_path / "cwd"
    for d in (root / "sub", root / ".hiddendir", outside, cwd):
        d.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "data.h5", "w") as f:
        f["entry/data"] = np.arange(12, dtype="f8").reshape(3, 4)
        f["entry/data"].attrs["units"] = "mm"
    with h5py.File(root / "sub" / "inner.h5", "w") as f:
        f["x"] = np.arange(5, dtype="i4")
    for p in (root / ".hidden.h5", root / ".hiddendir" / "v.h5", root / "sub" / ".dot.h5"):
        with h5py.File(p, "w") as f:
            f["x"] = np.arange(3)
    write_secret(outside / "secret.h5")
    (outside / "passwd.txt").write_bytes(PASSWD)
    write_secret(cwd / "cwdsecret.h5", CWD_VALUES)
    (cwd / "raw.bin").write_bytes(CWD_RAW)
    (root / "raw.bin").write_bytes(bytes(range(16)))
    return {"root": root, "outside": outside, "cwd": cwd, "secret": outside / "secret.h5"}


# --------------------------------------------------------------------------- `file` containment


def escape_spellings(root: Path, secret: Path) -> dict[str, str]:
    """Already-encoded values of `file` that all name tmp/outside/secret.h5 from root/."""
    q = urllib.parse.quote
    return {
        "plain": q("../outside/secret.h5"),
        "pct-dots": "%2e%2e/outside/secret.h5",
        "pct-all-upper": "%2E%2E%2Foutside%2Fsecret.h5",
        "pct-slash": "..%2Foutside%2Fsecret.h5",
        "backslash": "..%5Coutside%5Csecret.h5",
        "mixed-backslash": "sub%5C..%5C..%5Coutside/secret.h5",
        "double-slash": "sub//..//..//outside//secret.h5",
        "dot-segments": "./sub/./../../outside/./secret.h5",
        "down-up": "sub/../sub/../../outside/secret.h5",
        "leading-slash": "/../outside/secret.h5",
        "many-dotdots": "../" * 40 + q(str(secret).lstrip("/")),
        "absolute": q(str(secret)),
        "absolute-double-slash": "/" + q(str(secret)),
        "absolute-via-root": q(f"{root}/../outside/secret.h5"),
        "absolute-pct": q(str(secret), safe=""),
        "double-encoded": "%252e%252e%252Foutside%252Fsecret.h5",
        "overlong-utf8": "%c0%ae%c0%ae/outside/secret.h5",
        "nul-suffix": q("../outside/secret.h5") + "%00",
        "nul-middle": q("../outside/secret.h5") + "%00.png",
    }


SPELLING_IDS = list(escape_spellings(Path("/r"), Path("/o/secret.h5")))


@pytest.mark.parametrize("spelling", SPELLING_IDS)
async def test_file_escape_refused_without_revealing_existence(h5get, tree, spelling):
    """Every spelling of a path outside the root: 4xx JSON, same answer whether it exists."""
    value = escape_spellings(tree["root"], tree["secret"])[spelling]
    query = f"file={value}&path=/secret"
    existing = await h5get("meta", raw=query)
    msg_existing = assert_error(existing)
    assert not leaks(existing), describe(existing)

    tree["secret"].rename(tree["secret"].with_suffix(".gone"))
    missing = await h5get("meta", raw=query)
    msg_missing = assert_error(missing)
    assert (existing.code, msg_existing) == (missing.code, msg_missing), (
        f"answer reveals existence: {describe(existing)} vs {describe(missing)}"
    )


@pytest.mark.parametrize("endpoint", FILE_ENDPOINTS)
@pytest.mark.parametrize("spelling", ["plain", "pct-slash", "absolute"])
async def test_file_escape_refused_on_every_endpoint(h5get, tree, endpoint, spelling):
    """Containment holds for every endpoint, not only meta."""
    value = escape_spellings(tree["root"], tree["secret"])[spelling]
    resp = await h5get(endpoint, raw=f"file={value}&path=/secret")
    assert_error(resp)
    assert not leaks(resp), describe(resp)


async def test_absolute_path_inside_root_is_not_an_escape(h5get, tree):
    """An absolute OS path inside the root is served or refused cleanly, never a 5xx."""
    resp = await h5get("meta", file=str(tree["root"] / "data.h5"), path="/entry/data")
    if resp.code != 200:
        assert_error(resp)


async def test_dotdot_that_stays_inside_root(h5get, tree):
    """`sub/../data.h5` stays inside the root: served, or refused cleanly (never a 5xx)."""
    resp = await h5get("data", file="sub/../data.h5", path="/entry/data")
    if resp.code == 200:
        assert assert_ok_json(resp) == np.arange(12.0).reshape(3, 4).tolist()
    else:
        assert_error(resp)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("data.h5%00", id="nul-end"),
        pytest.param("data.h5%00.txt", id="nul-middle"),
        pytest.param("%00", id="nul-only"),
        pytest.param("a" * 300 + ".h5", id="name-too-long"),
        pytest.param("d/" * 2100 + "x.h5", id="path-too-long"),
        pytest.param("sub/" + "../" * 3000 + "etc/passwd", id="dotdot-flood"),
        pytest.param("%ff%fe.h5", id="invalid-utf8"),
    ],
)
async def test_nul_and_overlong_file_refused(h5get, tree, value):
    """NUL bytes, names/paths beyond OS limits and undecodable names: clean 4xx."""
    for endpoint in FILE_ENDPOINTS:
        assert_error(await h5get(endpoint, raw=f"file={value}&path=/"))


@pytest.mark.parametrize("endpoint", FILE_ENDPOINTS)
async def test_nul_and_overlong_hdf5_path_refused(h5get, tree, endpoint):
    """NUL bytes and huge values in the HDF5 `path`: clean 4xx."""
    assert_error(await h5get(endpoint, raw="file=data.h5&path=/entry%00/data"))
    assert_error(await h5get(endpoint, file="data.h5", path="/" + "x" * 20000))


FIFO_RELEASE = 20
"""Seconds after which a helper releases any reader blocked on a FIFO, so a failure cannot
hang the run. A refusal takes milliseconds; a blocked open lasts until the release: the test
tells them apart at FIFO_LIMIT, half-way, a margin no machine load closes."""
FIFO_LIMIT = FIFO_RELEASE / 2

FIFO_POKER = """
import errno, os, sys, time
path, delay = sys.argv[1], float(sys.argv[2])
time.sleep(delay)
while True:  # release any reader blocked on the FIFO (it then reads EOF); killed by the test
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as e:
        if e.errno != errno.ENXIO:
            raise
    time.sleep(0.05)
"""


async def test_fifo_in_root_does_not_hang_server(h5get, jp_root_dir, jp_fetch):
    """A named pipe in the root (`mkfifo data.h5`) is refused at once: opening it would block
    the worker (and h5py holds the GIL while it blocks, freezing the whole server).

    A helper process releases any blocked reader (FIFO_RELEASE), so a failure cannot hang
    the run.
    """
    fifo = jp_root_dir / "pipe.h5"
    os.mkfifo(fifo)
    poker = subprocess.Popen([sys.executable, "-c", FIFO_POKER, str(fifo), str(FIFO_RELEASE)])
    try:
        start = time.monotonic()
        resp = await h5get("meta", file="pipe.h5", path="/", timeout=60)
        elapsed = time.monotonic() - start
        assert_error(resp)
        assert elapsed < FIFO_LIMIT, f"server blocked {elapsed:.1f}s opening a FIFO"
        assert (await jp_fetch("api", "status")).code == 200
    finally:
        poker.kill()
        poker.wait(10)


def build_fifo_targets(root: Path) -> None:
    """root/fifo_*.h5 named pipes, and root/pipes.h5 reaching them as an external link target,
    a virtual dataset source and external raw storage."""
    for name in ("fifo_link.h5", "fifo_vds.h5", "fifo_raw.bin"):
        os.mkfifo(root / name)
    with h5py.File(root / "pipes.h5", "w") as f:
        f["ext"] = h5py.ExternalLink("fifo_link.h5", "/x")
        layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
        layout[:] = h5py.VirtualSource("fifo_vds.h5", "x", shape=(4,))
        f.create_virtual_dataset("vds", layout, fillvalue=-1)
        f.create_dataset(
            "raw", shape=(4,), dtype="u1", external=[(str(root / "fifo_raw.bin"), 0, 4)]
        )


@pytest.mark.parametrize(
    "endpoint, path",
    [("meta", "/"), ("meta", "/ext"), ("data", "/ext"), ("data", "/vds"), ("stats", "/vds"),
     ("data", "/raw")],
)  # fmt: skip
async def test_fifo_targets_do_not_hang_server(h5get, jp_root_dir, jp_fetch, endpoint, path):
    """Named pipes reached through an external link, a VDS source or external raw storage are
    refused or skipped at once, never opened (a blocking open freezes the whole server)."""
    build_fifo_targets(jp_root_dir)
    pokers = [
        subprocess.Popen(
            [sys.executable, "-c", FIFO_POKER, str(jp_root_dir / name), str(FIFO_RELEASE)]
        )
        for name in ("fifo_link.h5", "fifo_vds.h5", "fifo_raw.bin")
    ]
    try:
        start = time.monotonic()
        resp = await h5get(endpoint, file="pipes.h5", path=path, timeout=60)
        elapsed = time.monotonic() - start
        if resp.code != 200:
            assert_error(resp)
        assert elapsed < FIFO_LIMIT, f"server blocked {elapsed:.1f}s opening a FIFO"
        assert (await jp_fetch("api", "status")).code == 200
    finally:
        for poker in pokers:
            poker.kill()
            poker.wait(10)


# --------------------------------------------------------------------------- hidden files


HIDDEN = [".hidden.h5", ".hiddendir/v.h5", "sub/.dot.h5", "sub/../.hidden.h5", "./.hidden.h5"]


@pytest.mark.parametrize("endpoint", FILE_ENDPOINTS)
@pytest.mark.parametrize("name", HIDDEN)
async def test_hidden_refused_by_default(h5get, tree, endpoint, name):
    """Hidden files and files in hidden folders are refused (ContentsManager.allow_hidden=False)."""
    path = "/x" if endpoint not in ("meta", "paths", "attr") else "/"
    resp = await h5get(endpoint, file=name, path=path)
    assert_error(resp, 400, 403, 404)


@pytest.mark.parametrize("extra_config", [ALLOW_HIDDEN])
@pytest.mark.parametrize("name", HIDDEN)
async def test_hidden_served_when_allowed(h5get, tree, name):
    """With ContentsManager.allow_hidden=True, hidden files are served like any other."""
    resp = await h5get("data", file=name, path="/x")
    if name.startswith("sub/../") and resp.code != 200:
        # `..` may be refused as a spelling even when it stays inside the root.
        assert_error(resp)
        return
    assert assert_ok_json(resp) == [0, 1, 2]


class TestRootUnderHiddenFolder:
    """Only path components below the root count as hidden (as in Jupyter's contents API)."""

    @pytest.fixture
    def jp_root_dir(self, tmp_path: Path) -> Path:
        root = tmp_path / ".cache" / "root"
        root.mkdir(parents=True)
        return root

    async def test_files_served(self, h5get, jp_root_dir):
        with h5py.File(jp_root_dir / "ok.h5", "w") as f:
            f["x"] = np.arange(3)
        assert assert_ok_json(await h5get("data", file="ok.h5", path="/x")) == [0, 1, 2]


# --------------------------------------------------------------------------- symlinks


@pytest.fixture
def links(tree) -> dict[str, Path]:
    root, outside = tree["root"], tree["outside"]
    (root / "link_in.h5").symlink_to(root / "data.h5")
    (root / "linkdir").symlink_to(root / "sub", target_is_directory=True)
    (root / "link_out.h5").symlink_to(outside / "secret.h5")
    (root / "linkdir_out").symlink_to(outside, target_is_directory=True)
    (root / "dangling.h5").symlink_to(root / "nothing-here.h5")
    (root / "loop.h5").symlink_to(root / "loop.h5")
    return tree


async def test_symlinks_inside_root_followed(h5get, links):
    """Symlinks whose target is inside the root behave like the target."""
    data = assert_ok_json(await h5get("data", file="link_in.h5", path="/entry/data"))
    assert data == np.arange(12.0).reshape(3, 4).tolist()
    assert assert_ok_json(await h5get("data", file="linkdir/inner.h5", path="/x")) == list(range(5))


async def test_symlinks_outside_root_followed_by_default(h5get, links):
    """By default symlinks are followed like Jupyter follows them, even out of the root."""
    resp = await h5get("data", file="link_out.h5", path="/secret")
    assert assert_ok_json(resp) == SECRET_VALUES
    resp = await h5get("data", file="linkdir_out/secret.h5", path="/secret")
    assert assert_ok_json(resp) == SECRET_VALUES


@pytest.mark.parametrize("extra_config", [NO_SYMLINKS_OUT])
@pytest.mark.parametrize("endpoint", FILE_ENDPOINTS)
async def test_symlinks_outside_root_refused_when_configured(h5get, links, endpoint):
    """allow_symlinks_outside_root=False confines by real path; inside links still work."""
    for name in ("link_out.h5", "linkdir_out/secret.h5"):
        resp = await h5get(endpoint, file=name, path="/secret")
        assert_error(resp)
        assert not leaks(resp), describe(resp)
    resp = await h5get("meta", file="link_in.h5", path="/entry/data")
    assert assert_ok_json(resp)["kind"] == "dataset"
    resp = await h5get("meta", file="linkdir/inner.h5", path="/x")
    assert assert_ok_json(resp)["kind"] == "dataset"


@pytest.mark.parametrize("extra_config", [NO_SYMLINKS_OUT])
async def test_symlink_retargeted_outside_is_refused(h5get, tree):
    """With allow_symlinks_outside_root=False, the rule is applied to every request: a link or
    folder that was inside the root and now leads outside is refused (no remembered verdict)."""
    root, outside = tree["root"], tree["outside"]
    link = root / "swap.h5"
    link.symlink_to(root / "data.h5")
    folder = root / "folder"
    folder.mkdir()
    with h5py.File(folder / "secret.h5", "w") as f:
        f["secret"] = np.arange(5)
    assert (await h5get("data", file="swap.h5", path="/entry/data")).code == 200
    assert (await h5get("data", file="folder/secret.h5", path="/secret")).code == 200
    link.unlink()
    link.symlink_to(outside / "secret.h5")
    (folder / "secret.h5").unlink()
    folder.rmdir()
    folder.symlink_to(outside, target_is_directory=True)
    for file in ("swap.h5", "folder/secret.h5"):
        resp = await h5get("data", file=file, path="/secret")
        assert_error(resp)
        assert not leaks(resp), describe(resp)


@pytest.mark.parametrize("name", ["dangling.h5", "loop.h5"])
@pytest.mark.parametrize("endpoint", FILE_ENDPOINTS)
async def test_broken_and_looping_symlinks(h5get, links, name, endpoint):
    """Dangling and self-referencing symlinks: clean 4xx."""
    assert_error(await h5get(endpoint, file=name, path="/"))


# ------------------------------------------------- HDF5 external links, VDS, external storage


@pytest.fixture
def h5links(tree) -> dict[str, Path]:
    """root/master.h5 with external links in and out of the root, root/hop.h5 (a relay)."""
    root, outside = tree["root"], tree["outside"]
    (root / "link_out.h5").symlink_to(outside / "secret.h5")
    with h5py.File(root / "hop.h5", "w") as f:
        f["hop"] = h5py.ExternalLink("../outside/secret.h5", "/secret")
    with h5py.File(root / "master.h5", "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e["in_link"] = h5py.ExternalLink("data.h5", "/entry/data")
        e["in_sub"] = h5py.ExternalLink("sub/inner.h5", "/x")
        e["out_rel"] = h5py.ExternalLink("../outside/secret.h5", "/secret")
        e["out_abs"] = h5py.ExternalLink(str(outside / "secret.h5"), "/secret")
        e["out_root_group"] = h5py.ExternalLink("../outside/secret.h5", "/")
        e["out_cwd"] = h5py.ExternalLink("cwdsecret.h5", "/secret")
        e["out_chain"] = h5py.ExternalLink("hop.h5", "/hop")
        e["out_symlink"] = h5py.ExternalLink("link_out.h5", "/secret")
        e["hidden"] = h5py.ExternalLink(".hidden.h5", "/x")
        e["sneaky_soft"] = h5py.SoftLink("/entry/out_root_group/secret")
        e["local"] = np.arange(3)
    return tree


OUT_LINKS = ["out_rel", "out_abs", "out_cwd", "out_chain", "out_root_group"]


@pytest.fixture
def in_cwd(tree, monkeypatch):
    """Run with the process's working directory = tmp/cwd (HDF5 searches it for relative names)."""
    monkeypatch.chdir(tree["cwd"])
    return tree["cwd"]


@pytest.mark.parametrize("link", OUT_LINKS)
async def test_external_link_outside_root_meta_unresolved(h5get, h5links, in_cwd, link):
    """meta of an external link leaving the root: 200, shown as an unresolved external link."""
    resp = await h5get("meta", file="master.h5", path=f"/entry/{link}")
    meta = assert_ok_json(resp)
    assert meta["kind"] == "external_link", meta
    assert not leaks(resp), describe(resp)


async def test_external_link_outside_root_in_parent_meta_and_paths(h5get, h5links, in_cwd):
    """The parent group's meta lists the links unresolved; paths still answers."""
    resp = await h5get("meta", file="master.h5", path="/entry")
    children = {c["name"]: c for c in assert_ok_json(resp)["children"]}
    assert not leaks(resp), describe(resp)
    for link in OUT_LINKS:
        assert children[link]["kind"] == "external_link", children[link]
    assert children["in_link"]["kind"] == "dataset"
    assert children["local"]["kind"] == "dataset"
    paths = assert_ok_json(await h5get("paths", file="master.h5", path="/"))
    assert "/entry/out_rel" in paths and "/entry/in_link" in paths


@pytest.mark.parametrize("endpoint", ["data", "stats", "attr"])
@pytest.mark.parametrize("link", OUT_LINKS)
async def test_external_link_outside_root_reads_refused(h5get, h5links, in_cwd, endpoint, link):
    """data, stats and attr through an external link leaving the root: 4xx JSON, no bytes."""
    resp = await h5get(endpoint, file="master.h5", path=f"/entry/{link}")
    assert_error(resp)
    assert not leaks(resp), describe(resp)


THROUGH_LINKS = ["/entry/out_root_group/secret", "/entry/sneaky_soft", "/entry/out_chain"]


@pytest.mark.parametrize("path", THROUGH_LINKS)
async def test_paths_crossing_an_external_link_outside_root(h5get, h5links, path):
    """An HDF5 path that crosses a link out of the root mid-way (or a soft link or chain of
    files leading there) is not followed either."""
    for endpoint in ("data", "stats", "attr"):
        resp = await h5get(endpoint, file="master.h5", path=path)
        assert_error(resp)
        assert not leaks(resp), describe(resp)
    for resolve in ("only_valid", "all"):
        resp = await h5get("meta", file="master.h5", path=path, resolve_links=resolve)
        assert not leaks(resp), describe(resp)
        if resp.code == 200:
            assert assert_ok_json(resp)["kind"] in ("soft_link", "external_link"), describe(resp)
        else:
            assert_error(resp)


async def test_paths_listing_does_not_enter_outside_file(h5get, h5links):
    """`paths` from an external link to an outside group does not list the outside file."""
    for resolve in ("only_valid", "all", "none"):
        resp = await h5get(
            "paths", file="master.h5", path="/entry/out_root_group", resolve_links=resolve
        )
        if resp.code == 200:
            assert not any("secret" in p for p in assert_ok_json(resp)), describe(resp)
        else:
            assert_error(resp)


@pytest.mark.parametrize("resolve", ["all", "true", "only_valid", "none"])
async def test_external_link_outside_root_any_resolve_links(h5get, h5links, in_cwd, resolve):
    """No value of resolve_links makes the server follow a link out of the root."""
    for endpoint in ("meta", "paths"):
        resp = await h5get(endpoint, file="master.h5", path="/entry/out_rel", resolve_links=resolve)
        assert not leaks(resp), describe(resp)
        if resp.code == 200:
            body = assert_ok_json(resp)
            if endpoint == "meta":
                assert body["kind"] == "external_link", body
        else:
            assert_error(resp)
    resp = await h5get("meta", file="master.h5", path="/entry", resolve_links=resolve)
    assert not leaks(resp), describe(resp)
    if resp.code != 200:
        assert_error(resp)


async def test_external_link_outside_root_does_not_reveal_existence(h5get, h5links):
    """The answers through a link leaving the root do not depend on whether the target exists."""

    async def answers():
        out = []
        for endpoint in ("meta", "data", "stats", "attr"):
            resp = await h5get(endpoint, file="master.h5", path="/entry/out_rel")
            out.append((endpoint, resp.code, resp.body))
        return out

    existing = await answers()
    h5links["secret"].rename(h5links["secret"].with_suffix(".gone"))
    assert existing == await answers()


@pytest.mark.parametrize("extra_config", [NO_SYMLINKS_OUT])
async def test_external_link_through_symlink_out_refused_when_configured(h5get, h5links):
    """With allow_symlinks_outside_root=False, a link to a symlink leaving the root is refused."""
    meta = assert_ok_json(await h5get("meta", file="master.h5", path="/entry/out_symlink"))
    assert meta["kind"] == "external_link", meta
    resp = await h5get("data", file="master.h5", path="/entry/out_symlink")
    assert_error(resp)
    assert not leaks(resp), describe(resp)


async def test_external_link_through_symlink_out_followed_by_default(h5get, h5links):
    """By default the same rule as `file` applies: a symlink in the root is followed."""
    resp = await h5get("data", file="master.h5", path="/entry/out_symlink")
    assert assert_ok_json(resp) == SECRET_VALUES


async def test_external_link_to_hidden_file_refused(h5get, h5links):
    """Same rule as `file`: an external link to a hidden file is not followed by default."""
    assert_error(await h5get("data", file="master.h5", path="/entry/hidden"))


@pytest.mark.parametrize("extra_config", [ALLOW_HIDDEN])
async def test_external_link_to_hidden_file_followed_when_allowed(h5get, h5links):
    resp = await h5get("data", file="master.h5", path="/entry/hidden")
    assert assert_ok_json(resp) == [0, 1, 2]


async def test_external_links_inside_root_work(h5get, h5links):
    """Links to files inside the root resolve for meta, data, stats and attr."""
    meta = assert_ok_json(await h5get("meta", file="master.h5", path="/entry/in_link"))
    assert meta["kind"] == "dataset" and meta["shape"] == [3, 4]
    data = assert_ok_json(await h5get("data", file="master.h5", path="/entry/in_link"))
    assert data == np.arange(12.0).reshape(3, 4).tolist()
    stats = assert_ok_json(await h5get("stats", file="master.h5", path="/entry/in_link"))
    assert stats["max"] == 11.0 and stats["min"] == 0.0
    attrs = assert_ok_json(await h5get("attr", file="master.h5", path="/entry/in_link"))
    assert attrs == {"units": "mm"}
    sub = assert_ok_json(await h5get("data", file="master.h5", path="/entry/in_sub"))
    assert sub == list(range(5))


async def test_nexus_master_with_data_files_in_same_folder(h5get, jp_root_dir):
    """The common NeXus layout: master file + external links to data files next to it."""
    folder = jp_root_dir / "scan_0001"
    folder.mkdir()
    frames = np.arange(2 * 3 * 4, dtype="u2").reshape(2, 3, 4)
    for i in range(2):
        with h5py.File(folder / f"scan_data_{i:06d}.h5", "w") as f:
            f.create_dataset("entry/data/data", data=frames[i : i + 1], chunks=(1, 3, 4))
    with h5py.File(folder / "scan_master.h5", "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        for i in range(2):
            data[f"data_{i:06d}"] = h5py.ExternalLink(f"scan_data_{i:06d}.h5", "/entry/data/data")
    file = "scan_0001/scan_master.h5"
    meta = assert_ok_json(await h5get("meta", file=file, path="/entry/data"))
    assert {c["kind"] for c in meta["children"]} == {"dataset"}
    for i in range(2):
        path = f"/entry/data/data_{i:06d}"
        got = assert_ok_json(await h5get("data", file=file, path=path, selection="0"))
        assert got == frames[i].tolist()
        stats = assert_ok_json(await h5get("stats", file=file, path=path))
        assert stats["max"] == int(frames[i].max())


@pytest.fixture
def vds(tree) -> dict[str, Path]:
    """root/vds.h5 with virtual datasets mapping sources inside and outside the root."""
    root, outside = tree["root"], tree["outside"]
    with h5py.File(root / "src.h5", "w") as f:
        f["d"] = np.arange(5, dtype="i8") * 3

    def layout(file_name: str, dset: str):
        lay = h5py.VirtualLayout(shape=(5,), dtype="i8")
        lay[:] = h5py.VirtualSource(file_name, dset, shape=(5,))
        return lay

    with h5py.File(root / "vds.h5", "w") as f:
        f.create_virtual_dataset("vds_in", layout("src.h5", "d"), fillvalue=-1)
        f.create_virtual_dataset("vds_out", layout("../outside/secret.h5", "secret"), fillvalue=-1)
        f.create_virtual_dataset("vds_abs", layout(str(outside / "secret.h5"), "secret"), -1)
        f.create_virtual_dataset("vds_cwd", layout("cwdsecret.h5", "secret"), fillvalue=-1)
        mixed = h5py.VirtualLayout(shape=(10,), dtype="i8")
        mixed[:5] = h5py.VirtualSource("src.h5", "d", shape=(5,))
        mixed[5:] = h5py.VirtualSource("../outside/secret.h5", "secret", shape=(5,))
        f.create_virtual_dataset("vds_mixed", mixed, fillvalue=-1)
    return tree


async def test_vds_inside_root_works(h5get, vds):
    resp = await h5get("data", file="vds.h5", path="/vds_in")
    assert assert_ok_json(resp) == [0, 3, 6, 9, 12]
    stats = assert_ok_json(await h5get("stats", file="vds.h5", path="/vds_in"))
    assert stats["max"] == 12


@pytest.mark.parametrize("name", ["vds_out", "vds_abs", "vds_mixed"])
async def test_vds_outside_root_refused(h5get, vds, in_cwd, name):
    """A VDS with a source outside the root: meta answers, data/stats refused with 4xx JSON."""
    meta = await h5get("meta", file="vds.h5", path=f"/{name}")
    assert meta.code == 200, describe(meta)
    assert not leaks(meta)
    for endpoint, extra in [
        ("data", {}),
        ("data", {"format": "bin"}),
        ("data", {"format": "npy"}),
        ("data", {"selection": "1:3"}),
        ("stats", {}),
    ]:
        resp = await h5get(endpoint, file="vds.h5", path=f"/{name}", **extra)
        assert_error(resp)
        assert not leaks(resp), describe(resp)


async def test_vds_source_not_found_through_working_directory(h5get, vds, in_cwd):
    """A relative source name missing from the root must not be found in the server's cwd."""
    for endpoint in ("data", "stats"):
        for fmt in ("json", "bin"):
            resp = await h5get(endpoint, file="vds.h5", path="/vds_cwd", format=fmt)
            assert not leaks(resp), describe(resp)
            if resp.code != 200:
                assert_error(resp)


@pytest.fixture
def ext_storage(tree) -> dict[str, Path]:
    """root/ext.h5 with datasets whose raw data lives in external files."""
    root, outside = tree["root"], tree["outside"]
    with h5py.File(root / "ext.h5", "w") as f:
        f.create_dataset(
            "out_abs", shape=(16,), dtype="u1", external=[(str(outside / "passwd.txt"), 0, 16)]
        )
        f.create_dataset(
            "out_rel", shape=(16,), dtype="u1", external=[("../outside/passwd.txt", 0, 16)]
        )
        f.create_dataset("out_dev", shape=(16,), dtype="u1", external=[("/dev/zero", 0, 16)])
        f.create_dataset(
            "in_abs", shape=(16,), dtype="u1", external=[(str(root / "raw.bin"), 0, 16)]
        )
        f.create_dataset("cwd_rel", shape=(16,), dtype="u1", external=[("raw.bin", 0, 16)])
    return tree


@pytest.mark.parametrize("name", ["out_abs", "out_rel", "out_dev"])
async def test_external_storage_outside_root_refused(h5get, ext_storage, monkeypatch, name):
    """External raw storage outside the root (e.g. /etc/passwd-like bytes): meta 200, reads 4xx."""
    monkeypatch.chdir(ext_storage["root"])  # `../outside/...` leaves the root from cwd or file
    meta = await h5get("meta", file="ext.h5", path=f"/{name}")
    assert meta.code == 200, describe(meta)
    for endpoint, extra in [
        ("data", {}),
        ("data", {"format": "bin"}),
        ("data", {"format": "csv"}),
        ("data", {"selection": "0:4"}),
        ("stats", {}),
    ]:
        resp = await h5get(endpoint, file="ext.h5", path=f"/{name}", **extra)
        assert_error(resp)
        assert not leaks(resp), describe(resp)


async def test_external_storage_inside_root_works(h5get, ext_storage):
    resp = await h5get("data", file="ext.h5", path="/in_abs")
    assert assert_ok_json(resp) == list(range(16))
    resp = await h5get("data", file="ext.h5", path="/in_abs", format="bin")
    assert resp.code == 200 and resp.body == bytes(range(16)), describe(resp)


async def test_external_storage_not_read_from_working_directory(h5get, ext_storage, in_cwd):
    """A relative raw-data file is never taken from the server's cwd outside the root."""
    for fmt in ("json", "bin"):
        resp = await h5get("data", file="ext.h5", path="/cwd_rel", format=fmt)
        assert not leaks(resp), describe(resp)
        if resp.code == 200 and fmt == "bin":
            assert resp.body == bytes(range(16))  # resolved next to the file, inside the root
        elif resp.code != 200:
            assert_error(resp)


# --------------------------------------------------------------------------- authentication


def endpoint_query(endpoint: str) -> dict[str, str]:
    if endpoint == "":
        return {}
    return {"file": "data.h5", "path": "/entry" if endpoint == "paths" else "/entry/data"}


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
async def test_every_endpoint_answers_with_token(h5get, tree, endpoint):
    """Control: with the token, every endpoint answers 200."""
    resp = await h5get(endpoint, **endpoint_query(endpoint))
    assert resp.code == 200, describe(resp)


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
@pytest.mark.parametrize(
    "headers, raw",
    [
        pytest.param({"Authorization": ""}, "", id="no-token"),
        pytest.param({"Authorization": "token wrong-token"}, "", id="wrong-header-token"),
        pytest.param({"Authorization": "Bearer wrong-token"}, "", id="wrong-bearer"),
        pytest.param({"Authorization": ""}, "token=wrong-token", id="wrong-query-token"),
        pytest.param({"Authorization": "", "Cookie": "username-127-0-0-1=x"}, "", id="cookie"),
    ],
)
async def test_every_endpoint_requires_auth(h5get, tree, endpoint, headers, raw):
    """Without a valid token every endpoint (GET and the root's HEAD) answers 403, no data."""
    resp = await h5get(endpoint, headers=headers, raw=raw, **endpoint_query(endpoint))
    assert resp.code == 403, describe(resp)
    assert b"11.0" not in (resp.body or b""), describe(resp)
    if endpoint == "":
        head = await h5get("", headers=headers, raw=raw, method="HEAD")
        assert head.code == 403, describe(head)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_refused(h5get, tree, method):
    """The API is read-only: other methods answer a 4xx JSON error (405, or 403 for XSRF)."""
    for endpoint in ALL_ENDPOINTS:
        body = b"" if method != "DELETE" else None
        resp = await h5get(endpoint, method=method, body=body, **endpoint_query(endpoint))
        assert_error(resp, 403, 405)


async def test_query_token_accepted(h5get, tree, jp_serverapp):
    """The token may also be given as a query parameter, as everywhere in Jupyter."""
    token = jp_serverapp.identity_provider.token
    resp = await h5get("meta", headers={"Authorization": ""}, raw=f"token={token}", file="data.h5")
    assert resp.code == 200, describe(resp)
