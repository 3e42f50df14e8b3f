"""The workloads of issues 6 and 10, as data: which request, how many rounds, which target."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import data as d
import nexus
from measure import Request

INTERLEAVED, FIRST, CHANGED = "interleaved", "first", "changed"


@dataclass(frozen=True)
class Workload:
    """One table row, measured in rounds: one request per server, in a random order.

    `method` says how (see run.py):
    - INTERLEAVED: rounds on running servers after warm-up (`pairs` within `budget_s`);
    - FIRST: each sample restarts the servers and times their first request (`pairs` samples);
    - CHANGED: each sample first changes files the request depends on (`pairs` samples).
    """

    key: str
    label: str
    request: Request
    pairs: int  # full run; --quick divides
    budget_s: float  # stop early after this many seconds (at least `min_pairs`)
    target: float | None  # ours/h5grove must be <= target (None: for information)
    min_pairs: int = 5
    compare: str = "bytes"  # "bytes" or "stats" (floating-point tolerance)
    warmup: int = 2  # unrecorded requests per side first (request(i) for i < warmup)
    method: str = INTERLEAVED
    group: str = ""  # --only accepts a group name for all its rows
    h5web: bool = True  # jupyterlab-h5web answers it (it has no stats and no root endpoint)


def q(endpoint: str, file: str, path: str, **params: str) -> str:
    """Build an API query string, e.g. q("meta", "a.h5", "/")."""
    parts = [f"file={quote(file)}", f"path={quote(path)}"]
    parts += [f"{k}={quote(v, safe=':,')}" for k, v in params.items()]
    return f"{endpoint}?{'&'.join(parts)}"


def heatmap_windows(p: d.Profile, dataset: str, file: str = d.HEATMAP) -> list[str]:
    """All aligned 1024x1024 windows of a heatmap dataset, in a scrambled order (of
    d.HEATMAP, or of its copy d.HEATMAP_B)."""
    n = p.heatmap_side // 1024
    windows = [(r * 1024, c * 1024) for r in range(n) for c in range(n)]
    windows = windows[::3] + windows[1::3] + windows[2::3]
    return [
        q(
            "data",
            file,
            f"/{dataset}",
            selection=f"{r}:{r + 1024},{c}:{c + 1024}",
            format="bin",
            dtype="safe",
        )
        for r, c in windows
    ]


def stack_frames(p: d.Profile) -> list[str]:
    """Frame queries visiting every frame once, in a stride order (no locality)."""
    stride = 37 if p.stack_frames % 37 else 41
    frames = [(i * stride) % p.stack_frames for i in range(p.stack_frames)]
    return [
        q("data", d.STACK, "/stack", selection=f"{k},:,:", format="bin", dtype="safe")
        for k in frames
    ]


def cycle(queries: list[str]) -> Request:
    return lambda i: queries[i % len(queries)]


def workloads(p: d.Profile) -> list[Workload]:
    """The rows of the table, in order."""
    gzip, blosc, frames = heatmap_windows(p, "gzip"), heatmap_windows(p, "blosc"), stack_frames(p)
    many = [q("meta", d.many_file(i), "/") for i in range(p.many_files)]
    return [
        # Not in issue 6: the framework's floor (Jupyter auth + handler vs bare tornado).
        Workload("root", "root endpoint (floor)", cycle([""]), 300, 5, None, h5web=False),
        Workload("meta_small", "meta, small", cycle([q("meta", d.SMALL, "/small")]), 300, 10, 1.0),
        Workload(
            "meta_children",
            f"meta, {2 * p.children:,} children",
            cycle([q("meta", d.CHILDREN, "/parent")]),
            40,
            20,
            0.5,
        ),
        Workload("heatmap_gzip", "heatmap, gzip", cycle(gzip), 60, 15, 0.6),
        Workload("heatmap_blosc", "heatmap, Blosc/LZ4", cycle(blosc), 60, 15, 0.5),
        Workload("stack_frame", "stack frame", cycle(frames), 60, 15, 0.4),
        Workload(
            "line_json", "line, JSON 1e6 f64", cycle([q("data", d.LINE, "/line")]), 30, 15, 0.9
        ),
        Workload(
            "export_npy",
            "export, npy 64 MiB",
            cycle([q("data", d.EXPORT, "/export", format="npy")]),
            20,
            15,
            0.6,
        ),
        Workload(
            "stats",
            f"stats, {_size(p.stats_shape, 4)} f32",
            cycle([q("stats", d.STATS, "/stats")]),
            5,
            90,
            0.3,
            min_pairs=3,
            compare="stats",
            h5web=False,
        ),
        Workload("many_one", "meta /, one file", cycle(many[:1]), 400, 10, 1.0),
        # warm-up visits every file once: the figures are the steady state of the cycle
        Workload(
            "many_rr",
            f"meta /, {p.many_files} files rr",
            cycle(many),
            400,
            10,
            1.0,
            warmup=p.many_files,
        ),
        *nexus_workloads(p),
    ]


def nexus_workloads(p: d.Profile) -> list[Workload]:
    """Issue 10: a NeXus master file whose /entry/data holds thousands of external links.

    Group "nexus", after the other rows. The FIRST and CHANGED rows take 5 samples (2 with
    --quick: `pairs // 10` is below `min_pairs`); the CHANGED row reads the harness's scratch
    copy of the folder (d.NEXUS_WORK_DIR), which it modifies between samples.
    """
    links = f"{d.NEXUS_SCANS:,} ext. links"
    meta = cycle([q("meta", d.NEXUS_MASTER, "/entry/data")])
    paths = cycle([q("paths", d.NEXUS_MASTER, "/")])
    changed = cycle([q("meta", f"{d.NEXUS_WORK_DIR}/master.h5", "/entry/data")])

    def rows(key: str, label: str, request: Request) -> list[Workload]:
        """The first request after start, then the same request repeated."""
        return [
            Workload(
                f"{key}_first",
                f"{label}, 1st req.",
                request,
                5,
                float("inf"),
                0.3,
                min_pairs=2,
                method=FIRST,
                group="nexus",
            ),
            Workload(key, label, request, 20, 60, 0.3, min_pairs=3, group="nexus"),
        ]

    return [
        *rows("nexus_meta", f"NeXus meta, {links}", meta),
        *rows("nexus_paths", "NeXus paths", paths),
        Workload(
            "nexus_meta_changed",
            f"NeXus meta, {nexus.BATCH} targets changed",
            changed,
            5,
            float("inf"),
            0.3,
            min_pairs=2,
            method=CHANGED,
            group="nexus",
        ),
    ]


def heatmap_mix(p: d.Profile) -> list[str]:
    """The concurrency mix: heatmap windows of both codecs and stack frames."""
    return heatmap_windows(p, "gzip") + heatmap_windows(p, "blosc") + stack_frames(p)[:16]


def _size(shape: tuple[int, ...], itemsize: int) -> str:
    n = itemsize
    for s in shape:
        n *= s
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB"
