"""Open-file cache: handles are reused only while the file is unchanged, and never closed in use."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from jupyter_h5grove.errors import ForbiddenError, InvalidFileError, NotFoundError
from jupyter_h5grove.files import FileCache, os_error


def write(path: Path, values) -> None:
    """A file with one dataset `x`."""
    with h5py.File(path, "w") as f:
        f["x"] = np.asarray(values)


def read(cache: FileCache, path: Path):
    """`x` read through the cache."""
    with cache.open(str(path), path.name) as f:
        return f["x"][()].tolist()


def test_reuses_unchanged_file(tmp_path: Path) -> None:
    """The same handle serves consecutive requests of an unchanged file."""
    write(tmp_path / "a.h5", [1, 2])
    cache = FileCache(4)
    with cache.open(str(tmp_path / "a.h5"), "a.h5") as first:
        pass
    with cache.open(str(tmp_path / "a.h5"), "a.h5") as second:
        assert second is first and second.id.valid


def test_replaced_file_is_reopened(tmp_path: Path) -> None:
    """A file replaced by rename (new inode) is seen as it is now."""
    cache = FileCache(4)
    write(tmp_path / "a.h5", [1, 2])
    assert read(cache, tmp_path / "a.h5") == [1, 2]
    write(tmp_path / "new.h5", [3, 4, 5])
    os.replace(tmp_path / "new.h5", tmp_path / "a.h5")
    assert read(cache, tmp_path / "a.h5") == [3, 4, 5]


def test_overwritten_in_place_is_reopened(tmp_path: Path) -> None:
    """A file rewritten in place (same inode, same size) is not served stale."""
    cache = FileCache(4)
    write(tmp_path / "a.h5", [1, 2])
    assert read(cache, tmp_path / "a.h5") == [1, 2]
    inode = os.stat(tmp_path / "a.h5").st_ino
    code = "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); f['x'][...] = [7, 8]; f.close()"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.h5")], check=True)
    stat = os.stat(tmp_path / "a.h5")
    os.utime(tmp_path / "a.h5", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert os.stat(tmp_path / "a.h5").st_ino == inode
    assert read(cache, tmp_path / "a.h5") == [7, 8]


def test_rewritten_keeping_size_and_mtime_is_reopened(tmp_path: Path) -> None:
    """A file rewritten in place whose size and modification time are then restored (as some
    copy tools do) is seen by its status-change time, which no program can set: an open
    handle would still show the object header HDF5 cached (here, an attribute's old name)."""
    cache = FileCache(4)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = [1, 2]
        f["x"].attrs["scale"] = 1

    def attributes() -> list[str]:
        with cache.open(str(tmp_path / "a.h5"), "a.h5") as f:
            return list(f["x"].attrs)

    assert attributes() == ["scale"]
    before = os.stat(tmp_path / "a.h5")
    code = (
        "import h5py, sys; f = h5py.File(sys.argv[1], 'r+');"
        "h5py.h5a.rename(f['x'].id, b'scale', b'gauge'); f.close()"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.h5")], check=True)
    os.utime(tmp_path / "a.h5", ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(tmp_path / "a.h5")
    unchanged = (after.st_ino, after.st_size, after.st_mtime_ns)
    assert unchanged == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert attributes() == ["gauge"]


def test_deleted_then_recreated(tmp_path: Path) -> None:
    """Deleted: 404 (and the handle is dropped); recreated: the new content."""
    cache = FileCache(4)
    write(tmp_path / "a.h5", [1])
    assert read(cache, tmp_path / "a.h5") == [1]
    os.remove(tmp_path / "a.h5")
    with pytest.raises(NotFoundError):
        read(cache, tmp_path / "a.h5")
    assert not cache._entries
    write(tmp_path / "a.h5", [2])
    assert read(cache, tmp_path / "a.h5") == [2]


def test_eviction_never_closes_a_busy_handle(tmp_path: Path) -> None:
    """With a cache of 1, opening another file keeps the leased one open until released."""
    cache = FileCache(1)
    write(tmp_path / "a.h5", [1])
    write(tmp_path / "b.h5", [2])
    with cache.open(str(tmp_path / "a.h5"), "a.h5") as a:
        assert read(cache, tmp_path / "b.h5") == [2]
        assert a.id.valid and a["x"][()].tolist() == [1]
    assert not a.id.valid  # evicted, closed once released
    assert list(cache._entries) == [str(tmp_path / "b.h5")]


def test_stale_while_busy_closes_after_release(tmp_path: Path) -> None:
    """A handle found stale while another request uses it is closed only after that request."""
    cache = FileCache(4)
    write(tmp_path / "a.h5", [1])
    with cache.open(str(tmp_path / "a.h5"), "a.h5") as old:
        write(tmp_path / "new.h5", [2])
        os.replace(tmp_path / "new.h5", tmp_path / "a.h5")
        assert read(cache, tmp_path / "a.h5") == [2]
        assert old.id.valid and old["x"][()].tolist() == [1]
    assert not old.id.valid


def test_disabled_cache_closes_each_time(tmp_path: Path) -> None:
    """open_files_cache_size=0: every request opens and closes its own handle."""
    cache = FileCache(0)
    write(tmp_path / "a.h5", [1])
    with cache.open(str(tmp_path / "a.h5"), "a.h5") as f:
        pass
    assert not f.id.valid and not cache._entries


def test_threads_share_safely(tmp_path: Path) -> None:
    """Many threads reading many files through a small cache: right answers, no errors."""
    cache = FileCache(3)
    for k in range(6):
        write(tmp_path / f"{k}.h5", [k] * 100)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(200):
                k = (seed + i) % 6
                assert read(cache, tmp_path / f"{k}.h5") == [k] * 100
        except BaseException as error:  # collected for the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cache._entries) <= 3
    cache.close_all()
    assert not cache._entries


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (FileNotFoundError(errno.ENOENT, "x"), NotFoundError),
        (PermissionError(errno.EACCES, "x"), ForbiddenError),
        (IsADirectoryError(errno.EISDIR, "x"), InvalidFileError),
        (OSError("Unable to open file (file signature not found)"), InvalidFileError),
        (OSError(errno.ELOOP, "loop"), InvalidFileError),
    ],
)
def test_os_errors_map_to_domain_errors(error: OSError, expected: type) -> None:
    """OS failures become domain errors whose messages name the API path only."""
    mapped = os_error(error, "dir/a.h5")
    assert isinstance(mapped, expected)
    assert "dir/a.h5" in str(mapped)


async def test_endpoint_sees_replaced_file(api, write_h5, jp_root_dir: Path) -> None:
    """Through the server: replace, overwrite, delete, recreate between requests."""
    write_h5("a.h5", lambda f: f.create_dataset("x", data=[1, 2]))
    assert (await api("data", file="a.h5", path="/x")).body == b"[1,2]"
    write_h5("tmp.h5", lambda f: f.create_dataset("x", data=[3]))
    os.replace(jp_root_dir / "tmp.h5", jp_root_dir / "a.h5")
    assert (await api("data", file="a.h5", path="/x")).body == b"[3]"
    os.remove(jp_root_dir / "a.h5")
    assert (await api("data", file="a.h5", path="/x")).code == 404
    write_h5("a.h5", lambda f: f.create_dataset("y", data=[4]))
    assert (await api("data", file="a.h5", path="/x")).code == 404
    assert (await api("data", file="a.h5", path="/y")).body == b"[4]"


SWMR_WRITER = """
import sys, h5py
f = h5py.File(sys.argv[1], "w", libver="latest")
d = f.create_dataset("x", data=[1.0], maxshape=(None,), chunks=(16,))
f.swmr_mode = True
f.flush()
print("ready", flush=True)
sys.stdin.readline()
d.resize((3,))
d[1:] = [2.0, 3.0]
d.flush()
print("appended", flush=True)
sys.stdin.readline()
f.close()
"""


async def test_swmr_file_being_appended(api, jp_root_dir: Path) -> None:
    """A file another process is appending in SWMR mode is readable; appended data shows up."""
    writer = subprocess.Popen(
        [sys.executable, "-c", SWMR_WRITER, str(jp_root_dir / "live.h5")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "ready"
        assert (await api("data", file="live.h5", path="/x")).body == b"[1.0]"
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "appended"
        assert (await api("data", file="live.h5", path="/x")).body == b"[1.0,2.0,3.0]"
        writer.stdin.write("stop\n")
        writer.stdin.flush()
        assert writer.wait(30) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
