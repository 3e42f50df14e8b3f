"""Benchmark jupyter_h5grove against h5grove 4.0.0 and jupyterlab-h5web's server, side by
side on loopback (issues 6 and 10), and remote files against h5py + fsspec (issue 12).

python benchmarks/run.py                # full run (first run also generates ~1.7 GB)
python benchmarks/run.py --quick        # smoke run (reduced data, few rounds)
python benchmarks/run.py --only nexus   # the NeXus master-file rows only
python benchmarks/run.py --only remote  # the remote-data rows only (remote.py)
python benchmarks/run.py --only web     # issue 13's rows: 304s, gzip, throttled links, logins
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data as d
from measure import (
    Answer,
    Client,
    PairResult,
    RssSampler,
    interleaved,
    load,
    one_round,
    wait_idle,
)
from nexus import BATCH, ScratchNexus
from parallel import run_stats_meanwhile, run_two_clients, run_worker_rss
from profiling import PySpy, summarise
from remote import LATENCY_S, SLOW_LATENCY_S, missing_modules, run_remote
from remote import NOTES as REMOTE_NOTES
from report import OtherLoad, Row, machine_info, ms, table
from servers import Lineup, Server, started
from web import NOTES as WEB_NOTES
from web import run_web
from workloads import CHANGED, FIRST, Workload, heatmap_mix, workloads

STATS_RTOL = 1e-4  # float32 sums in a different order differ in the last digits
RSS_LIMIT_MB = 256
STATUS_P99_MS = 20  # ours' status latency under the concurrency load
CONCURRENCY_TARGET = 2.0  # ours' throughput / h5grove's under the concurrency load
# Rows measured by their own methods (not Workloads), in the table after the ungrouped
# workloads: the first four on the running servers, worker_rss on a server of its own.
SPECIALS = ("concurrency", "two_clients", "stats_meanwhile", "web", "worker_rss")
REMOTE = "remote"  # remote.py's rows (issue 12), last, on servers and a store of their own


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


class Verdicts:
    """Answers of ours and of jupyterlab-h5web compared with h5grove's: the `same?` cell."""

    RANK = ("bytes", "≈", "DIFF", "HTTP!")  # a row shows the worst verdict of its checks

    def __init__(self, w: Workload):
        self.w = w
        self.found: dict[str, set[str]] = {"ours": set(), "h5web": set()}
        self.notes: set[str] = set()  # logged once each

    def add(self, query: str, answers: dict[str, Answer], when: str = "") -> None:
        """Compare the answers to `query` (side -> answer) with h5grove's ("base")."""
        s_base, b_base, h_base, _ = answers["base"]
        where = f" ({when})" if when else ""
        for side in ("ours", "h5web"):
            if side not in answers:
                continue
            status, body, headers, _ = answers[side]
            name = "ours" if side == "ours" else "jupyterlab-h5web"
            if status != 200 or s_base != 200:
                log(
                    f"  ! {self.w.key}: HTTP {status} ({name}) vs {s_base} (h5grove) for "
                    f"{query}{where}: {body[:200]!r}"
                )
                self.found[side].add("HTTP!")
                continue
            if body == b_base:
                self.found[side].add("bytes")
            elif self.w.compare == "stats" and same_stats(body, b_base):
                self.found[side].add("≈")
            else:
                log(
                    f"  ! {self.w.key}: bodies differ ({name} vs h5grove) for {query}{where} "
                    f"({len(body)} vs {len(b_base)} bytes)"
                )
                self.found[side].add("DIFF")
            ct, ct_base = headers.get("Content-Type", ""), h_base.get("Content-Type", "")
            note = f"  ! {self.w.key}: Content-Type {ct!r} ({name}) vs {ct_base!r} (h5grove)"
            if ct.split(";")[0] != ct_base.split(";")[0] and note not in self.notes:
                self.notes.add(note)
                log(note)

    def worst(self, side: str) -> str:
        return max(self.found[side], key=self.RANK.index, default="")

    def cell(self) -> str:
        """Ours' verdict; jupyterlab-h5web's too when it is not as good."""
        ours, h5web = self.worst("ours"), self.worst("h5web")
        if h5web and self.RANK.index(h5web) > self.RANK.index(ours):
            return f"{ours}, h5web {h5web}"
        return ours

    def record(self) -> dict[str, str]:
        return {side: self.worst(side) for side in self.found if self.found[side]}


