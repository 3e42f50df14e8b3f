"""The changed-targets row of issue 10: scan files rewritten, replaced or deleted under a
NeXus master file while the servers run, on a scratch copy the harness owns."""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import data as d
import h5py
import numpy as np

# Of each batch of scan files: how many of each change (in this order of the batch).
IN_PLACE = 40  # same inode: new values, and one attribute stored with another type
SAME_STAT = 10  # of IN_PLACE: size, mtime and inode unchanged (only the ctime tells)
REPLACED = 30  # a new file with another dataset shape, written beside and moved over
DELETED = 30  # removed: the master's link to it becomes broken
BATCH = IN_PLACE + REPLACED + DELETED

REPLACED_SHAPE = (12, 32, 32)


@dataclass
class Changes:
    """What one batch did, for the log."""

    rewritten: int = 0
    same_stat: int = 0  # rewritten with size, mtime and inode kept (as intended)
    same_stat_missed: int = 0  # meant to keep them, but the size or inode changed
    replaced: int = 0
    deleted: int = 0

    def __str__(self) -> str:
        missed = f", {self.same_stat_missed} did not!" if self.same_stat_missed else ""
        return (
            f"{self.rewritten} rewritten in place ({self.same_stat} of them with size and "
            f"mtime kept{missed}), {self.replaced} replaced, {self.deleted} deleted"
        )


class ScratchNexus:
    """A copy of the generated NeXus folder at `root/d.NEXUS_WORK_DIR`, for the servers to
    serve while the harness changes its scan files.

    The generated folder is only ever read (it is where the originals come back from); the
    copy is made on entering and removed on exit, also on Ctrl-C.
    """

    def __init__(self, root: Path):
        self.source = root / d.NEXUS_DIR
        self.dir = root / d.NEXUS_WORK_DIR

    def __enter__(self) -> ScratchNexus:
        if self.dir.exists():
            shutil.rmtree(self.dir)  # left over by a killed run
        shutil.copytree(self.source, self.dir)  # copy2: the mtimes too
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def scan_path(self, i: int) -> Path:
        return self.dir / d.nexus_scan_file(i)

    def batch(self, sample: int) -> range:
        """The scan indices changed before sample `sample`: the next BATCH of them."""
        start = (sample * BATCH) % d.NEXUS_SCANS
        return range(start, min(start + BATCH, d.NEXUS_SCANS))

    def change(self, scans: Sequence[int], seed: int) -> Changes:
        """Rewrite IN_PLACE, replace REPLACED and delete DELETED of `scans`, in this order."""
        done = Changes()
        for n, i in enumerate(scans):
            path = self.scan_path(i)
            if n < IN_PLACE:
                keep = n < SAME_STAT
                kept = _rewrite(path, keep_stat=keep)
                done.rewritten += 1
                if keep and kept:
                    done.same_stat += 1
                elif keep:
                    done.same_stat_missed += 1
            elif n < IN_PLACE + REPLACED:
                tmp = path.with_name(f".{path.name}.new")
                d.write_nexus_scan(tmp, i, shape=REPLACED_SHAPE, seed=seed)
                os.replace(tmp, path)
                done.replaced += 1
            else:
                path.unlink()
                done.deleted += 1
        return done

    def restore(self, scans: Sequence[int]) -> None:
        """Write the generated originals back (over the rewritten inodes, where they are)."""
        for i in scans:
            shutil.copy2(self.source / d.nexus_scan_file(i), self.scan_path(i))


def _rewrite(path: Path, keep_stat: bool) -> bool:
    """Change the values of the scan's dataset and the type of its `units` attribute (which
    `meta` shows), in place. With `keep_stat`, keep the file's size and restore its mtime.

    Returns whether size, mtime and inode are those of before (always False without
    `keep_stat`, where the mtime changes).
    """
    before = path.stat()
    # locking off: a server may hold the file open, as viewers do while a facility writes
    with h5py.File(path, "r+", locking=False) as f:
        ds = f[d.NEXUS_SIGNAL]
        if keep_stat:
            _rewrite_chunks_same_size(ds)
        else:
            ds[...] = np.roll(ds[...], 1, axis=0) + 1
        # As another writer would store it: a fixed-length string instead of a variable-length
        # one. Same object header space, so the file size does not change.
        units = ds.attrs["units"]
        del ds.attrs["units"]
        ds.attrs.create("units", np.bytes_(str(units).encode()))
    if not keep_stat:
        return False
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    return (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )


def _rewrite_chunks_same_size(ds: h5py.Dataset) -> None:
    """Halve every frame (one gzip chunk each), storing each chunk with its former size.

    HDF5 rewrites a chunk where it is when its stored size does not change; otherwise it
    moves it and the file size changes. So each new zlib stream, shorter than the former one
    (halved counts compress better; a zero frame is the fallback), is padded with zero bytes
    to the former size: zlib decoders, HDF5's deflate filter included, stop at the end of the
    stream and ignore what follows.
    """
    for k in range(ds.shape[0]):
        offset = (k,) + (0,) * (ds.ndim - 1)
        mask, raw = ds.id.read_direct_chunk(offset)
        frame = np.frombuffer(zlib.decompress(raw), dtype=ds.dtype)
        new = zlib.compress((frame // 2).tobytes(), 9)
        if len(new) > len(raw):
            new = zlib.compress(bytes(frame.nbytes), 9)
        ds.id.write_direct_chunk(offset, new + bytes(len(raw) - len(new)), mask)
