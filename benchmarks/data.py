"""Generate (once) and cache the HDF5 files the benchmark serves."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

DATA_VERSION = 1  # bump when the generated content changes


@dataclass(frozen=True)
class Profile:
    """Sizes of the generated datasets; `full` is the one issue 6 specifies."""

    name: str
    heatmap_side: int = 4096
    heatmap_chunk: int = 256
    stack_frames: int = 200
    stack_side: int = 2048
    line_points: int = 1_000_000
    export_shape: tuple[int, int] = (4096, 2048)  # float64: 64 MiB
    stats_shape: tuple[int, int] = (16384, 16384)  # float32: 1 GiB
    stats_chunk: tuple[int, int] = (1024, 1024)
    children: int = 1000  # sub-groups and datasets each
    many_files: int = 200


PROFILES = {
    "full": Profile("full"),
    # Smoke run: same shapes where cheap, smaller stack and stats dataset.
    "quick": Profile("quick", stack_frames=16, stats_shape=(4096, 4096), stats_chunk=(512, 512)),
}

# file names relative to the data directory (the servers' root)
SMALL = "small.h5"
CHILDREN = "children.h5"
HEATMAP = "heatmap.h5"
HEATMAP_B = "heatmap_b.h5"  # a copy of HEATMAP: another file, same content (two-clients row)
STACK = "stack.h5"
LINE = "line.h5"
EXPORT = "export.h5"
STATS = "stats.h5"
MILLION = "million.h5"  # a dataset of a million tiny chunks: its stats take seconds
MILLION_SHAPE = (2048, 1024)  # float32, both profiles
MILLION_CHUNKS = (1, 2)  # 2048 * 512 = 1,048,576 chunks
MANY_DIR = "many"
NEXUS_DIR = "nexus"  # a NeXus master file and its per-scan files (issue 10)
NEXUS_MASTER = f"{NEXUS_DIR}/master.h5"
NEXUS_WORK_DIR = "nexus-work"  # the harness's scratch copy of NEXUS_DIR (changed-targets row)

NEXUS_SCANS = 3000  # both profiles: the scan files are small
NEXUS_SCAN_SHAPE = (10, 64, 64)  # uint16 frames, one chunk per frame, gzip 4
NEXUS_SIGNAL = "/entry/data/data"  # the dataset each external link of the master points to
NEXUS_BROKEN = {  # link name in /entry/data -> (file relative to the master, path)
    "broken_missing_file": ("scans/nope.h5", NEXUS_SIGNAL),
    "broken_missing_path": ("scans/scan_000000.h5", "/entry/nope"),
}


def many_file(i: int) -> str:
    """Relative name of the i-th file of the many-files workload."""
    return f"{MANY_DIR}/f{i:03d}.h5"


def nexus_scan(i: int) -> str:
    """Name of the i-th scan: its link in the master's /entry/data and its file's stem."""
    return f"scan_{i:06d}"


def nexus_scan_file(i: int) -> str:
    """Relative name of the i-th scan file, from the master's folder (as its link stores it)."""
    return f"scans/{nexus_scan(i)}.h5"