def verify(clients: dict[str, Client], w: Workload) -> Verdicts:
    """Compare the answers to the first queries and a far one of the workload."""
    verdicts = Verdicts(w)
    for query in dict.fromkeys(w.request(i) for i in (0, 1, 1000003)):  # distinct ones
        verdicts.add(query, {side: c.api(query) for side, c in clients.items()})
    return verdicts


def sides_for(clients: dict[str, Client], w: Workload) -> dict[str, Client]:
    """The clients of the servers that answer `w` (jupyterlab-h5web lacks some endpoints)."""
    return {side: c for side, c in clients.items() if side != "h5web" or w.h5web}


def run_workload(
    clients: dict[str, Client],
    w: Workload,
    quick: bool,
    profile_dir: Path | None,
    native: bool,
) -> tuple[list[Row], dict]:
    """An INTERLEAVED row: rounds on the running servers after an unrecorded warm-up."""
    clients = sides_for(clients, w)
    ours, base, h5web = clients["ours"], clients["base"], clients.get("h5web")
    pids = {side: c.server.pid for side, c in clients.items()}
    rss_start = {side: psutil.Process(pid).memory_info().rss for side, pid in pids.items()}
    same = verify(clients, w)
    for i in range(w.warmup):  # not recorded
        for client in clients.values():
            client.api(w.request(i))
    pairs = samples(w, quick)
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
    res = interleaved(
        ours, base, w.request, pairs, budget, min(w.min_pairs, pairs), around=around, h5web=h5web
    )
    if spy:
        spy.stop()
        (profile_dir / f"{w.key}.summary.txt").write_text(summarise(spy.out))
    log(f"  {w.label}: {len(res.ours)} rounds in {time.monotonic() - t0:.1f} s, {_ratios(res)}")
    rows, record = [_row(w, res, same)], _record(w, res, same)
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


