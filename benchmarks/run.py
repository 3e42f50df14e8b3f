"""Benchmark jupyter_h5grove against h5grove 4.0.0, side by side on loopback (issue 6).

python benchmarks/run.py            # full run (~5 min, first run also generates ~1.6 GB)
python benchmarks/run.py --quick    # smoke run (< 1 min, reduced data)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data as d
from measure import Client, PairResult, RssSampler, interleaved, load
from profiling import PySpy, summarise
from report import OtherLoad, Row, machine_info, ms, table
from servers import Server, start_h5grove, start_ours
from workloads import Workload, heatmap_mix, workloads

STATS_RTOL = 1e-4  # float32 sums in a different order differ in the last digits
RSS_LIMIT_MB = 256
STATUS_P99_MS = 50


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def same_stats(a: bytes, b: bytes) -> bool:
    """Statistics equal within floating-point tolerance (None must match None)."""
    ja, jb = json.loads(a), json.loads(b)
    if ja.keys() != jb.keys():
        return False
    return all(
        (x is None and y is None)
        or (x is not None and y is not None and math.isclose(x, y, rel_tol=STATS_RTOL))
        for x, y in ((ja[k], jb[k]) for k in ja)
    )


def verify(ours: Client, base: Client, w: Workload) -> str:
    """Compare both answers for the first and the last query of the workload."""
    verdicts = set()
    for i in (0, 1, 1000003):
        query = w.request(i)
        s1, b1, h1, _ = ours.api(query)
        s2, b2, h2, _ = base.api(query)
        if s1 != 200 or s2 != 200:
            log(f"  ! {w.key}: HTTP {s1} (ours) vs {s2} (h5grove) for {query}: {b1[:200]!r}")
            return "HTTP!"
        if b1 == b2:
            verdicts.add("bytes")
        elif w.compare == "stats" and same_stats(b1, b2):
            verdicts.add("≈")
        else:
            log(f"  ! {w.key}: bodies differ for {query} ({len(b1)} vs {len(b2)} bytes)")
            verdicts.add("DIFF")
        ct1, ct2 = h1.get("Content-Type", ""), h2.get("Content-Type", "")
        if ct1.split(";")[0] != ct2.split(";")[0]:
            verdicts.add(f"Content-Type {ct1!r} (ours) vs {ct2!r} (h5grove)")
    for note in sorted(v for v in verdicts if v.startswith("Content-Type")):
        log(f"  ! {w.key}: {note}")
    return "DIFF" if "DIFF" in verdicts else "≈" if "≈" in verdicts else "bytes"


def run_workload(
    ours: Client, base: Client, w: Workload, quick: bool, profile_dir: Path | None, native: bool
) -> tuple[list[Row], dict]:
    pids = {"ours": ours.server.pid, "base": base.server.pid}
    rss_start = {side: psutil.Process(pid).memory_info().rss for side, pid in pids.items()}
    same = verify(ours, base, w)
    for i in range(w.warmup):  # not recorded
        ours.api(w.request(i))
        base.api(w.request(i))
    pairs = max(w.min_pairs if quick else 1, w.pairs // 10 if quick else w.pairs)
    budget = min(w.budget_s, 4.0) if quick else w.budget_s
    around = None
    rss: dict[str, list[float]] = {"ours": [], "base": []}
    if w.key == "stats":

        def around(side: str, once: Callable[[], float]) -> float:
            with RssSampler(pids[side]) as sampler:
                elapsed = once()
            # growth over the RSS before this workload's first request (verify included):
            # memory the allocator kept from an earlier request counts too
            rss[side].append((sampler.peak - rss_start[side]) / 2**20)
            return elapsed

    spy = PySpy(ours.server.pid, profile_dir / f"{w.key}.txt", native) if profile_dir else None
    t0 = time.monotonic()
    res = interleaved(ours, base, w.request, pairs, budget, min(w.min_pairs, pairs), around=around)
    if spy:
        spy.stop()
        (profile_dir / f"{w.key}.summary.txt").write_text(summarise(spy.out))
    lo, hi = res.iqr()
    ratio = res.ratio()
    log(f"  {w.label}: {len(res.ours)} pairs in {time.monotonic() - t0:.1f} s, ratio {ratio:.2f}")
    rows = [
        Row(
            w.label,
            ms(float(np.median(res.ours))),
            ms(float(np.median(res.base))),
            f"{ratio:.2f}",
            f"{lo:.2f}..{hi:.2f}",
            "info" if w.target is None else f"≤ {w.target:g}",
            "" if w.target is None else "yes" if ratio <= w.target else "NO",
            same,
        )
    ]
    record = _record(w, res, same)
    if w.key == "stats":
        grow_ours, grow_base = max(rss["ours"]), max(rss["base"])
        rows.append(
            Row(
                "stats, peak RSS growth",
                f"{grow_ours:.0f} MB",
                f"{grow_base:.0f} MB",
                f"{grow_ours / max(grow_base, 1):.2f}",
                "",
                f"ours < {RSS_LIMIT_MB} MB",
                "yes" if grow_ours < RSS_LIMIT_MB else "NO",
            )
        )
        record["rss_growth_mb"] = rss
    return rows, record


def _record(w: Workload, res: PairResult, same: str) -> dict:
    lo, hi = res.bootstrap_ci()
    return {
        "key": w.key,
        "label": w.label,
        "target": w.target,
        "same": same,
        "ours_s": res.ours,
        "h5grove_s": res.base,
        "ratio": res.ratio(),
        "pair_ratio_iqr": res.iqr(),
        "ratio_ci95": (lo, hi),
    }


def run_concurrency(
    ours: Server,
    base: Server,
    p: d.Profile,
    quick: bool,
    clients: int,
    seconds: float,
    profile_dir: Path | None = None,
    native: bool = False,
) -> tuple[list[Row], dict]:
    """Rounds of `clients` parallel readers, alternating servers (A B B A ...)."""
    mix = heatmap_mix(p)
    rounds = 1 if quick else 3
    thr: dict[str, list[float]] = {"ours": [], "base": []}
    probes: dict[str, list[float]] = {"ours": [], "base": []}
    errors = 0
    for r in range(rounds):
        order = [("ours", ours), ("base", base)]
        for side, server in order if r % 2 == 0 else order[::-1]:
            spy = None
            if profile_dir and side == "ours":
                spy = PySpy(server.pid, profile_dir / f"concurrency_{r}.txt", native)
            res = load(server, mix, clients, seconds)
            if spy:
                spy.stop()
                (profile_dir / f"concurrency_{r}.summary.txt").write_text(summarise(spy.out))
            thr[side].append(res.throughput)
            probes[side] += res.probe
            errors += res.errors
            log(
                f"  concurrency {side}: {res.throughput:.1f} req/s, {res.mbps:.0f} MB/s, "
                f"probe p99 {1e3 * np.percentile(res.probe, 99):.1f} ms"
            )
    t_ours, t_base = float(np.median(thr["ours"])), float(np.median(thr["base"]))
    p50 = {k: 1e3 * float(np.percentile(v, 50)) for k, v in probes.items()}
    p99 = {k: 1e3 * float(np.percentile(v, 99)) for k, v in probes.items()}
    spread = (
        ""
        if rounds < 2
        else (
            f"{min(thr['ours']) / max(thr['base']):.2f}..{max(thr['ours']) / min(thr['base']):.2f}"
        )
    )
    rows = [
        Row(
            f"concurrency, {clients} clients",
            f"{t_ours:.1f} req/s",
            f"{t_base:.1f} req/s",
            f"{t_ours / t_base:.2f}",
            spread,
            "≥ 1 (thr.)",
            "yes" if t_ours >= t_base else "NO",
            "errors!" if errors else "",
        ),
        Row(
            "  status latency p50/p99",
            f"{p50['ours']:.1f}/{p99['ours']:.1f} ms",
            f"{p50['base']:.1f}/{p99['base']:.1f} ms",
            "",
            "",
            f"p99 ≤ {STATUS_P99_MS} ms",
            "yes" if p99["ours"] <= STATUS_P99_MS else "NO",
        ),
    ]
    record = {
        "key": "concurrency",
        "clients": clients,
        "seconds": seconds,
        "throughput": thr,
        "status_p50_ms": p50,
        "status_p99_ms": p99,
        "errors": errors,
    }
    return rows, record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: reduced data, few pairs")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=d.default_cache_dir(),
        help="cache of generated HDF5 files (default: %(default)s)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated workload keys to run "
        "(root, meta_small, meta_children, heatmap_gzip, heatmap_blosc, stack_frame, "
        "line_json, export_npy, stats, many_one, many_rr, concurrency)",
    )
    parser.add_argument(
        "--ours",
        choices=("extension", "h5grove"),
        default="extension",
        help="'h5grove' runs a second h5grove app as 'ours' (harness A/A check)",
    )
    parser.add_argument("--base-url", default="/", help="Jupyter base_url for our server")
    parser.add_argument(
        "--ours-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra command-line argument for our Jupyter server, repeatable "
        "(e.g. --ours-arg=--H5GroveApp.worker_threads=2)",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrency clients (default 8)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="duration of one concurrency round (default 6, quick 2)",
    )
    parser.add_argument("--json", type=Path, help="also write raw results to this file")
    parser.add_argument(
        "--profile-ours",
        type=Path,
        metavar="DIR",
        help="record py-spy samples of our server per workload into DIR "
        "(timings of such a run are perturbed)",
    )
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    args = parser.parse_args(argv)

    profile = d.PROFILES["quick" if args.quick else "full"]
    only = {k for k in args.only.split(",") if k}
    root = d.ensure_data(args.data_dir, profile, log)
    log(f"warming the page cache over {root} ...")
    d.warm_page_cache(root)
    if args.profile_ours:
        args.profile_ours.mkdir(parents=True, exist_ok=True)

    t_start = time.monotonic()
    other_load = OtherLoad()
    rows: list[Row] = []
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="h5grove-bench-") as tmp:
        workdir = Path(tmp)
        servers: list[Server] = []
        try:
            if args.ours == "extension":
                servers.append(
                    start_ours(root, workdir, base_url=args.base_url, extra_args=args.ours_arg)
                )
            else:
                servers.append(start_h5grove(root, workdir, label="ours"))
            servers.append(start_h5grove(root, workdir))
            ours_srv, base_srv = servers
            log(
                f"ours: http://127.0.0.1:{ours_srv.port}{ours_srv.prefix} (pid {ours_srv.pid}); "
                f"h5grove: http://127.0.0.1:{base_srv.port}/ (pid {base_srv.pid})"
            )
            ours, base = Client(ours_srv), Client(base_srv)
            for w in workloads(profile):
                if only and w.key not in only:
                    continue
                r, rec = run_workload(ours, base, w, args.quick, args.profile_ours, args.native)
                rows += r
                records.append(rec)
            ours.close()
            base.close()
            if not only or "concurrency" in only:
                seconds = args.seconds or (2.0 if args.quick else 6.0)
                r, rec = run_concurrency(
                    ours_srv,
                    base_srv,
                    profile,
                    args.quick,
                    args.clients,
                    seconds,
                    args.profile_ours,
                    args.native,
                )
                rows += r
                records.append(rec)
        finally:
            for s in servers:
                s.stop()  # reaped: its CPU time now counts in RUSAGE_CHILDREN, as ours

    info = machine_info()
    print()
    print(
        f"jupyter_h5grove vs h5grove 4.0.0 — profile '{profile.name}'"
        f"{' (QUICK: reduced data, few pairs)' if args.quick else ''}, "
        f"{time.monotonic() - t_start:.0f} s"
    )
    info["machine sharing"] = other_load.summary()
    for k, v in info.items():
        print(f"  {k}: {v}")
    if args.ours != "extension":
        print("  NOTE: 'ours' is a second h5grove app (A/A check of the harness)")
    print()
    print(table(rows))
    print()
    print(
        "ratio = median(ours) / median(h5grove) latency over interleaved pairs (lower is "
        "better);\nspread = IQR of the per-pair ratios; same? = response bodies compared "
        f"(bytes, or ≈ within rtol {STATS_RTOL:g} for stats)."
    )
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "profile": profile.name, "results": records}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
