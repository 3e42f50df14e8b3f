"""Containment hooks: external links, VDS and external raw storage under a guard."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from h5fixtures import build_containment_tree, build_everything_file

from jupyter_h5grove import errors
from jupyter_h5grove.content import create_content
from jupyter_h5grove.encoders import stream_encode
from jupyter_h5grove.files import FileIdentity
from jupyter_h5grove.guard import RootGuard, link_target_candidates
from jupyter_h5grove.models import LinkResolution


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(root, master file) with data inside and outside the root."""
    root = tmp_path / "root"
    master = build_containment_tree(root, tmp_path / "outside")
    return root, master


class CountingGuard(RootGuard):
    """RootGuard that records which files it opened."""

    def __init__(self, root: Path) -> None:
        super().__init__(str(root), True)
        self.opened: list[str] = []

    def open_file(self, from_file: str, target_file: str) -> h5py.File:
        f = super().open_file(from_file, target_file)
        self.opened.append(f.filename)
        return f

    @contextlib.contextmanager
    def visit(self, os_path: str) -> Iterator[tuple[h5py.h5f.FileID, FileIdentity]]:
        with super().visit(os_path) as (fid, identity):
            self.opened.append(os.fsdecode(fid.name))
            yield fid, identity


def test_without_guard_everything_is_followed(tree: tuple[Path, Path]) -> None:
    """No guard: h5grove's behaviour, HDF5 follows every link."""
    _root, master = tree
    with h5py.File(master, "r", locking=False) as f:
        assert create_content(f, "/ext_outside").data().tolist() == list(range(6))
        assert create_content(f, "/via_soft").kind == "dataset"


def test_links_inside_root_work(tree: tuple[Path, Path]) -> None:
    """External links to files inside the root are resolved through the guard."""
    root, master = tree
    guard = CountingGuard(root)
    with h5py.File(master, "r", locking=False) as f:
        content = create_content(f, "/ext_inside", guard=guard)
        assert content.kind == "dataset"
        assert content.data().tolist() == [100.0, 101, 102, 103, 104, 105]
        inner = create_content(f, "/ext_inside_group/inner", guard=guard)
        assert inner.data().tolist() == [0, 1, 2]
        assert create_content(f, "/vds_inside", guard=guard).data()[0] == 100
        # External raw storage resolves against the working directory (HDF5's default).
        cwd = os.getcwd()
        os.chdir(root)
        try:
            assert create_content(f, "/raw_inside", guard=guard).data().tolist() == [0, 1, 2, 3]
        finally:
            os.chdir(cwd)
    assert all(os.path.commonpath([p, str(root)]) == str(root) for p in guard.opened)


@pytest.mark.parametrize("path", ["/ext_outside", "/ext_outside_abs", "/via_soft"])
def test_links_outside_root_are_blocked(tree: tuple[Path, Path], path: str) -> None:
    """Outside targets show as unresolved external links; reads through them are 403."""
    root, master = tree
    guard = CountingGuard(root)
    with h5py.File(master, "r", locking=False) as f:
        content = create_content(f, path, guard=guard)
        if path == "/via_soft":
            assert content.kind == "soft_link"
        else:
            assert content.kind == "external_link"
            assert content.metadata()["target_path"] == "/data"
        for call in (content.data, content.data_stats, content.attributes):
            with pytest.raises(errors.ForbiddenError):
                call()
        with pytest.raises(errors.ForbiddenError):
            create_content(f, path, LinkResolution.ALL, guard=guard)
        assert create_content(f, path, LinkResolution.NONE, guard=guard).kind != "dataset"
        meta = create_content(f, "/", guard=guard).metadata()
        kinds = {child["name"]: child["kind"] for child in meta["children"]}
        assert kinds["ext_outside"] == "external_link"
        assert kinds["ext_inside"] == "dataset"
    assert guard.opened, "the inside target was described without being opened?"
    assert all(os.path.commonpath([p, str(root)]) == str(root) for p in guard.opened)


def test_intermediate_external_segment_is_blocked(tree: tuple[Path, Path]) -> None:
    """A path going *through* an outside external link is refused, never opened."""
    root, master = tree
    guard = CountingGuard(root)
    with h5py.File(master, "r", locking=False) as f:
        with pytest.raises(errors.ForbiddenError):
            create_content(f, "/ext_outside_group/inner", guard=guard)
        with pytest.raises(errors.PathError):
            create_content(f, "/ext_inside_group/nope", guard=guard)
    assert all(os.path.commonpath([p, str(root)]) == str(root) for p in guard.opened)


@pytest.mark.parametrize("path", ["/vds_outside", "/raw_outside"])
def test_storage_outside_root_is_refused(tree: tuple[Path, Path], path: str) -> None:
    """VDS sources and external raw files outside: metadata yes, data/stats 403."""
    root, master = tree
    guard = RootGuard(str(root))
    with h5py.File(master, "r", locking=False) as f:
        content = create_content(f, path, guard=guard)
        assert content.metadata()["shape"] in ((6,), (4,))
        for call in (content.data, content.data_stats, lambda: stream_encode(content)):
            with pytest.raises(errors.ForbiddenError):
                call()


