"""The rows of issue 11 on parallel HDF5 work (our worker processes): two clients on two files,
a `meta` while a long `stats` runs, and the memory of the workers while busy and once idle."""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import data as d
import numpy as np
import psutil
from measure import Client, Meanwhile, drive, meanwhile, rss_of, wait_idle, worker_processes
from report import Row, ms
from servers import Lineup, Server, launch_ours, wait_ready
from workloads import heatmap_mix, heatmap_windows, q

TWO_CLIENTS_TARGET = 1.6  # throughput(2 clients, 2 files) / throughput(1 client), ours
MEANWHILE_P99_MS = 100  # p99 of ours' meta latency while a stats runs
IDLE_TIMEOUT_S = 3  # --H5GroveApp.worker_idle_timeout of the worker_rss row's server
IDLE_WAIT_S = 30  # how long the worker_rss row waits for the workers to stop

SIDES = ("ours", "base")
NAMES = {"ours": "ours", "base": "h5grove"}
MB = 2**20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _warm(server: Server, queries: list[str]) -> None:
    """Send each query once (not recorded); raise on an error answer."""
    client = Client(server)
    try:
        for query in queries:
            status, body, _, _ = client.api(query)
            if status != 200:
                raise RuntimeError(f"{server.label}: HTTP {status} for {query}: {body[:200]!r}")
    finally:
        client.close()


# ---- two_clients ----


def run_two_clients(
    servers: dict[str, Server], p: d.Profile, quick: bool, seconds: float
) -> tuple[list[Row], dict]:
    """Throughput of one client process looping over the gzip heatmap windows of one file,
    then of two at once, each on its own file (two copies of the same content): ratio
    2 clients / 1 client, per round, on ours and (for information) h5grove.

    Rounds alternate the order of the two measurements (1 2, 2 1, 1 2, ...) and of the
    servers; the ratio shown is the median of the rounds' ratios, the spread their range.
    """
    mixes = [heatmap_windows(p, "gzip"), heatmap_windows(p, "gzip", d.HEATMAP_B)]
    for side in SIDES:  # opens both files (in ours, starts the workers)
        _warm(servers[side], mixes[0] + mixes[1])
    rounds = 2 if quick else 4
    thr: dict[str, dict[int, list[float]]] = {side: {1: [], 2: []} for side in SIDES}
    errors = {side: 0 for side in SIDES}
    for r in range(rounds):
        counts = (1, 2) if r % 2 == 0 else (2, 1)
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            for n in counts:
                res = drive(servers[side], mixes[:n], seconds, probe_period=None)
                thr[side][n].append(res.throughput)
                errors[side] += res.errors
                log(
                    f"  two_clients {NAMES[side]}, round {r + 1}/{rounds}, {n} client(s): "
                    f"{res.throughput:.1f} req/s, {res.mbps:.0f} MB/s"
                    f"{f', {res.errors} errors!' if res.errors else ''}"
                )
    ratios = {
        side: [two / one for one, two in zip(thr[side][1], thr[side][2], strict=True)]
        for side in SIDES
    }
    median = {side: float(np.median(ratios[side])) for side in SIDES}
    one = {side: float(np.median(thr[side][1])) for side in SIDES}
    two = {side: float(np.median(thr[side][2])) for side in SIDES}
    row = Row(
        "2 clients vs 1, gzip, 2 files",
        f"{one['ours']:.1f} → {two['ours']:.1f} req/s",
        f"{one['base']:.1f} → {two['base']:.1f} req/s ({median['base']:.2f}x)",
        f"{median['ours']:.2f}",
        f"{min(ratios['ours']):.2f}..{max(ratios['ours']):.2f}",
        f"≥ {TWO_CLIENTS_TARGET:g} (2c/1c)",
        "yes" if median["ours"] >= TWO_CLIENTS_TARGET else "NO",
        "errors!" if errors["ours"] or errors["base"] else "",
        key="two_clients",
    )
    record = {
        "key": "two_clients",
        "seconds": seconds,
        "rounds": rounds,
        "throughput": {side: {str(n): v for n, v in thr[side].items()} for side in SIDES},
        "ratios": ratios,
        "ratio": median,
        "target": TWO_CLIENTS_TARGET,
        "errors": errors,
    }
    return [row], record


# ---- stats_meanwhile ----


