"""The workloads of issue 6, as data: which request, how many pairs, which target."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import data as d
from measure import Request


@dataclass(frozen=True)
class Workload:
    """One table row measured with interleaved request pairs."""

    key: str
    label: str
    request: Request
    pairs: int  # full run; --quick divides
    budget_s: float  # stop early after this many seconds (at least `min_pairs`)
    target: float | None  # ours/h5grove must be <= target (None: for information)
    min_pairs: int = 5
    compare: str = "bytes"  # "bytes" or "stats" (floating-point tolerance)
    warmup: int = 2  # unrecorded requests per side first (request(i) for i < warmup)
    h5web: bool = True  # jupyterlab-h5web answers it (it has no stats and no root endpoint)


def q(endpoint: str, file: str, path: str, **params: str) -> str:
    """Build an API query string, e.g. q("meta", "a.h5", "/")."""
    parts = [f"file={quote(file)}", f"path={quote(path)}"]
    parts += [f"{k}={quote(v, safe=':,')}" for k, v in params.items()]
    return f"{endpoint}?{'&'.join(parts)}"


def heatmap_windows(p: d.Profile, dataset: str) -> list[str]:
    """All aligned 1024x1024 windows of a heatmap dataset, in a scrambled order."""
    n = p.heatmap_side // 1024
    windows = [(r * 1024, c * 1024) for r in range(n) for c in range(n)]
    windows = windows[::3] + windows[1::3] + windows[2::3]
    return [
        q(
            "data",
            d.HEATMAP,
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
        Workload("heatmap_gzip", "heatmap, gzip", cycle(gzip), 60, 15, 0.9),
        Workload("heatmap_blosc", "heatmap, Blosc/LZ4", cycle(blosc), 60, 15, 0.5),
        Workload("stack_frame", "stack frame", cycle(frames), 60, 15, 0.9),
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
    ]


def heatmap_mix(p: d.Profile) -> list[str]:
    """The concurrency mix: heatmap windows of both codecs and stack frames."""
    return heatmap_windows(p, "gzip") + heatmap_windows(p, "blosc") + stack_frames(p)[:16]


def _size(shape: tuple[int, ...], itemsize: int) -> str:
    n = itemsize
    for s in shape:
        n *= s
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB"
