"""NeXus master files: a group of 3,000 external links answered as h5grove answers it, with
every link checked against the root, never from a stale memory (issue 10).

Each test compares our answers with h5grove 4.0.0's own handlers mounted in the same server
(conftest's `oracle`), before and after the target files change under the server.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import error_message, pool_of

N_SCANS = 3000
GROUP = "/entry/data"


@pytest.fixture
def h5grove_config(request) -> dict:
    """No open-file cache (h5grove's handlers, in the same process, cannot open a file HDF5
    already holds open with other locking flags), plus per-test traits (indirect params)."""
    config = {"H5GroveApp": {"open_files_cache_size": 0, "worker_processes": 2}}
    config["H5GroveApp"].update(getattr(request, "param", {}).get("H5GroveApp", {}))
    return config


def write_scan(path: Path, index: int, shape: tuple[int, ...] = (2, 4, 4)) -> None:
    """A per-scan NeXus file: /entry/data/data and a few attributes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        dataset = data.create_dataset("data", data=np.full(shape, index % 65536, np.uint16))
        dataset.attrs["units"] = "counts"
        dataset.attrs["scale"] = np.int32(1)


def scan_name(index: int) -> str:
    return f"scan_{index:06d}"


@pytest.fixture(scope="module")
def scan_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 scan files, written once per module (tests hard-link them into their root)."""
    folder = tmp_path_factory.mktemp("scans")
    for index in range(N_SCANS):
        write_scan(folder / f"{scan_name(index)}.h5", index)
    return folder


@pytest.fixture
def master(jp_root_dir: Path, scan_files: Path) -> Path:
    """root/master.h5, whose /entry/data holds 3,000 external links to root/scans/*.h5 and two
    broken ones; the scan files are hard links of the module's (tests that change a target
    write it anew first, so the module's copy never changes)."""
    scans = jp_root_dir / "scans"
    scans.mkdir()
    for index in range(N_SCANS):
        os.link(scan_files / f"{scan_name(index)}.h5", scans / f"{scan_name(index)}.h5")
    path = jp_root_dir / "master.h5"
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = "master"
        entry["default"] = h5py.SoftLink("/entry/data")
        group = entry.create_group("data")
        group.attrs["NX_class"] = "NXdata"
        for index in range(N_SCANS):
            group[scan_name(index)] = h5py.ExternalLink(
                f"scans/{scan_name(index)}.h5", "/entry/data/data"
            )
        group["broken_missing_file"] = h5py.ExternalLink("scans/nope.h5", "/entry/data/data")
        group["broken_missing_path"] = h5py.ExternalLink("scans/scan_000000.h5", "/entry/nope")
    return path


def own(jp_root_dir: Path, index: int) -> Path:
    """Give scan `index` a file of its own (no longer shared with the module's copy)."""
    path = jp_root_dir / "scans" / f"{scan_name(index)}.h5"
    path.unlink()
    write_scan(path, index)
    return path


def children(body: bytes) -> dict[str, dict]:
    """The children of a group's metadata, by name."""
    return {child["name"]: child for child in json.loads(body)["children"]}


async def assert_same_as_h5grove(both, endpoint: str, pairs: list[tuple[str, str]]) -> bytes:
    """Our answer has h5grove's status, and its bytes when it succeeds (a 4xx where h5grove
    crashes with a 500: `paths` with resolve_links=all over a broken link); return ours."""
    theirs, ours = await both(endpoint, pairs, "master.h5")
    if theirs.code == 500:
        assert 400 <= ours.code < 500, (endpoint, pairs, ours.code, ours.body[:300])
    else:
        assert ours.code == theirs.code, (endpoint, pairs, ours.code, ours.body[:300])
    if theirs.code == 200:
        assert ours.body == theirs.body, (endpoint, pairs)
    else:
        error_message(ours, ours.code)
    return bytes(ours.body)


QUERIES = [
    ("meta", [("path", GROUP)]),
    ("meta", [("path", GROUP), ("resolve_links", "all")]),
    ("meta", [("path", "/")]),
    ("paths", []),
    ("paths", [("path", GROUP)]),
    ("paths", [("path", GROUP), ("resolve_links", "none")]),
    ("paths", [("path", GROUP), ("resolve_links", "all")]),
    ("paths", [("path", "/entry/default"), ("resolve_links", "only_valid")]),
]


async def test_master_group_as_h5grove(both, master, jp_serverapp) -> None:
    """meta and paths of the 3,000-link group and of the file equal h5grove's, the first time
    (when the targets are described by both worker processes) and again (when the targets'
    descriptions are remembered)."""
    await assert_same_as_h5grove(both, "meta", [("path", GROUP)])
    assert len(pool_of(jp_serverapp).pids) == 2, "the first description was not shared"
    for _ in range(2):
        for endpoint, pairs in QUERIES:
            await assert_same_as_h5grove(both, endpoint, pairs)
    described = children(await assert_same_as_h5grove(both, "meta", [("path", GROUP)]))
    assert len(described) == N_SCANS + 2
    assert described["scan_000042"]["kind"] == "dataset"
    assert described["scan_000042"]["shape"] == [2, 4, 4]
    assert described["broken_missing_file"]["kind"] == "external_link"
    assert described["broken_missing_path"]["kind"] == "external_link"


async def test_changed_targets_seen_at_next_request(both, master, jp_root_dir) -> None:
    """Targets rewritten in place (even keeping size and modification time), replaced,
    deleted, or losing the linked path are seen at the very next request."""
    in_place = own(jp_root_dir, 1)
    replaced, deleted, emptied = 2, 3, 4
    own(jp_root_dir, emptied)
    await assert_same_as_h5grove(both, "meta", [("path", GROUP)])  # remembered now

    before = in_place.stat()
    with h5py.File(in_place, "r+") as f:  # renamed in place: same size
        h5py.h5a.rename(f["/entry/data/data"].id, b"scale", b"gauge")
    os.utime(in_place, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = in_place.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns

    new = jp_root_dir / "scans" / "new.h5"
    write_scan(new, replaced, shape=(3, 5))
    os.replace(new, jp_root_dir / "scans" / f"{scan_name(replaced)}.h5")
    (jp_root_dir / "scans" / f"{scan_name(deleted)}.h5").unlink()
    with h5py.File(jp_root_dir / "scans" / f"{scan_name(emptied)}.h5", "r+") as f:
        del f["/entry/data/data"]

    described = children(await assert_same_as_h5grove(both, "meta", [("path", GROUP)]))
    assert [a["name"] for a in described[scan_name(1)]["attributes"]] == ["gauge", "units"]
    assert described[scan_name(replaced)]["shape"] == [3, 5]
    assert described[scan_name(deleted)]["kind"] == "external_link"
    assert described[scan_name(emptied)]["kind"] == "external_link"
    for pairs in ([("path", GROUP), ("resolve_links", "all")],):
        await assert_same_as_h5grove(both, "paths", pairs)  # 404: deleted targets

    write_scan(jp_root_dir / "scans" / f"{scan_name(deleted)}.h5", deleted, shape=(7,))
    described = children(await assert_same_as_h5grove(both, "meta", [("path", GROUP)]))
    assert described[scan_name(deleted)]["shape"] == [7]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A scan file outside the server's root."""
    path = tmp_path / "elsewhere" / "secret.h5"
    write_scan(path, 7)
    return path


def write_refused_links(root: Path, outside: Path) -> None:
    """root/refused.h5:/g with links outside the root in several ways, one to a hidden file
    (directly, and through a second link), and one ordinary link for contrast."""
    (root / "inside").mkdir()
    write_scan(root / "inside" / "ok.h5", 1)
    os.symlink(outside.parent, root / "door")
    write_scan(root / ".hidden" / "h.h5", 2)
    relative = os.path.relpath(outside, root)
    with h5py.File(root / "inside" / "chain.h5", "w") as f:  # a second hop, to the hidden file
        f["x"] = h5py.ExternalLink("../.hidden/h.h5", "/entry/data/data")
    with h5py.File(root / "refused.h5", "w") as f:
        group = f.create_group("g")
        group["absolute"] = h5py.ExternalLink(str(outside), "/entry/data/data")
        group["dotdot"] = h5py.ExternalLink(relative, "/entry/data/data")
        group["symlink"] = h5py.ExternalLink("door/secret.h5", "/entry/data/data")
        group["hidden"] = h5py.ExternalLink(".hidden/h.h5", "/entry/data/data")
        group["ok"] = h5py.ExternalLink("inside/ok.h5", "/entry/data/data")
        group["chain"] = h5py.ExternalLink("inside/chain.h5", "/x")


async def kinds(api, path: str = "/g") -> dict[str, str]:
    """Child name -> kind in our metadata of refused.h5:`path`."""
    response = await api("meta", file="refused.h5", path=path)
    assert response.code == 200, response.body
    return {name: child["kind"] for name, child in children(response.body).items()}


@pytest.mark.parametrize(
    "h5grove_config, through_symlink",
    [
        ({}, "dataset"),  # Jupyter follows symlinks inside the root (the default)
        ({"H5GroveApp": {"allow_symlinks_outside_root": False}}, "external_link"),
    ],
    indirect=["h5grove_config"],
)
async def test_targets_outside_root_stay_unresolved(
    api, jp_root_dir, outside, through_symlink, jp_serverapp
) -> None:
    """Links out of the root (absolute, `..`, through a symlink when confined, hidden) stay
    unresolved every time, and reading through them is refused (403)."""
    write_refused_links(jp_root_dir, outside)
    expected = {
        "absolute": "external_link",
        "dotdot": "external_link",
        "symlink": through_symlink,
        "hidden": "external_link",
        "ok": "dataset",
        "chain": "external_link",
    }
    for _ in range(2):  # the second time from memory
        assert await kinds(api) == expected
    for name in ("absolute", "dotdot", "hidden"):
        response = await api("data", file="refused.h5", path=f"/g/{name}")
        assert error_message(response, 403, 404)

    # A remembered target turned into a symlink out of the root is seen as such at once.
    ok = jp_root_dir / "inside" / "ok.h5"
    ok.unlink()
    os.symlink(outside, ok)
    assert (await kinds(api))["ok"] == through_symlink

    # Whether hidden files are served can change while the server runs.
    jp_serverapp.contents_manager.allow_hidden = True
    shown = await kinds(api)
    assert (shown["hidden"], shown["chain"]) == ("dataset", "dataset")
    jp_serverapp.contents_manager.allow_hidden = False
    shown = await kinds(api)
    assert (shown["hidden"], shown["chain"]) == ("external_link", "external_link")


@pytest.fixture
def few_file_descriptors():
    """Lower this process's (the server's) open-file limit to 256 above what is open now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, in_use + 256), hard))

    yield lower
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_describing_thousands_of_targets_keeps_few_files_open(
    both, api, master, few_file_descriptors
) -> None:
    """The 3,000 targets are opened one after the other, never all at once: with 256 file
    descriptors to spare, every link still resolves (h5grove's answer, taken before)."""
    theirs, _ = await both("meta", [("path", GROUP)], "master.h5")
    few_file_descriptors()
    ours = await api("meta", file="master.h5", path=GROUP)
    assert ours.code == 200 and ours.body == theirs.body


async def test_copy_of_master_elsewhere_resolves_its_own_targets(api, master, jp_root_dir):
    """Targets are relative to the file holding the link: a copy of the master file in a
    sub-folder without scans shows its links unresolved, the original keeps them resolved."""
    (jp_root_dir / "copy").mkdir()
    shutil.copy(master, jp_root_dir / "copy" / "master.h5")
    original = children((await api("meta", file="master.h5", path=GROUP)).body)
    copied = children((await api("meta", file="copy/master.h5", path=GROUP)).body)
    assert original[scan_name(5)]["kind"] == "dataset"
    assert copied[scan_name(5)]["kind"] == "external_link"