def run_stats_meanwhile(servers: dict[str, Server], seconds: float) -> tuple[list[Row], dict]:
    """`meta` of small.h5 every 10 ms while `stats` of million.h5 (a million chunks) runs in a
    loop, on ours and h5grove (jupyterlab-h5web has no stats): the meta latencies of the
    requests sent while a stats was in flight, and the stats' own."""
    long_query = q("stats", d.MILLION, "/x")
    short_query = q("meta", d.SMALL, "/small")
    found: dict[str, Meanwhile] = {}
    first: dict[str, list[float]] = {}  # the warm-up's stats (the first of the server?)
    for side in SIDES:
        server = servers[side]
        # Not recorded: one stats with metas meanwhile (opens the files; in ours, starts the
        # worker the metas go to while another runs the stats).
        warm = meanwhile(server, long_query, short_query, 0)
        first[side] = warm.latencies(warm.long)
        log(f"  stats_meanwhile {NAMES[side]}: warm-up stats in {_median_ms(first[side])}")
        res = found[side] = meanwhile(server, long_query, short_query, seconds)
        for what, calls in (("stats", res.long_errors()), ("meta", res.short_errors())):
            seen = Counter((status, body) for _, _, status, body in calls)
            for (status, body), count in seen.items():
                log(f"  ! stats_meanwhile {NAMES[side]}: {count} {what} HTTP {status}: {body!r}")
        meta = res.latencies(res.short)
        log(
            f"  stats_meanwhile {NAMES[side]}: {len(res.long)} stats "
            f"(median {_median_ms(res.latencies(res.long))}), {len(meta)} of "
            f"{len(res.short_all)} metas sent during one, p50/p99 {_pcts(meta)}"
        )
    meta = {side: found[side].latencies(found[side].short) for side in SIDES}
    stats = {side: found[side].latencies(found[side].long) for side in SIDES}
    p99 = {side: _pct(meta[side], 99) for side in SIDES}
    non200 = {
        side: (len(found[side].long_errors()), len(found[side].short_errors())) for side in SIDES
    }
    met = p99["ours"] is not None and p99["ours"] * 1e3 < MEANWHILE_P99_MS
    rows = [
        Row(
            "meta during 1M-chunk stats p50/p99",
            _pcts(meta["ours"]),
            _pcts(meta["base"]),
            f"{p99['ours'] / p99['base']:.3f}" if p99["ours"] and p99["base"] else "",
            "",
            f"ours p99 < {MEANWHILE_P99_MS} ms",
            "yes" if met else "NO",
            "HTTP!" if any(sum(v) for v in non200.values()) else "",
            key="stats_meanwhile",
        ),
        Row(
            "  stats median (n); metas timed",
            f"{_median_ms(stats['ours'])} ({len(stats['ours'])}); {len(meta['ours'])}",
            f"{_median_ms(stats['base'])} ({len(stats['base'])}); {len(meta['base'])}",
            f"{np.median(stats['ours']) / np.median(stats['base']):.2f}"
            if stats["ours"] and stats["base"]
            else "",
            "",
            "info",
        ),
        Row(
            "  non-200 answers (stats/meta)",
            "{}/{}".format(*non200["ours"]),
            "{}/{}".format(*non200["base"]),
        ),
    ]
    record = {
        "key": "stats_meanwhile",
        "seconds": seconds,
        "meta_s": meta,
        "stats_s": stats,
        "warmup_stats_s": first,
        "meta_sent": {side: len(found[side].short_all) for side in SIDES},
        "meta_p50_ms": {side: _ms_or_none(_pct(meta[side], 50)) for side in SIDES},
        "meta_p99_ms": {side: _ms_or_none(p99[side]) for side in SIDES},
        "non200_stats_meta": non200,
        "target_p99_ms": MEANWHILE_P99_MS,
    }
    return rows, record


def _pct(values: list[float], pct: float) -> float | None:
    return float(np.percentile(values, pct)) if values else None


def _pcts(values: list[float]) -> str:
    """p50/p99 of latencies in seconds, e.g. "3.1 ms/8.4 ms"."""
    if not values:
        return "no samples"
    return f"{ms(float(np.percentile(values, 50)))}/{ms(float(np.percentile(values, 99)))}"


def _median_ms(values: list[float]) -> str:
    return ms(float(np.median(values))) if values else "-"


def _ms_or_none(seconds: float | None) -> float | None:
    return None if seconds is None else 1e3 * seconds


