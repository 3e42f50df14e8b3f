"""Remote data (issue 12): an HDF5 file in an S3-compatible store (moto's server on loopback)
behind a proxy that delays each request, served by our extension, compared with a plain
Python process reading it with h5py over a default fsspec file object.

python benchmarks/remote.py --quick     # smoke run (2 samples, 5 s of slow-store load)
python benchmarks/remote.py             # 5 samples, 10 s
python benchmarks/run.py --only remote  # the same rows, from the harness

Rows (see benchmarks/README.md):
- `meta` of / of the remote file, the first request of a freshly started server: the
  requests the store received, the bytes it sent, the time (fixed latency per request);
- a 1024x1024 window of the gzip heatmap (`data` bin safe), once the file is open: the
  same, and the bytes from the store divided by the compressed bytes of the chunks it
  touches;
- the same two in a plain process: h5py over ``s3fs.S3FileSystem(...).open(path, "rb")``;
- `meta` of a local file every 10 ms while remote windows wait on a slow store (another
  proxy, a long delay per request): p50/p99 of the metas sent while one was in flight.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data as d
import h5py
import numpy as np
from measure import Client, Meanwhile, meanwhile, wait_idle, worker_processes
from remote_store import KEY, SECRET, Counts, DelayProxy, s3_client, start_moto
from report import OtherLoad, Row, machine_info, ms, table
from servers import HERE, Server, launch_ours, wait_ready
from workloads import q

BUCKET = "bench-bucket"
FAST_PREFIX = "data/"  # through the proxy with the short delay
SLOW_PREFIX = "slow/"  # through the proxy with the long delay (the meanwhile row)
FILE = "heatmap.h5"
DATASET = "/gzip"
WINDOW = ((1024, 2048), (1024, 2048))
SELECTION = ",".join(f"{a}:{b}" for a, b in WINDOW)

LATENCY_S = 0.020  # per request, the rows of the first two kinds
SLOW_LATENCY_S = 2.0  # per request, the meanwhile row
WORKERS = 2  # our server's worker processes (the default on 2 cores)
BYTES_TARGET = 1.5  # bytes from the store / compressed bytes of the window's chunks
MEANWHILE_P99_MS = 100  # local metas while remote reads wait on the slow store
PERIOD_S = 0.01  # between two local metas
BLOCK = 64 * 1024  # range GETs of the store-alone figures

NEEDS = ("moto", "boto3", "s3fs", "aiohttp")
"""Modules the benchmark needs besides the harness's (moto[server] for the store)."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def missing_modules() -> list[str]:
    """The modules of NEEDS that are not installed."""
    return [name for name in NEEDS if importlib.util.find_spec(name) is None]


@dataclass
class Step:
    """One measured step of a sample: its time and what the store saw meanwhile."""

    seconds: float
    status: int
    same: bool  # the answer equals the reference
    requests: int
    received: int  # bytes the store sent back (HTTP headers included)
    connections: int
    noted: list[str] = field(default_factory=list)
    workers: int | None = None  # our server's worker processes after the step

    @classmethod
    def of(cls, seconds: float, status: int, same: bool, counts: Counts) -> Step:
        return cls(
            seconds,
            status,
            same,
            counts.requests,
            counts.received,
            counts.connections,
            counts.noted,
        )