def default_cache_dir() -> Path:
    """Where generated data lives between runs (XDG cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jupyter_h5grove-bench"


def _write_small(path: Path, p: Profile) -> None:
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("small", data=np.arange(64, dtype="<f4").reshape(8, 8))
        ds.attrs["units"] = "counts"
        ds.attrs["long_name"] = "a small dataset"
        f.attrs["NX_class"] = "NXroot"


def _write_children(path: Path, p: Profile) -> None:
    with h5py.File(path, "w") as f:
        g = f.create_group("parent")
        for i in range(p.children):
            sub = g.create_group(f"group_{i:04d}")
            sub.attrs["NX_class"] = "NXcollection"
            sub.attrs["index"] = i
            ds = g.create_dataset(f"dataset_{i:04d}", data=np.arange(4, dtype="<i4") + i)
            ds.attrs["units"] = "mm"
            ds.attrs["index"] = i


def _heatmap_image(side: int) -> np.ndarray:
    """Detector-like float32 image: smooth peaks plus integer noise (compressible)."""
    rng = np.random.default_rng(1)
    y = np.linspace(-3, 3, side, dtype=np.float32)[:, None]
    x = np.linspace(-3, 3, side, dtype=np.float32)[None, :]
    img = 1000 * np.exp(-(x**2 + y**2)) + 200 * np.cos(3 * x) * np.sin(2 * y)
    img += rng.integers(0, 16, size=(side, side), dtype=np.int16)
    return np.round(img).astype("<f4")


def _write_heatmap(path: Path, p: Profile) -> None:
    img = _heatmap_image(p.heatmap_side)
    chunks = (p.heatmap_chunk, p.heatmap_chunk)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "gzip", data=img, chunks=chunks, compression="gzip", compression_opts=4, shuffle=True
        )
        blosc = hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
        f.create_dataset("blosc", data=img, chunks=chunks, **blosc)


def _write_stack(path: Path, p: Profile) -> None:
    rng = np.random.default_rng(2)
    side = p.stack_side
    base = rng.poisson(5.0, size=(side, side)).astype("<u2")
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "stack",
            shape=(p.stack_frames, side, side),
            dtype="<u2",
            chunks=(1, side, side),
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )
        for k in range(p.stack_frames):
            ds[k] = np.roll(base, 7 * k, axis=1) + np.uint16(k % 5)


def _write_line(path: Path, p: Profile) -> None:
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f.create_dataset("line", data=np.cumsum(rng.standard_normal(p.line_points)))


def _write_export(path: Path, p: Profile) -> None:
    rng = np.random.default_rng(4)
    with h5py.File(path, "w") as f:
        f.create_dataset("export", data=rng.standard_normal(p.export_shape))


def _write_stats(path: Path, p: Profile) -> None:
    rng = np.random.default_rng(5)
    rows, cols = p.stats_shape
    block = p.stats_chunk[0]
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("stats", shape=p.stats_shape, dtype="<f4", chunks=p.stats_chunk)
        for r in range(0, rows, block):
            values = rng.standard_normal((min(block, rows - r), cols), dtype=np.float32)
            values *= 10
            values += 100  # mean far from 0 so relative tolerances are meaningful
            values[rng.random(values.shape) < 0.01] = np.nan
            ds[r : r + block] = values


def _write_million(path: Path, p: Profile) -> None:
    """/x: float32 MILLION_SHAPE in MILLION_CHUNKS chunks (HDF5 visits each to read it all)."""
    rng = np.random.default_rng(6)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "x",
            data=rng.standard_normal(MILLION_SHAPE, dtype=np.float32),
            chunks=MILLION_CHUNKS,
        )


def _copy_of(source: str) -> Callable[[Path, Profile], None]:
    """A writer copying the (already generated) file `source` of the same data directory.

    A copy, not a hard link: a hard link is the same inode, which HDF5 and the servers' caches
    of open files would take for the same file.
    """

    def write(path: Path, p: Profile) -> None:
        shutil.copyfile(path.parent / source, path)

    return write


def _write_many(path: Path, p: Profile) -> None:
    path.mkdir(exist_ok=True)
    for i in range(p.many_files):
        with h5py.File(path / f"f{i:03d}.h5", "w") as f:
            f.attrs["index"] = i
            f.create_dataset("counts", data=np.arange(16, dtype="<i4") + i)
            f.create_dataset("energy", data=np.linspace(0, 1, 16))
            f.create_group("instrument").attrs["NX_class"] = "NXinstrument"


def write_nexus_scan(
    path: Path, i: int, shape: tuple[int, int, int] = NEXUS_SCAN_SHAPE, seed: int = 0
) -> None:
    """A NeXus-like scan file: /entry (NXentry) / data (NXdata) / data, detector frames.

    `seed` varies the frames, for the harness's rewritten copies (0: the generated ones).
    """
    rng = np.random.default_rng([10, i, seed])
    _, rows, cols = shape
    y = np.arange(rows)[:, None]
    x = np.arange(cols)[None, :]
    # a diffraction-like spot moving from scan to scan, on a low Poisson background
    spot = 40 * np.exp(-((x - cols / 2 - 5 * np.sin(i)) ** 2 + (y - rows / 2) ** 2) / 30)
    frames = rng.poisson(spot[None] + 0.5, size=shape).astype("<u2")
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "data"
        ds = data.create_dataset(
            "data", data=frames, chunks=(1, rows, cols), compression="gzip", compression_opts=4
        )
        ds.attrs["units"] = "counts"
        ds.attrs["long_name"] = f"detector counts, {nexus_scan(i)}"


def _write_nexus(path: Path, p: Profile) -> None:
    """scans/ of NEXUS_SCANS files, and master.h5 linking to each (plus two broken links)."""
    if path.exists():
        shutil.rmtree(path)  # left over by an interrupted run
    (path / "scans").mkdir(parents=True)
    for i in range(NEXUS_SCANS):
        write_nexus_scan(path / nexus_scan_file(i), i)
    with h5py.File(path / "master.h5", "w") as f:
        f.attrs["NX_class"] = "NXroot"
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        entry.create_dataset("title", data="NeXus master file of the benchmark")
        entry.create_dataset("scan_number", data=np.arange(NEXUS_SCANS, dtype="<i8"))
        entry.create_dataset("start_time", data="2024-01-01T00:00:00Z")
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        for i in range(NEXUS_SCANS):
            data[nexus_scan(i)] = h5py.ExternalLink(nexus_scan_file(i), NEXUS_SIGNAL)
        for name, (file, target) in NEXUS_BROKEN.items():
            data[name] = h5py.ExternalLink(file, target)
        # a soft link through an external link, and one to a local dataset
        entry["last_scan"] = h5py.SoftLink(f"/entry/data/{nexus_scan(NEXUS_SCANS - 1)}")
        entry["experiment_title"] = h5py.SoftLink("/entry/title")


WRITERS: dict[str, Callable[[Path, Profile], None]] = {
    SMALL: _write_small,
    CHILDREN: _write_children,
    HEATMAP: _write_heatmap,
    HEATMAP_B: _copy_of(HEATMAP),  # after HEATMAP: it copies it
    STACK: _write_stack,
    LINE: _write_line,
    EXPORT: _write_export,
    STATS: _write_stats,
    MILLION: _write_million,
    MANY_DIR: _write_many,
    NEXUS_DIR: _write_nexus,
}

# What else a file's stamp depends on, besides DATA_VERSION and the profile (keys: WRITERS').
# Only some entries have one: adding it to all would regenerate every file once.
STAMP_EXTRA: dict[str, dict[str, object]] = {
    NEXUS_DIR: {"nexus_version": 1, "scans": NEXUS_SCANS, "shape": NEXUS_SCAN_SHAPE},
    MILLION: {"million_version": 1, "shape": MILLION_SHAPE, "chunks": MILLION_CHUNKS},
}

# Files generated as copies of another (copy -> source): their stamp includes the source's, so
# that they are copied again whenever the source is generated again.
COPIES: dict[str, str] = {HEATMAP_B: HEATMAP}


def ensure_data(
    cache_dir: Path,
    profile: Profile,
    log: Callable[[str], None] = print,
    names: Collection[str] | None = None,
) -> Path:
    """Return the data directory for `profile`, generating missing or stale files (only
    those of `names`, keys of WRITERS, and the files they are copies of, if given)."""
    root = cache_dir / profile.name
    root.mkdir(parents=True, exist_ok=True)
    stamp_path = root / "stamp.json"
    # through JSON, as stored (tuples become lists)
    base = {"version": DATA_VERSION, "profile": asdict(profile)}
    stamps = json.loads(stamp_path.read_text()) if stamp_path.exists() else {}
    wanted = None if names is None else set(names) | {COPIES[n] for n in names if n in COPIES}
    for name, writer in WRITERS.items():
        if wanted is not None and name not in wanted:
            continue
        want = json.loads(json.dumps({**base, **STAMP_EXTRA.get(name, {})}))
        if name in COPIES:
            want["copy_of"] = {COPIES[name]: stamps[COPIES[name]]}
        if stamps.get(name) == want and (root / name).exists():
            continue
        t0 = time.perf_counter()
        log(f"generating {root / name} ...")
        tmp = root / (name + ".tmp")
        writer(tmp, profile)
        if (root / name).is_dir():
            shutil.rmtree(root / name)
        os.replace(tmp, root / name)
        stamps[name] = want
        stamp_path.write_text(json.dumps(stamps, indent=1))
        log(f"  done in {time.perf_counter() - t0:.1f} s")
    return root


def warm_page_cache(root: Path) -> None:
    """Read every data file once so the servers start from a warm OS page cache."""
    for path in sorted(root.rglob("*.h5")):
        if NEXUS_WORK_DIR in path.relative_to(root).parts:
            continue  # a scratch copy left by an interrupted run
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass
