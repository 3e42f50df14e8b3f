"""`file` -> OS path: containment in the root, hidden files, symlinks, odd files."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import error_message

from jupyter_h5grove.errors import ForbiddenError, NotFoundError, QueryArgumentError
from jupyter_h5grove.paths import RootPolicy


def make(f: h5py.File) -> None:
    """A tiny file."""
    f["x"] = np.arange(3)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with a file, a hidden file, a hidden folder, and a secret file next to root/."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden_dir").mkdir()
    for path in (root / "a.h5", root / "sub" / "b.h5", root / ".hidden.h5", tmp_path / "secret.h5"):
        with h5py.File(path, "w") as f:
            make(f)
    (root / ".hidden_dir" / "c.h5").write_bytes((root / "a.h5").read_bytes())
    os.symlink(tmp_path / "secret.h5", root / "link_out.h5")
    os.symlink(root / "sub", root / "link_in")
    return root


def policy(root: Path, hidden: bool = False, symlinks_out: bool = True) -> RootPolicy:
    """A policy over `root`."""
    return RootPolicy(str(root), lambda: hidden, symlinks_out)


class TestRootPolicy:
    """Unit tests of the one place resolving `file`."""

    @pytest.mark.parametrize("file", ["a.h5", "sub/b.h5", "./a.h5", "sub/../a.h5", "link_in/b.h5"])
    def test_inside(self, tree: Path, file: str) -> None:
        """Relative paths inside the root resolve under it."""
        assert policy(tree).resolve(file) == os.path.normpath(tree / file)

    def test_absolute_inside_is_accepted(self, tree: Path) -> None:
        """An absolute path inside the root is the same file."""
        assert policy(tree).resolve(str(tree / "a.h5")) == str(tree / "a.h5")

    @pytest.mark.parametrize(
        "file", ["../secret.h5", "sub/../../secret.h5", "/etc/passwd", "..", "../root2/x.h5"]
    )
    def test_outside_is_forbidden(self, tree: Path, file: str) -> None:
        """Escapes are refused whether or not the target exists."""
        with pytest.raises(ForbiddenError):
            policy(tree).resolve(file)

    def test_sibling_with_common_prefix(self, tree: Path) -> None:
        """root2/ is not inside root/ although the string starts alike."""
        with pytest.raises(ForbiddenError):
            policy(tree).resolve(str(tree) + "2/x.h5")

    @pytest.mark.parametrize("file", ["a\x00.h5", "x" * 5000, "d/" + "y" * 300, "", "  "])
    def test_impossible_paths(self, tree: Path, file: str) -> None:
        """NUL bytes, over-long paths or names and empty names are 422s before any I/O."""
        with pytest.raises(QueryArgumentError):
            policy(tree).resolve(file)

    @pytest.mark.parametrize("file", [".hidden.h5", ".hidden_dir/c.h5"])
    def test_hidden(self, tree: Path, file: str) -> None:
        """Hidden files and folders are 'not found' unless allowed."""
        with pytest.raises(NotFoundError):
            policy(tree).resolve(file)
        assert policy(tree, hidden=True).resolve(file) == str(tree / file)

    def test_remembered_verdicts_follow_allow_hidden(self, tree: Path) -> None:
        """Accepted paths are remembered per allow_hidden value: toggling it takes effect."""
        allowed = [True]
        rule = RootPolicy(str(tree), lambda: allowed[0])
        for _ in range(2):
            allowed[0] = True
            assert rule.resolve(".hidden.h5") == str(tree / ".hidden.h5")
            assert rule.resolve("a.h5") == str(tree / "a.h5")
            allowed[0] = False
            with pytest.raises(NotFoundError):
                rule.resolve(".hidden.h5")
            assert rule.resolve("a.h5") == str(tree / "a.h5")
        for _ in range(2):  # refusals are never remembered as acceptances
            with pytest.raises(ForbiddenError):
                rule.resolve("../secret.h5")

    def test_symlink_out(self, tree: Path) -> None:
        """Followed by default (as Jupyter does); confined by real path when configured."""
        assert policy(tree).resolve("link_out.h5") == str(tree / "link_out.h5")
        with pytest.raises(ForbiddenError):
            policy(tree, symlinks_out=False).resolve("link_out.h5")
        assert policy(tree, symlinks_out=False).resolve("link_in/b.h5")

    def test_contains_same_rule(self, tree: Path) -> None:
        """The rule applied to HDF5 link targets is the rule applied to `file`."""
        assert policy(tree).contains(str(tree / "sub" / "b.h5"))
        assert not policy(tree).contains(str(tree.parent / "secret.h5"))
        assert not policy(tree).contains(str(tree / ".hidden.h5"))
        assert not policy(tree, symlinks_out=False).contains(str(tree / "link_out.h5"))


@pytest.fixture
def files(jp_root_dir: Path, write_h5) -> Path:
    """Files in the server root and a secret next to it."""
    write_h5("a.h5", make)
    write_h5(".hidden.h5", make)
    write_h5(".hidden_dir/c.h5", make)
    write_h5("sub dir/b.h5", make)
    secret = jp_root_dir.parent / "secret.h5"
    with h5py.File(secret, "w") as f:
        make(f)
    os.symlink(secret, jp_root_dir / "link_out.h5")
    return jp_root_dir


@pytest.mark.parametrize(
    "raw",
    [
        "file=../secret.h5",
        "file=%2e%2e/secret.h5",
        "file=%2E%2E%2Fsecret.h5",
        "file=sub%20dir/../../secret.h5",
        "file=./../secret.h5",
        "file=..%2f..%2f..%2fetc%2fpasswd",
    ],
)
async def test_dotdot_escapes_403(api, files, raw: str) -> None:
    """`..` in any spelling the server decodes is refused without touching the outside."""
    message = error_message(await api("meta", raw=raw), 403)
    assert "outside" in message


async def test_absolute_paths(api, files: Path) -> None:
    """Absolute paths: outside the root refused (same answer whether or not it exists)."""
    existing = error_message(await api("meta", file=str(files.parent / "secret.h5")), 403)
    missing = error_message(await api("meta", file=str(files.parent / "nothing.h5")), 403)
    assert existing.replace("secret", "nothing") == missing
    response = await api("data", file=str(files / "a.h5"), path="/x")
    assert (response.code, response.body) == (200, b"[0,1,2]")


@pytest.mark.parametrize("raw", ["file=a%00.h5", "file=a.h5%00", "file=" + "x" * 5000])
async def test_nul_and_long_422(api, files, raw: str) -> None:
    """NUL bytes (which tornado would turn into spaces) and over-long paths are 422."""
    error_message(await api("meta", raw=raw), 422)


@pytest.mark.parametrize("file", [".hidden.h5", ".hidden_dir/c.h5"])
async def test_hidden_refused_by_default(api, files, file: str) -> None:
    """Hidden files look like missing files (404), as in Jupyter's contents API."""
    assert error_message(await api("meta", file=file), 404).startswith("File not found")