def test_symlink_rules(tmp_path: Path) -> None:
    """Symlinks leading outside are allowed only with follow_symlinks_outside."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert RootGuard(str(root), True).allows(str(root / "link" / "x.h5"))
    assert not RootGuard(str(root), False).allows(str(root / "link" / "x.h5"))
    assert not RootGuard(str(root), True).allows(str(root / ".." / "outside" / "x.h5"))
    assert not RootGuard(str(root), True).allows(str(tmp_path / "rootx" / "a.h5"))


def test_link_target_candidates(tmp_path: Path) -> None:
    """Relative names resolve next to the linking file; absolute ones also by base name."""
    src = str(tmp_path / "a" / "f.h5")
    assert link_target_candidates(src, "b/g.h5") == [str(tmp_path / "a" / "b" / "g.h5")]
    assert link_target_candidates(src, "/x/g.h5") == ["/x/g.h5", str(tmp_path / "a" / "g.h5")]


def test_guarded_everything_file_matches_unguarded(tmp_path: Path) -> None:
    """With all files inside the root, a guard changes nothing in metadata or data."""
    path = build_everything_file(tmp_path / "e.h5")
    guard = RootGuard(str(tmp_path))
    with h5py.File(path, "r") as f:
        for mode in LinkResolution:
            plain = create_content(f, "/", mode).metadata(3)
            guarded = create_content(f, "/", mode, guard=guard).metadata(3)
            assert plain == guarded
        for p in [
            "/links/external_group/inner",
            "/links/soft_to_group/rank2",
            "/links/soft_relative",
        ]:
            a = create_content(f, p).data()
            b = create_content(f, p, guard=guard).data()
            assert np.array_equal(a, b, equal_nan=True)
        for p in ["/links/soft_self", "/links/external_missing_file", "/links/soft_broken"]:
            assert create_content(f, p, guard=guard).kind.endswith("link")
            with pytest.raises(errors.LinkError):
                create_content(f, p, LinkResolution.ALL, guard=guard)
        with pytest.raises(errors.PathError):
            create_content(f, "", guard=guard)


def _vds(f: h5py.File, name: str, source_file: str, source_dset: str) -> None:
    """A 6-element virtual dataset mapping one source."""
    layout = h5py.VirtualLayout(shape=(6,), dtype="f8")
    layout[:] = h5py.VirtualSource(source_file, source_dset, shape=(6,))
    f.create_virtual_dataset(name, layout, fillvalue=-1)


def test_nested_virtual_sources_are_checked(tree: tuple[Path, Path]) -> None:
    """A VDS whose (inside) source is itself a VDS reading outside is refused too."""
    root, _master = tree
    outside_rel = os.path.relpath(root.parent / "outside" / "source.h5", root / "sub")
    with h5py.File(root / "sub" / "relay.h5", "w") as f:
        _vds(f, "relay", outside_rel, "data")
        _vds(f, "relay_ok", "source.h5", "data")
    with h5py.File(root / "chain.h5", "w") as f:
        _vds(f, "via_relay", "sub/relay.h5", "relay")
        _vds(f, "via_relay_ok", "sub/relay.h5", "relay_ok")
        _vds(f, "same_file_hop", ".", "via_relay")
    guard = RootGuard(str(root))
    with h5py.File(root / "chain.h5", "r", locking=False) as f:
        for path in ("/via_relay", "/same_file_hop"):
            with pytest.raises(errors.ForbiddenError):
                create_content(f, path, guard=guard).data()
        assert create_content(f, "/via_relay_ok", guard=guard).data()[0] == 100


def test_fifo_storage_is_refused(tmp_path: Path) -> None:
    """VDS sources / raw files that are FIFOs are refused before HDF5 could block on them."""
    os.mkfifo(tmp_path / "fifo_vds.h5")
    os.mkfifo(tmp_path / "fifo_raw.bin")
    with h5py.File(tmp_path / "pipes.h5", "w") as f:
        _vds(f, "vds", "fifo_vds.h5", "x")
        f.create_dataset("raw", (4,), "u1", external=[(str(tmp_path / "fifo_raw.bin"), 0, 4)])
    guard = RootGuard(str(tmp_path))
    with h5py.File(tmp_path / "pipes.h5", "r", locking=False) as f:
        for path in ("/vds", "/raw"):
            with pytest.raises(errors.ForbiddenError, match="not a file"):
                create_content(f, path, guard=guard).data_stats()


def test_chunk_nbytes(tmp_path: Path) -> None:
    """selection_info tells how much one compressed chunk decompresses to."""
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("gz", (100, 100), "f4", chunks=(50, 100), compression="gzip")
        f.create_dataset("plain", (100, 100), "f4", chunks=(50, 100))
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert create_content(f, "/gz").selection_info("0, 0:4").chunk_nbytes == 20000
        assert create_content(f, "/gz").selection_info("0:0").chunk_nbytes == 0
        assert create_content(f, "/plain").selection_info().chunk_nbytes == 0


def test_chunk_nbytes_through_vds(tmp_path: Path) -> None:
    """With a guard, a VDS reports the compressed chunk size of its sources."""
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f.create_dataset("gz", (100, 100), "f4", chunks=(100, 100), compression="gzip")
    with h5py.File(tmp_path / "v.h5", "w") as f:
        layout = h5py.VirtualLayout(shape=(100, 100), dtype="f4")
        layout[:] = h5py.VirtualSource("src.h5", "gz", shape=(100, 100))
        f.create_virtual_dataset("v", layout)
    with h5py.File(tmp_path / "v.h5", "r", locking=False) as f:
        content = create_content(f, "/v", guard=RootGuard(str(tmp_path)))
        assert content.selection_info("0, 0:4").chunk_nbytes == 40000
        assert create_content(f, "/v").selection_info().chunk_nbytes == 0  # no guard: own only