def samples(w: Workload, quick: bool) -> int:
    """Rounds of a row: `pairs`, or a tenth of it with --quick (at least `min_pairs`)."""
    return max(w.min_pairs if quick else 1, w.pairs // 10 if quick else w.pairs)


def _record_round(res: PairResult, answers: dict[str, Answer]) -> None:
    for side, (_, _, _, elapsed) in answers.items():
        getattr(res, side).append(elapsed)


def run_first(
    lineup: Lineup, workdir: Path, w: Workload, quick: bool, rng: random.Random
) -> tuple[list[Row], dict]:
    """A FIRST row: per sample, start the servers, wait until they are ready and idle, send
    each exactly one request `w.request(sample)` (in a random order), stop them."""
    if not w.h5web:
        lineup = dataclasses.replace(lineup, h5web=False)
    res, same = PairResult(), Verdicts(w)
    n = samples(w, quick)
    for k in range(n):
        t0 = time.monotonic()
        with started(lineup, workdir) as servers:
            t_ready = time.monotonic() - t0
            idle = wait_idle(list(servers.values()))
            clients = {side: Client(server) for side, server in servers.items()}
            query = w.request(k)
            answers = one_round(clients, query, rng)
            for client in clients.values():
                client.close()
        _record_round(res, answers)
        same.add(query, answers, f"sample {k}")
        log(
            f"  {w.label}: sample {k + 1}/{n}: ready in {t_ready:.1f} s"
            f"{'' if idle else ' (not idle after 10 s)'}, " + _times(answers)
        )
    log(f"  {w.label}: {_ratios(res)}")
    return [_row(w, res, same)], _record(w, res, same)


def run_changed(
    clients: dict[str, Client],
    root: Path,
    w: Workload,
    quick: bool,
    rng: random.Random,
    profile_dir: Path | None,
    native: bool,
) -> tuple[list[Row], dict]:
    """A CHANGED row, on the running servers and a scratch copy of the NeXus folder.

    Per sample: change the next batch of scan files (nexus.ScratchNexus.change), time one
    request per server (random order) and compare the answers (a stale cache shows as DIFF),
    then write the originals back and send one unrecorded request per server (also compared),
    so that the next sample starts from servers in step with the files.
    """
    clients = sides_for(clients, w)
    res, same = PairResult(), Verdicts(w)
    n = samples(w, quick)
    with ScratchNexus(root) as scratch:
        for i in range(w.warmup):  # not recorded
            same.add(w.request(i), one_round(clients, w.request(i), rng), "warm-up")
        before = base_answer(clients, w.request(0))  # with every target as generated
        spy = None
        if profile_dir:
            spy = PySpy(clients["ours"].server.pid, profile_dir / f"{w.key}.txt", native)
        for k in range(n):
            batch = scratch.batch(k)
            done = scratch.change(batch, seed=k + 1)
            query = w.request(k)
            answers = one_round(clients, query, rng)
            _record_round(res, answers)
            same.add(query, answers, f"sample {k}, {len(batch)} targets changed")
            if answers["base"][1] == before:
                log(f"  ! {w.key}: h5grove's answer did not change: the changes are not seen")
            scratch.restore(batch)
            synced = one_round(clients, query, rng)  # not recorded
            same.add(query, synced, f"sample {k}, after restoring the originals")
            if synced["base"][1] != before:
                log(f"  ! {w.key}: h5grove's answer differs after restoring the originals")
            log(f"  {w.label}: sample {k + 1}/{n}: {done}; " + _times(answers))
        if spy:
            spy.stop()
            (profile_dir / f"{w.key}.summary.txt").write_text(summarise(spy.out))
    log(f"  {w.label}: {_ratios(res)}")
    return [_row(w, res, same)], _record(w, res, same)


def base_answer(clients: dict[str, Client], query: str) -> bytes:
    """h5grove's answer (the reference)."""
    status, body, _, _ = clients["base"].api(query)
    if status != 200:
        raise RuntimeError(f"h5grove: HTTP {status} for {query}: {body[:200]!r}")
    return body


SIDE_NAMES = {"ours": "ours", "base": "h5grove", "h5web": "h5web"}


def _times(answers: dict[str, Answer]) -> str:
    """The latencies of one round, in the order the requests were sent."""
    return ", ".join(f"{SIDE_NAMES[side]} {ms(a[3])}" for side, a in answers.items())


def _ratios(res: PairResult) -> str:
    text = f"ratio {res.ratio():.2f}"
    return text + (f", ours/h5web {res.ratio('h5web'):.2f}" if res.h5web else "")


def _row(w: Workload, res: PairResult, same: Verdicts) -> Row:
    ratio = res.ratio()
    lo, hi = res.iqr()
    return Row(
        w.label,
        ms(float(np.median(res.ours))),
        ms(float(np.median(res.base))),
        f"{ratio:.2f}",
        f"{lo:.2f}..{hi:.2f}",
        "info" if w.target is None else f"≤ {w.target:g}",
        "" if w.target is None else "yes" if ratio <= w.target else "NO",
        same.cell(),
        ms(float(np.median(res.h5web))) if res.h5web else "",
        f"{res.ratio('h5web'):.2f}" if res.h5web else "",
        key=w.key,
    )


def _record(w: Workload, res: PairResult, same: Verdicts) -> dict:
    lo, hi = res.bootstrap_ci()
    record = {
        "key": w.key,
        "label": w.label,
        "method": w.method,
        "target": w.target,
        "same": same.cell(),
        "same_by_side": same.record(),
        "ours_s": res.ours,
        "h5grove_s": res.base,
        "ratio": res.ratio(),
        "pair_ratio_iqr": res.iqr(),
        "ratio_ci95": (lo, hi),
    }
    if res.h5web:
        record |= {
            "h5web_s": res.h5web,
            "ratio_h5web": res.ratio("h5web"),
            "pair_ratio_h5web_iqr": res.iqr("h5web"),
            "ratio_h5web_ci95": res.bootstrap_ci(other="h5web"),
        }
    return record


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
            f"≥ {CONCURRENCY_TARGET:.1f}x (thr.)",
            "yes" if t_ours >= CONCURRENCY_TARGET * t_base else "NO",
            "errors!" if errors else "",
            key="concurrency",
        ),
        Row(
            "  status latency p50/p99",
            f"{p50['ours']:.1f}/{p99['ours']:.1f} ms",
            f"{p50['base']:.1f}/{p99['base']:.1f} ms",
            "",
            "",
            f"p99 ≤ {STATUS_P99_MS} ms",
            "yes" if p99["ours"] <= STATUS_P99_MS else "NO",
            key="status p99",
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
        "target": CONCURRENCY_TARGET,
        "status_p99_target_ms": STATUS_P99_MS,
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
        help="comma-separated workload keys or groups to run "
        "(root, meta_small, meta_children, heatmap_gzip, heatmap_blosc, stack_frame, "
        "line_json, export_npy, stats, many_one, many_rr, concurrency, two_clients, "
        "stats_meanwhile, web, worker_rss; group nexus: nexus_meta_first, nexus_meta, "
        "nexus_paths_first, nexus_paths, nexus_meta_changed; remote: remote.py's rows; "
        "web: issue 13's rows, web.py)",
    )
    parser.add_argument(
        "--ours",
        choices=("extension", "h5grove"),
        default="extension",
        help="'h5grove' runs a second h5grove app as 'ours' (harness A/A check)",
    )
    parser.add_argument(
        "--no-h5web",
        action="store_true",
        help="do not start jupyterlab-h5web's server (the third side)",
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
        help="duration of one concurrency round, of one two_clients measurement (default 6) "
        "and of worker_rss's load (default 4); quick: 2",
    )
    parser.add_argument(
        "--today",
        type=Path,
        metavar="FILE",
        help='a JSON object row key -> text (e.g. {"heatmap_gzip": "0.89-0.95"}), '
        "printed as an extra column 'today' (see benchmarks/today-issue*.json)",
    )
    parser.add_argument(
        "--remote-latency-ms",
        type=float,
        default=1e3 * LATENCY_S,
        help="remote rows: delay added to each request to the store (default %(default)g)",
    )
    parser.add_argument(
        "--remote-slow-ms",
        type=float,
        default=1e3 * SLOW_LATENCY_S,
        help="remote rows: the same, for the slow store of the meanwhile row (default %(default)g)",
    )
    parser.add_argument("--json", type=Path, help="also write raw results to this file")
    parser.add_argument(
        "--profile-ours",
        type=Path,
        metavar="DIR",
        help="record py-spy samples of our server per workload into DIR "
        "(timings of such a run are perturbed; not for the first-request rows; web: after its "
        "rows, bursts of meta small on ours, token then cookie, and on h5grove)",
    )
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    args = parser.parse_args(argv)

    profile = d.PROFILES["quick" if args.quick else "full"]
    only = {k for k in args.only.split(",") if k}
    every = workloads(profile)
    known = {w.key for w in every} | {w.group for w in every if w.group} | set(SPECIALS)
    known.add(REMOTE)
    if only - known:
        parser.error(f"unknown workload(s) in --only: {', '.join(sorted(only - known))}")
    today = read_today(parser, args.today)
    chosen = [w for w in every if not only or w.key in only or w.group in only]
    specials = [key for key in SPECIALS if not only or key in only]
    if "web" in specials and args.ours != "extension":
        if "web" in only:
            parser.error("--only web: 'ours' is an h5grove app (no 304s, gzip nor logins)")
        log("web rows skipped: 'ours' is an h5grove app")
        specials.remove("web")
    on_running = [key for key in specials if key != "worker_rss"]
    lineup_rows = bool(chosen or specials)  # rows of the three servers (not remote ones)
    if lineup_rows and not args.no_h5web and importlib.util.find_spec("jupyterlab_h5web") is None:
        parser.error("jupyterlab-h5web is not installed: pip install it, or pass --no-h5web")
    remote = not only or REMOTE in only
    skip = ""
    if remote and missing_modules():
        skip = f"missing {', '.join(missing_modules())} (pip install -e '.[bench,test]')"
    elif remote and args.ours != "extension":
        skip = "'ours' is an h5grove app (it serves no remote file)"
    if skip and REMOTE in only:
        parser.error(f"--only remote: {skip}")
    elif skip:
        log(f"remote rows skipped: {skip}")
        remote = False
    names = None if lineup_rows else (d.SMALL, d.HEATMAP)  # remote rows: those two only
    root = d.ensure_data(args.data_dir, profile, log, names=names)
    if lineup_rows:
        log(f"warming the page cache over {root} ...")
        d.warm_page_cache(root)
    if args.profile_ours:
        args.profile_ours.mkdir(parents=True, exist_ok=True)
    lineup = Lineup(
        root,
        ours=args.ours,
        base_url=args.base_url,
        ours_args=tuple(args.ours_arg),
        h5web=not args.no_h5web,
    )

    t_start = time.monotonic()
    other_load = OtherLoad()
    results: dict[str, tuple[list[Row], dict]] = {}
    rng = random.Random(0)  # order of the sides in the FIRST and CHANGED rows
    with tempfile.TemporaryDirectory(prefix="h5grove-bench-") as tmp:
        workdir = Path(tmp)
        # Running servers: INTERLEAVED and CHANGED rows, the concurrency rounds
        running = [w for w in chosen if w.method != FIRST]
        if running or on_running:
            with started(lineup, workdir) as servers:
                log(
                    "; ".join(
                        f"{s.label}: http://127.0.0.1:{s.port}{s.prefix} (pid {s.pid})"
                        for s in servers.values()
                    )
                )
                clients = {side: Client(server) for side, server in servers.items()}
                for w in running:
                    if w.group:  # the special rows before the grouped ones
                        run_specials(on_running, results, servers, profile, args)
                    if w.method == CHANGED:
                        results[w.key] = run_changed(
                            clients, root, w, args.quick, rng, args.profile_ours, args.native
                        )
                    else:
                        results[w.key] = run_workload(
                            clients, w, args.quick, args.profile_ours, args.native
                        )
                for client in clients.values():
                    client.close()
                run_specials(on_running, results, servers, profile, args)
        # A server of its own, with the others stopped
        if "worker_rss" in specials:
            if args.ours == "extension":
                log("worker_rss: a separate instance of our server")
                results["worker_rss"] = run_worker_rss(
                    lineup,
                    workdir,
                    profile,
                    args.clients,
                    args.seconds or (2.0 if args.quick else 4.0),
                )
            else:
                log("worker_rss: skipped ('ours' is an h5grove app: no worker processes)")
        # Fresh servers per sample: FIRST rows, once the running servers are stopped
        first = [w for w in chosen if w.method == FIRST]
        if first:
            d.warm_page_cache(root / d.NEXUS_DIR)  # again: the other rows read 1+ GB since
        for w in first:
            results[w.key] = run_first(lineup, workdir, w, args.quick, rng)
        # Remote data: a store, its proxies and servers of their own, the others stopped
        if remote:
            log("remote ...")
            results[REMOTE] = run_remote(
                root,
                workdir,
                args.quick,
                args.base_url,
                tuple(args.ours_arg),
                args.remote_latency_ms / 1e3,
                args.remote_slow_ms / 1e3,
            )

    info = machine_info()
    only_remote = list(results) == [REMOTE]  # then no h5grove nor h5web server ran
    if only_remote:
        title = "jupyter_h5grove, remote data (vs h5py + fsspec)"
    else:
        title = "jupyter_h5grove vs h5grove 4.0.0"
        title += "" if args.no_h5web else " and jupyterlab-h5web"
    print()
    print(
        f"{title} — profile '{profile.name}'"
        f"{' (QUICK: reduced data, few pairs)' if args.quick else ''}, "
        f"{time.monotonic() - t_start:.0f} s"
    )
    info["machine sharing"] = other_load.summary()
    for k, v in info.items():
        print(f"  {k}: {v}")
    if args.ours != "extension":
        print("  NOTE: 'ours' is a second h5grove app (A/A check of the harness)")
    print()
    # rows in the order of the workloads, the special rows after the ungrouped ones
    order = [w.key for w in every if not w.group] + list(SPECIALS)
    order += [w.key for w in every if w.group] + [REMOTE]
    rows = [row for key in order if key in results for row in results[key][0]]
    if today is not None:
        for row in rows:
            row.today = today.get(row.key, "") if row.key else ""
        shown = {row.key for row in rows}
        absent = sorted(set(today) - shown)
        if absent:
            log(f"--today: no row printed for {', '.join(absent)}")
    print(
        table(
            rows,
            h5web=not args.no_h5web and lineup_rows,
            today=today is not None,
            base="h5py+fsspec" if only_remote else "",
        )
    )
    print()
    print(REMOTE_NOTES if only_remote else "\n".join(notes_of(args, results, today)))
    if args.json:
        records = [results[key][1] for key in order if key in results]
        out = {"machine": info, "profile": profile.name, "results": records}
        if today is not None:
            out["today"] = today
        args.json.write_text(json.dumps(out, indent=1))
    return 0


def notes_of(
    args: argparse.Namespace,
    results: dict[str, tuple[list[Row], dict]],
    today: dict[str, str] | None,
) -> list[str]:
    """The lines under the table: how to read the rows that ran."""
    notes = [
        "ratio = median(ours) / median(h5grove) latency over interleaved rounds (lower is better);",
        "spread = IQR of the per-round ratios; same? = response bodies compared with h5grove's",
        f"(bytes, or ≈ within rtol {STATS_RTOL:g} for stats; 'h5web X': jupyterlab-h5web's "
        "were not as close);",
    ]
    if not args.no_h5web:
        notes += [
            "h5web = median latency of jupyterlab-h5web's server, ours/h5web = median(ours) / "
            "median(h5web)",
            "(empty where it has no such endpoint: root, stats);",
        ]
    notes += [
        "'1st req.' = one request per sample to freshly started servers; 'targets changed' =",
        f"one request per sample just after changing {BATCH} of the files the answer depends on.",
    ]
    special_notes = {  # for the rows that ran
        "concurrency": "concurrency: ratio = throughput ours / h5grove (median of rounds);",
        "two_clients": "two_clients: ratio = ours' throughput, 2 clients on 2 files / 1 client "
        "(median of\nrounds), spread = its range; h5grove's ratio in its cell;",
        "stats_meanwhile": "stats_meanwhile: latencies of the metas sent while a stats was in "
        "flight,\nratio = p99 ours / h5grove;",
        "worker_rss": "worker_rss: a separate instance of our server, its workers' RSS summed.",
        "web": WEB_NOTES,
    }
    notes += [text for key, text in special_notes.items() if key in results]
    if REMOTE in results:
        notes.append(REMOTE_NOTES)
    if today is not None:
        notes.append(f"today = the figures the issue gives for today ({args.today}).")
    return notes