class TestAllowHidden:
    """With ContentsManager.allow_hidden, hidden files are served."""

    @pytest.fixture
    def h5grove_config(self):
        """Allow hidden files in the contents manager."""
        return {"ContentsManager": {"allow_hidden": True}}

    @pytest.mark.parametrize("file", [".hidden.h5", ".hidden_dir/c.h5"])
    async def test_hidden_served(self, api, files, file: str) -> None:
        """Hidden files and folders are served."""
        response = await api("data", file=file, path="/x")
        assert (response.code, response.body) == (200, b"[0,1,2]")


async def test_symlink_out_followed_by_default(api, files) -> None:
    """A symlink in the root pointing outside is followed, like Jupyter's file browser does."""
    assert (await api("data", file="link_out.h5", path="/x")).code == 200


class TestConfinedSymlinks:
    """With allow_symlinks_outside_root=False, the real path must be inside the root."""

    @pytest.fixture
    def h5grove_config(self):
        """Confine by real path."""
        return {"H5GroveApp": {"allow_symlinks_outside_root": False}}

    async def test_symlink_out_refused(self, api, files) -> None:
        """The outside target is refused."""
        assert "outside" in error_message(await api("meta", file="link_out.h5"), 403)

    async def test_inside_still_served(self, api, files) -> None:
        """Plain files are unaffected."""
        assert (await api("meta", file="sub dir/b.h5")).code == 200


async def test_not_found_directory_and_not_hdf5(api, files: Path) -> None:
    """Missing 404; directory, non-HDF5, empty and truncated files 422; never a 500."""
    assert error_message(await api("meta", file="nope.h5"), 404) == "File not found: nope.h5"
    assert "directory" in error_message(await api("meta", file="sub dir"), 422)
    (files / "text.h5").write_text("hello")
    (files / "empty.h5").write_bytes(b"")
    (files / "cut.h5").write_bytes((files / "a.h5").read_bytes()[:1000])
    for name in ("text.h5", "empty.h5", "cut.h5"):
        message = error_message(await api("meta", file=name), 422)
        assert "not a valid HDF5 file" in message
        assert str(files) not in message  # never reveal OS paths


async def test_fifo_is_refused_not_opened(api, files: Path) -> None:
    """A FIFO would block a worker forever: refused before opening."""
    os.mkfifo(files / "pipe.h5")
    assert "regular file" in error_message(await api("meta", file="pipe.h5"), 422)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
async def test_unreadable_403(api, files: Path) -> None:
    """A file the server cannot read is 403, as in h5grove."""
    (files / "a.h5").chmod(0)
    assert "permission" in error_message(await api("meta", file="a.h5"), 403)