# ---- worker_rss ----


def run_worker_rss(
    lineup: Lineup, workdir: Path, p: d.Profile, clients: int, seconds: float
) -> tuple[list[Row], dict]:
    """A separate, fresh instance of our server whose workers stop after IDLE_TIMEOUT_S idle
    seconds: the RSS of one worker just after the first request (a small meta), of all of
    them after `clients` processes ran the heatmap mix for `seconds`, and once they have
    stopped (at most IDLE_WAIT_S later); the server process's own RSS at each step."""
    folder = Path(tempfile.mkdtemp(prefix="worker-rss-", dir=workdir))
    args = [*lineup.ours_args, f"--H5GroveApp.worker_idle_timeout={IDLE_TIMEOUT_S}"]
    server = launch_ours(lineup.root, folder, base_url=lineup.base_url, extra_args=args)
    try:
        wait_ready(server, timeout=120)
        wait_idle([server])
        proc = psutil.Process(server.pid)
        before = worker_processes(server.pid)
        if before:
            log(f"  ! worker_rss: {len(before)} worker(s) before the first request")
        server_rss = [proc.memory_info().rss]
        _warm(server, [q("meta", d.SMALL, "/small")])
        at_start = rss_of(worker_processes(server.pid))
        log(f"  worker_rss: after the first request: {len(at_start)} worker(s), {_mb(at_start)}")
        res = drive(server, [heatmap_mix(p)] * clients, seconds, probe_period=None)
        loaded = rss_of(worker_processes(server.pid))
        server_rss.append(proc.memory_info().rss)
        log(
            f"  worker_rss: {clients} clients, {res.throughput:.1f} req/s"
            f"{f', {res.errors} errors!' if res.errors else ''}; then {len(loaded)} "
            f"worker(s), {_mb(loaded)}"
        )
        t0 = time.monotonic()
        while worker_processes(server.pid) and time.monotonic() - t0 < IDLE_WAIT_S:
            time.sleep(0.1)
        waited = time.monotonic() - t0
        idle = rss_of(worker_processes(server.pid))
        server_rss.append(proc.memory_info().rss)
        log(f"  worker_rss: {waited:.1f} s later: {len(idle)} worker(s), {_mb(idle)}")
    finally:
        server.stop()
    total_loaded, total_idle = sum(loaded) / MB, sum(idle) / MB
    per_worker = f"{total_loaded / len(loaded):.0f} MB" if loaded else "-"
    rows = [
        Row(
            f"extra RSS of workers: loaded → {IDLE_TIMEOUT_S} s idle",
            f"{total_loaded:.0f} → {total_idle:.0f} MB",
            "",
            "",
            "",
            "0 MB when idle",
            "yes" if not idle else "NO",
            "errors!" if res.errors else "",
            key="worker_rss",
        ),
        Row(f"  loaded: {len(loaded)} workers, per worker", per_worker, "", "", "", "info"),
        Row(
            "  per worker at start (small meta)",
            f"{at_start[0] / MB:.0f} MB" if at_start else "-",
            "",
            "",
            "",
            "info",
        ),
        Row(
            "  server process RSS: start/loaded/idle",
            "/".join(f"{v / MB:.0f}" for v in server_rss) + " MB",
            "",
            "",
            "",
            "info",
        ),
        Row(
            "  workers stopped after",
            f"{waited:.1f} s" if not idle else f"not after {waited:.0f} s ({len(idle)} left)",
            "",
            "",
            "",
            f"idle timeout {IDLE_TIMEOUT_S} s",
        ),
    ]
    record = {
        "key": "worker_rss",
        "idle_timeout_s": IDLE_TIMEOUT_S,
        "clients": clients,
        "seconds": seconds,
        "throughput": res.throughput,
        "errors": res.errors,
        "worker_rss_mb_at_start": [v / MB for v in at_start],
        "worker_rss_mb_loaded": [v / MB for v in loaded],
        "worker_rss_mb_idle": [v / MB for v in idle],
        "waited_s": waited,
        "server_rss_mb_start_loaded_idle": [v / MB for v in server_rss],
    }
    return rows, record


def _mb(sizes: list[int]) -> str:
    """Total and per-process RSS, e.g. "312 MB (156 + 156)"."""
    return f"{sum(sizes) / MB:.0f} MB ({' + '.join(f'{v / MB:.0f}' for v in sizes) or '-'})"