def read_today(parser: argparse.ArgumentParser, path: Path | None) -> dict[str, str] | None:
    """The --today file: a JSON object row key -> text (None without the option)."""
    if path is None:
        return None
    try:
        today = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        parser.error(f"--today {path}: {e}")
    if not isinstance(today, dict) or not all(isinstance(v, str) for v in today.values()):
        parser.error(f"--today {path}: not a JSON object of strings")
    return today


def run_specials(
    keys: list[str],
    results: dict[str, tuple[list[Row], dict]],
    servers: dict[str, Server],
    profile: d.Profile,
    args: argparse.Namespace,
) -> None:
    """The special rows `keys` measured on the running servers, those not done yet."""
    seconds = args.seconds or (2.0 if args.quick else 6.0)
    for key in keys:
        if key in results:
            continue
        log(f"{key} ...")
        if key == "concurrency":
            results[key] = concurrency(servers, profile, args)
        elif key == "two_clients":
            results[key] = run_two_clients(servers, profile, args.quick, seconds)
        elif key == "stats_meanwhile":
            results[key] = run_stats_meanwhile(servers, 5.0 if args.quick else 10.0)
        elif key == "web":
            workdir = servers["ours"].log_path.parent if servers["ours"].log_path else None
            results[key] = run_web(
                servers, args.quick, workdir or Path(tempfile.gettempdir()), args.profile_ours
            )
        else:
            raise AssertionError(key)


def concurrency(
    servers: dict[str, Server], profile: d.Profile, args: argparse.Namespace
) -> tuple[list[Row], dict]:
    """The concurrency rounds (ours and h5grove only)."""
    return run_concurrency(
        servers["ours"],
        servers["base"],
        profile,
        args.quick,
        args.clients,
        args.seconds or (2.0 if args.quick else 6.0),
        args.profile_ours,
        args.native,
    )


if __name__ == "__main__":
    sys.exit(main())