@dataclass
class Reference:
    """What the answers must be, and the window's compressed chunks, from the local file."""

    meta_sha: str  # of h5grove's `meta` answer for /
    window_sha: str  # of the window's values (float32, as `bin` with dtype=safe sends them)
    chunks: int
    chunk_bytes: int

    @classmethod
    def of(cls, path: Path) -> Reference:
        from h5grove.content import create_content
        from h5grove.encoders import encode

        with h5py.File(path, "r") as f:
            meta = encode(create_content(f, "/").metadata()).content
            dataset = f[DATASET]
            (r0, r1), (c0, c1) = WINDOW
            window = dataset[r0:r1, c0:c1]
            rows, cols = dataset.chunks
            sizes = [
                dataset.id.get_chunk_info_by_coord((r, c)).size
                for r in range(r0 // rows * rows, r1, rows)
                for c in range(c0 // cols * cols, c1, cols)
            ]
        return cls(_sha(meta), _sha(window.tobytes()), len(sizes), sum(sizes))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Store:
    """moto's S3 server holding the heatmap under both prefixes, and a delaying proxy in
    front of it for each (`fast`, `slow`)."""

    def __init__(self, folder: Path, heatmap: Path, latency_s: float, slow_latency_s: float):
        self.folder = folder
        self.heatmap = heatmap
        self.latency_s = latency_s
        self.slow_latency_s = slow_latency_s

    @contextmanager
    def started(self) -> Iterator[Store]:
        with start_moto(self.folder / "moto.log") as port:
            client = s3_client(port)
            client.create_bucket(Bucket=BUCKET)
            for prefix in (FAST_PREFIX, SLOW_PREFIX):
                client.upload_file(str(self.heatmap), BUCKET, prefix + FILE)
            self.service = store_alone(port, FAST_PREFIX + FILE, self.heatmap.stat().st_size)
            with (
                DelayProxy(port, self.latency_s, self.folder / "proxy-fast.log") as fast,
                DelayProxy(port, self.slow_latency_s, self.folder / "proxy-slow.log") as slow,
            ):
                self.fast, self.slow = fast, slow
                yield self

    @staticmethod
    def url(prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}{FILE}"

    @staticmethod
    def options(proxy: DelayProxy) -> dict[str, str]:
        """fsspec storage options of the store through `proxy`."""
        return {"endpoint_url": f"http://127.0.0.1:{proxy.port}", "key": KEY, "secret": SECRET}

    def remote_roots(self) -> dict[str, dict[str, str]]:
        """H5GroveApp.remote_roots: each prefix through its proxy."""
        return {
            f"s3://{BUCKET}/{FAST_PREFIX}": self.options(self.fast),
            f"s3://{BUCKET}/{SLOW_PREFIX}": self.options(self.slow),
        }


def store_alone(port: int, key: str, size: int, rounds: int = 5) -> dict[str, list[float]]:
    """Seconds moto takes to answer range GETs of 64 KiB of the object, directly (no
    proxy, no delay): one at a time, and 16 at once (as many as the window's chunks)."""
    from concurrent.futures import ThreadPoolExecutor

    from botocore.config import Config

    client = s3_client(port, Config(max_pool_connections=16))
    step = size // 17

    def get(start: int) -> None:
        rng = f"bytes={start}-{start + BLOCK - 1}"
        client.get_object(Bucket=BUCKET, Key=key, Range=rng)["Body"].read()

    get(0)  # connections, credentials
    one, many = [], []
    with ThreadPoolExecutor(16) as pool:
        for k in range(rounds):
            t0 = time.perf_counter()
            get(k * step)
            one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            list(pool.map(get, [n * step for n in range(16)]))
            many.append(time.perf_counter() - t0)
    return {"one_s": one, "sixteen_s": many}


@dataclass
class Setup:
    """Where our servers run and with what."""

    root: Path  # their root: small.h5 only
    workdir: Path
    base_url: str
    ours_args: tuple[str, ...]
    store: Store

    def config(self) -> dict[str, dict]:
        """Our server's settings, through its isolated config file (the command line's
        --ours-arg options override them)."""
        return {
            "H5GroveApp": {
                "remote_roots": self.store.remote_roots(),
                "worker_processes": WORKERS,
            }
        }

    @contextmanager
    def server(self) -> Iterator[Server]:
        """A freshly started server of ours, ready and idle."""
        folder = Path(tempfile.mkdtemp(prefix="remote-ours-", dir=self.workdir))
        server = launch_ours(
            self.root,
            folder,
            base_url=self.base_url,
            extra_args=list(self.ours_args),
            config=self.config(),
        )
        try:
            wait_ready(server, timeout=120)
            if not wait_idle([server]):
                log("  ! remote: our server still busy 10 s after it answered")
            yield server
        finally:
            server.stop()


def sample_ours(setup: Setup, ref: Reference) -> tuple[Step, Step]:
    """A fresh server: `meta` of / of the remote file (its first request), then the window."""
    proxy = setup.store.fast
    url = setup.store.url(FAST_PREFIX)
    with setup.server() as server:
        client = Client(server)
        try:
            steps = []
            for query, reference in (
                (q("meta", url, "/"), ref.meta_sha),
                (q("data", url, DATASET, selection=SELECTION, format="bin", dtype="safe"),
                 ref.window_sha),
            ):  # fmt: skip
                proxy.reset()
                status, body, _, seconds = client.api(query)
                step = Step.of(seconds, status, _sha(body) == reference, proxy.counts())
                step.workers = len(worker_processes(server.pid))
                if status != 200:
                    log(f"  ! remote: HTTP {status} for {query}: {body[:300]!r}")
                steps.append(step)
        finally:
            client.close()
    return steps[0], steps[1]


def sample_fsspec(store: Store, ref: Reference) -> tuple[Step, Step]:
    """A fresh plain Python process (h5py over a default fsspec file object): open + meta of
    /, then the window; its own clock times each step."""
    spec = {
        **Store.options(store.fast),
        "path": f"{BUCKET}/{FAST_PREFIX}{FILE}",
        "dataset": DATASET,
        "window": WINDOW,
    }
    process = subprocess.Popen(
        [sys.executable, str(HERE / "remote_fsspec.py"), json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the h5py + fsspec process did not start ({process.wait()})")
        steps = []
        for reference in (ref.meta_sha, ref.window_sha):
            store.fast.reset()
            process.stdin.write("go\n")
            process.stdin.flush()
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"the h5py + fsspec process failed ({process.wait()})")
            said = json.loads(line)
            same = said["sha256"] == reference
            steps.append(Step.of(said["seconds"], 200, same, store.fast.counts()))
        process.stdin.write("go\n")
        process.stdin.close()
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return steps[0], steps[1]


def run_meanwhile(setup: Setup, seconds: float) -> tuple[Meanwhile, Counts, Meanwhile, Counts]:
    """On a fresh server: one client loops remote windows through the slow proxy, the last
    one started before `seconds` are over; another sends `meta` of small.h5 every 10 ms
    until it is done. First, unrecorded, one remote window with metas meanwhile (opens the
    file, starts the workers). Returns the warm-up's calls and what the slow store saw
    meanwhile, then the same of the measured part."""
    url = setup.store.url(SLOW_PREFIX)
    remote = q("data", url, DATASET, selection=SELECTION, format="bin", dtype="safe")
    local = q("meta", d.SMALL, "/small")
    bound = seconds + 120  # the local metas stop then at the latest
    with setup.server() as server:
        setup.store.slow.reset()
        warm = meanwhile(server, remote, local, 0, PERIOD_S, bound)
        warm_counts = setup.store.slow.counts()
        setup.store.slow.reset()
        res = meanwhile(server, remote, local, seconds, PERIOD_S, bound)
        counts = setup.store.slow.counts()
        workers = len(worker_processes(server.pid))
    log(f"  remote meanwhile: {workers} worker processes at the end")
    return warm, warm_counts, res, counts


# ---- figures ----


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _range(values: list[float], fmt: Callable[[float], str]) -> str:
    """min..max, or the value when they are equal."""
    low, high = min(values), max(values)
    return fmt(low) if low == high else f"{fmt(low)}..{fmt(high)}"


def size(n: float) -> str:
    """Bytes, e.g. "934 kB", "35.4 MB" (decimal units)."""
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} kB" if n >= 1e3 else f"{n:.0f} B"


def _count(values: list[int]) -> str:
    return _range([float(v) for v in values], lambda v: f"{v:.0f}")


def _time_cell(steps: list[Step]) -> str:
    times = [s.seconds for s in steps]
    return f"{ms(_median(times))} ({_range(times, ms)})"


def _store_cell(steps: list[Step]) -> str:
    """Requests (range) and the median bytes from the store."""
    received = _median([s.received for s in steps])
    return f"{_count([s.requests for s in steps])} req., {size(received)}"


def _same(steps: list[Step]) -> str:
    if any(s.status != 200 for s in steps):
        return "HTTP!"
    return "bytes" if all(s.same for s in steps) else "DIFF"


def _pct(calls: list[float], pct: float) -> float | None:
    return float(np.percentile(calls, pct)) if calls else None


def _pair_ratios(ours: list[Step], theirs: list[Step]) -> str:
    ratios = [a.seconds / b.seconds for a, b in zip(ours, theirs, strict=True)]
    return _range(ratios, lambda v: f"{v:.2f}")


def rows_of(
    ours: list[tuple[Step, Step]],
    theirs: list[tuple[Step, Step]],
    ref: Reference,
    found: Meanwhile,
    service: dict[str, list[float]],
    latency_s: float,
    slow_latency_s: float,
) -> list[Row]:
    """The table rows (the h5grove column holds the plain h5py + fsspec process)."""
    meta_o, meta_f = [m for m, _ in ours], [m for m, _ in theirs]
    win_o, win_f = [w for _, w in ours], [w for _, w in theirs]
    lat = ms(latency_s)
    rows = []
    for key, label, o, f in (
        ("remote_meta_first", f"remote meta of /, 1st req. ({lat}/req.)", meta_o, meta_f),
        ("remote_window", f"remote 1024² gzip window ({lat}/req.)", win_o, win_f),
    ):
        received_o = _median([s.received for s in o])
        received_f = _median([s.received for s in f])
        same = _same(o)
        if _same(f) != "bytes":
            same += f", fsspec {_same(f)}"
        rows += [
            Row(
                label,
                _time_cell(o),
                _time_cell(f),
                f"{_median([s.seconds for s in o]) / _median([s.seconds for s in f]):.2f}",
                _pair_ratios(o, f),
                "info",
                "",
                same,
                key=key,
            ),
            Row(
                "  store: requests, bytes sent",
                _store_cell(o),
                _store_cell(f),
                f"{received_o / received_f:.3f}" if received_f else "",
                "",
                "info",
            ),
        ]
    ratio_o = [s.received / ref.chunk_bytes for s in win_o]
    ratio_f = [s.received / ref.chunk_bytes for s in win_f]
    rows.append(
        Row(
            f"  bytes / its {ref.chunks} chunks' {size(ref.chunk_bytes)}",
            f"{_median(ratio_o):.2f}",
            f"{_median(ratio_f):.2f}",
            "",
            _range(ratio_o, lambda v: f"{v:.2f}"),
            f"ours ≤ {BYTES_TARGET:g}",
            "yes" if _median(ratio_o) <= BYTES_TARGET else "NO",
            key="remote_window_bytes",
        ),
    )
    rows.append(
        Row(
            "  moto alone: 1 / 16 concurrent range GETs",
            f"{ms(_median(service['one_s']))} / {ms(_median(service['sixteen_s']))}",
            "",
            "",
            "",
            "info (no delay)",
        )
    )
    meta = found.latencies(found.short)
    windows = found.latencies(found.long)
    p50, p99 = _pct(meta, 50), _pct(meta, 99)
    p99_all = _pct(on_schedule(meta, PERIOD_S), 99)
    slow = [v for v in meta if v * 1e3 >= MEANWHILE_P99_MS]
    errors = (len(found.long_errors()), len(found.short_errors()))
    rows += [
        Row(
            f"local meta p50/p99, remote reads waiting ({ms(slow_latency_s)}/req.)",
            f"{ms(p50)}/{ms(p99)}" if p50 is not None and p99 is not None else "no samples",
            "",
            "",
            "",
            f"ours p99 < {MEANWHILE_P99_MS} ms",
            _met(p99),
            "HTTP!" if sum(errors) else "",
            key="remote_meanwhile",
        ),
        Row(
            f"  metas ≥ {MEANWHILE_P99_MS} ms (max); p99 on schedule",
            f"{len(slow)} ({ms(max(meta)) if meta else '-'}); "
            + (ms(p99_all) if p99_all is not None else "-"),
            "",
            "",
            "",
            f"p99 < {MEANWHILE_P99_MS} ms",
            _met(p99_all),
            key="remote_meanwhile_on_schedule",
        ),
        Row(
            "  remote windows: median (n); metas timed",
            f"{ms(_median(windows)) if windows else '-'} ({len(windows)}); {len(meta)}",
            "",
            "",
            "",
            "info",
        ),
        Row("  non-200 answers (remote/local)", "{}/{}".format(*errors), ""),
    ]
    return rows


def _met(p99: float | None) -> str:
    return "yes" if p99 is not None and p99 * 1e3 < MEANWHILE_P99_MS else "NO"


def on_schedule(latencies: list[float], period: float) -> list[float]:
    """The latencies metas sent every `period` would have had: the client sends the next
    one only once a meta is answered, so a meta that waited L seconds stands for the
    L / period ones a client on schedule would have sent meanwhile, which waited L - period,
    L - 2 period... (coordinated omission, corrected as HdrHistogram does)."""
    out = []
    for value in latencies:
        out.append(value)
        missed = value - period
        while missed >= period:
            out.append(missed)
            missed -= period
    return out


# ---- the whole benchmark ----


def run_remote(
    data_root: Path,
    workdir: Path,
    quick: bool,
    base_url: str = "/",
    ours_args: tuple[str, ...] = (),
    latency_s: float = LATENCY_S,
    slow_latency_s: float = SLOW_LATENCY_S,
    samples: int | None = None,
    seconds: float | None = None,
) -> tuple[list[Row], dict]:
    """Every row, on a store of its own; our servers serve a root of their own (small.h5)."""
    samples = samples or (2 if quick else 5)
    seconds = seconds if seconds is not None else (5.0 if quick else 10.0)
    folder = Path(tempfile.mkdtemp(prefix="remote-", dir=workdir))
    root = folder / "root"
    root.mkdir()
    shutil.copyfile(data_root / d.SMALL, root / d.SMALL)
    heatmap = data_root / d.HEATMAP
    ref = Reference.of(heatmap)
    log(
        f"remote: window {SELECTION} of {DATASET}: {ref.chunks} chunks, "
        f"{size(ref.chunk_bytes)} compressed; file {size(heatmap.stat().st_size)}"
    )
    ours: list[tuple[Step, Step]] = []
    theirs: list[tuple[Step, Step]] = []
    with Store(folder, heatmap, latency_s, slow_latency_s).started() as store:
        setup = Setup(root, folder, base_url, ours_args, store)
        for k in range(samples):  # alternate which side goes first
            order = ("ours", "fsspec") if k % 2 == 0 else ("fsspec", "ours")
            for side in order:
                if side == "ours":
                    ours.append(sample_ours(setup, ref))
                else:
                    theirs.append(sample_fsspec(store, ref))
            for side, (meta, window) in (("ours", ours[-1]), ("fsspec", theirs[-1])):
                log(
                    f"  remote {side}, sample {k + 1}/{samples}: meta {ms(meta.seconds)}, "
                    f"{meta.requests} req., {size(meta.received)}; window "
                    f"{ms(window.seconds)}, {window.requests} req., {size(window.received)}"
                    + (f"; {window.workers} workers" if window.workers is not None else "")
                )
        for side, pairs in (("ours", ours), ("fsspec", theirs)):
            for what, step in (("meta", pairs[0][0]), ("window", pairs[0][1])):
                log(f"  remote {side} {what}, requests of sample 1: {_requests(step.noted)}")
        log(f"remote meanwhile ({ms(slow_latency_s)} per request, {seconds:g} s) ...")
        warm, warm_counts, found, slow_counts = run_meanwhile(setup, seconds)
        service = store.service
    log(
        f"  remote meanwhile: warm-up window in {ms(_median(warm.latencies(warm.long)))}, "
        f"{_requests(warm_counts.noted)}"
    )
    log(
        f"  remote meanwhile: {len(found.long)} windows, {len(found.short)} of "
        f"{len(found.short_all)} metas sent during one; slow store: {slow_counts.requests} "
        f"requests ({slow_counts.methods()}), {size(slow_counts.received)}"
    )
    log(
        f"  moto alone: one 64 KiB range GET {ms(_median(service['one_s']))}, 16 at once "
        f"{ms(_median(service['sixteen_s']))} (medians of {len(service['one_s'])})"
    )
    for what, calls in (("remote", found.long_errors()), ("local", found.short_errors())):
        for (status, body), n in Counter((c[2], c[3]) for c in calls).items():
            log(f"  ! remote meanwhile: {n} {what} HTTP {status}: {body!r}")
    rows = rows_of(ours, theirs, ref, found, service, latency_s, slow_latency_s)
    meta = found.latencies(found.short)
    record = {
        "key": "remote",
        "latency_s": latency_s,
        "slow_latency_s": slow_latency_s,
        "worker_processes": WORKERS,
        "window": SELECTION,
        "window_chunks": ref.chunks,
        "window_chunk_bytes": ref.chunk_bytes,
        "bytes_target": BYTES_TARGET,
        "ours": [{"meta": asdict(m), "window": asdict(w)} for m, w in ours],
        "fsspec": [{"meta": asdict(m), "window": asdict(w)} for m, w in theirs],
        "meanwhile": {
            "seconds": seconds,
            "meta_s": meta,
            "remote_s": found.latencies(found.long),
            "warmup_remote_s": warm.latencies(warm.long),
            "meta_sent": len(found.short_all),
            "meta_p50_ms": None if not meta else 1e3 * float(np.percentile(meta, 50)),
            "meta_p99_ms": None if not meta else 1e3 * float(np.percentile(meta, 99)),
            "meta_max_ms": None if not meta else 1e3 * max(meta),
            "meta_p99_on_schedule_ms": None
            if not meta
            else 1e3 * float(np.percentile(on_schedule(meta, PERIOD_S), 99)),
            "non200_remote_local": (len(found.long_errors()), len(found.short_errors())),
            "slow_store_requests": slow_counts.requests,
            "slow_store_received": slow_counts.received,
            "slow_store_noted": slow_counts.noted,
            "target_p99_ms": MEANWHILE_P99_MS,
            "warmup_slow_store_noted": warm_counts.noted,
        },
        "store_alone": service,
    }
    return rows, record


def _requests(noted: list[str]) -> str:
    """Requests noted by a proxy, shortened: "3: HEAD; GET 0-262143; ..." (byte ranges)."""
    if not noted:
        return "none"
    parts = []
    for line in noted:
        method, _, rest = line.partition(" ")
        ranges = rest.split(" bytes=", 1)
        parts.append(method + (f" {ranges[1]}" if len(ranges) > 1 else ""))
    return f"{len(parts)}: " + "; ".join(parts)


NOTES = """\
remote rows: the h5grove column is a plain Python process reading the file with h5py over a
default fsspec file object (h5grove cannot read remote files); times are medians (min..max)
over fresh servers and processes; ratio = median time ours / h5py+fsspec (store rows: bytes
ours / h5py+fsspec), spread = range of the per-sample time ratios; the store's bytes include
its HTTP headers; moto alone = its own time per range GET of this object, without the proxy;
local meta: the metas sent while a remote window was in flight; p99 on schedule = as if one
were sent every 10 ms even while one waits (coordinated omission corrected)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 samples, 5 s of slow load")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=d.default_cache_dir(),
        help="cache of generated HDF5 files, as run.py's (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=1e3 * LATENCY_S,
        help="delay the proxy adds to each request (default %(default)g)",
    )
    parser.add_argument(
        "--slow-latency-ms",
        type=float,
        default=1e3 * SLOW_LATENCY_S,
        help="the same, for the slow store of the meanwhile row (default %(default)g)",
    )
    parser.add_argument("--samples", type=int, help="fresh servers per side (default 5, quick 2)")
    parser.add_argument(
        "--seconds", type=float, help="remote load of the meanwhile row (default 10, quick 5)"
    )
    parser.add_argument("--base-url", default="/", help="Jupyter base_url of our server")
    parser.add_argument(
        "--ours-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra command-line argument for our Jupyter server, repeatable",
    )
    parser.add_argument("--json", type=Path, help="also write raw results to this file")
    args = parser.parse_args(argv)
    missing = missing_modules()
    if missing:
        parser.error(f"missing {', '.join(missing)}: pip install -e '.[bench,test]'")

    profile = d.PROFILES["quick" if args.quick else "full"]
    data_root = d.ensure_data(args.data_dir, profile, log, names=(d.SMALL, d.HEATMAP))
    t_start = time.monotonic()
    other_load = OtherLoad()
    with tempfile.TemporaryDirectory(prefix="h5grove-bench-remote-") as tmp:
        rows, record = run_remote(
            data_root,
            Path(tmp),
            args.quick,
            args.base_url,
            tuple(args.ours_arg),
            args.latency_ms / 1e3,
            args.slow_latency_ms / 1e3,
            args.samples,
            args.seconds,
        )
    info = machine_info()
    info["machine sharing"] = other_load.summary()
    print()
    print(
        f"jupyter_h5grove, remote data — {'QUICK, ' if args.quick else ''}"
        f"{time.monotonic() - t_start:.0f} s"
    )
    for k, v in info.items():
        print(f"  {k}: {v}")
    print()
    print(table(rows, h5web=False, base="h5py+fsspec"))
    print()
    print(NOTES)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": [record]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
