"""Client-side measurement: keep-alive requests, interleaved pairs, RSS sampling, load."""

from __future__ import annotations

import http.client
import multiprocessing as mp
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType

import numpy as np
import psutil
from servers import Server


class Client:
    """One keep-alive HTTP/1.1 connection to one server, keeping cookies as a browser does."""

    def __init__(self, server: Server, timeout: float = 300.0):
        self.server = server
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.cookies: dict[str, str] = {}  # like a browser: send back what the server set

    def get(self, path: str) -> tuple[int, bytes, dict[str, str], float]:
        """GET `path` (absolute); return status, body, headers and wall time in seconds."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.server.port, timeout=self.timeout
                )
            try:
                headers = dict(self.server.headers)
                if self.cookies:
                    headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
                t0 = time.perf_counter()
                self.conn.request("GET", path, headers=headers)
                resp = self.conn.getresponse()
                body = resp.read()
                elapsed = time.perf_counter() - t0
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt:
                    raise
                continue
            for cookie in resp.headers.get_all("Set-Cookie") or ():
                name, _, value = cookie.split(";", 1)[0].partition("=")
                self.cookies[name.strip()] = value
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            return resp.status, body, dict(resp.getheaders()), elapsed
        raise AssertionError("unreachable")

    def api(self, query: str) -> tuple[int, bytes, dict[str, str], float]:
        """GET an h5grove API endpoint, e.g. `meta?file=a.h5&path=/`."""
        return self.get(self.server.prefix + query)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class RssSampler:
    """Peak RSS of a process while a block runs, sampled in a background thread."""

    def __init__(self, pid: int, period: float = 0.005):
        self.proc = psutil.Process(pid)
        self.period = period
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.period)

    def __enter__(self) -> RssSampler:
        self.before = self.peak = self.proc.memory_info().rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.before


@dataclass
class PairResult:
    """Latencies (s) of interleaved requests: ours[i], base[i] (and h5web[i]) form round i.

    `base` is h5grove's app; `h5web` is jupyterlab-h5web's server, empty where it does not
    take part. "Pair" is the historical name of a round.
    """

    ours: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    h5web: list[float] = field(default_factory=list)

    def ratio(self, other: str = "base") -> float:
        """median(ours) / median(other)."""
        return float(np.median(self.ours) / np.median(getattr(self, other)))

    def pair_ratios(self, other: str = "base") -> np.ndarray:
        return np.asarray(self.ours) / np.asarray(getattr(self, other))

    def iqr(self, other: str = "base") -> tuple[float, float]:
        q1, q3 = np.percentile(self.pair_ratios(other), [25, 75])
        return float(q1), float(q3)

    def bootstrap_ci(
        self, n: int = 2000, seed: int = 0, other: str = "base"
    ) -> tuple[float, float]:
        """95% bootstrap CI of median(ours)/median(other), resampling rounds."""
        rng = np.random.default_rng(seed)
        ours, base = np.asarray(self.ours), np.asarray(getattr(self, other))
        idx = rng.integers(0, len(ours), size=(n, len(ours)))
        ratios = np.median(ours[idx], axis=1) / np.median(base[idx], axis=1)
        lo, hi = np.percentile(ratios, [2.5, 97.5])
        return float(lo), float(hi)


Request = Callable[[int], str]  # pair index -> API query (same query for every side)


def interleaved(
    ours: Client,
    base: Client,
    request: Request,
    pairs: int,
    budget_s: float,
    min_pairs: int = 5,
    seed: int = 0,
    around: Callable[[str, Callable[[], float]], float] | None = None,
    h5web: Client | None = None,
) -> PairResult:
    """Run `pairs` rounds, one request per side in a random order, within a time budget."""
    rng = random.Random(seed)
    result = PairResult()
    start = time.monotonic()
    for i in range(pairs):
        if i >= min_pairs and time.monotonic() - start > budget_s:
            break
        query = request(i)
        sides = [("ours", ours, result.ours), ("base", base, result.base)]
        if h5web is not None:
            sides.append(("h5web", h5web, result.h5web))
        rng.shuffle(sides)
        for name, client, sink in sides:

            def once(client: Client = client, query: str = query) -> float:
                status, _, _, elapsed = client.api(query)
                if status != 200:
                    raise RuntimeError(f"{client.server.label}: HTTP {status} for {query}")
                return elapsed

            sink.append(around(name, once) if around else once())
    return result


def interleaved_calls(
    calls: dict[str, Callable[[int], float]],
    rounds: int,
    budget_s: float,
    min_rounds: int = 3,
    seed: int = 0,
) -> dict[str, list[float]]:
    """`interleaved` for any sides: per round i, each call (name -> call(i) -> seconds) once,
    in a random order; `rounds` rounds, fewer once `budget_s` is spent (at least
    `min_rounds`). Returns name -> seconds of each round."""
    rng = random.Random(seed)
    result: dict[str, list[float]] = {name: [] for name in calls}
    start = time.monotonic()
    for i in range(rounds):
        if i >= min_rounds and time.monotonic() - start > budget_s:
            break
        order = list(calls.items())
        rng.shuffle(order)
        for name, call in order:
            result[name].append(call(i))
    return result


Answer = tuple[int, bytes, dict[str, str], float]  # status, body, headers, seconds


def one_round(clients: dict[str, Client], query: str, rng: random.Random) -> dict[str, Answer]:
    """One request `query` to each side (name -> client), in a random order."""
    order = list(clients.items())
    rng.shuffle(order)
    return {name: client.api(query) for name, client in order}


def wait_idle(
    servers: Sequence[Server], quiet_s: float = 0.25, cpu_share: float = 0.02, timeout: float = 10.0
) -> bool:
    """Wait until no server uses more than `cpu_share` of a CPU over `quiet_s` (Jupyter
    finishes starting its extensions after it answers). False if still busy at `timeout`."""
    procs = [psutil.Process(s.pid) for s in servers]

    def cpu() -> list[float]:
        return [sum(p.cpu_times()[:2]) for p in procs]  # user + system

    deadline = time.monotonic() + timeout
    before = cpu()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        after = cpu()
        if all(b - a <= cpu_share * quiet_s for a, b in zip(before, after, strict=True)):
            return True
        before = after
    return False


# ---- concurrency: load generators and a probe, each in its own process (no shared GIL) ----


def _load_worker(
    server: Server, queries: Sequence[str], seconds: float, seed: int, out: mp.Queue
) -> None:
    client = Client(server)
    rng = random.Random(seed)
    order = list(queries)
    rng.shuffle(order)
    count = nbytes = errors = 0
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        status, body, _, _ = client.api(order[i % len(order)])
        i += 1
        if status == 200:
            count += 1
            nbytes += len(body)
        else:
            errors += 1
    out.put((count, nbytes, errors))


def _probe_worker(server: Server, seconds: float, period: float, out: mp.Queue) -> None:
    client = Client(server)
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        status, _, _, elapsed = client.get(server.status_path)
        if status == 200:
            latencies.append(elapsed)
        time.sleep(period)
    out.put(latencies)


@dataclass
class LoadResult:
    throughput: float  # requests / s, all clients
    mbps: float  # MB / s of response bodies
    errors: int
    probe: list[float]  # latencies (s) of the status endpoint during the load


def load(
    server: Server, queries: Sequence[str], clients: int, seconds: float, probe_period: float = 0.01
) -> LoadResult:
    """`clients` processes loop over `queries` for `seconds`; a probe hits the status path."""
    return drive(server, [queries] * clients, seconds, probe_period)


def drive(
    server: Server,
    mixes: Sequence[Sequence[str]],
    seconds: float,
    probe_period: float | None = 0.01,
) -> LoadResult:
    """One client process per mix, each looping over its mix (in its own shuffled order,
    seeded by its index) for `seconds`; with a `probe_period`, a probe process requests the
    status path meanwhile (else `probe` is empty)."""
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    probe_out: mp.Queue = ctx.Queue()
    workers = [
        ctx.Process(target=_load_worker, args=(server, mix, seconds, seed, out))
        for seed, mix in enumerate(mixes)
    ]
    if probe_period is not None:
        workers.append(
            ctx.Process(target=_probe_worker, args=(server, seconds, probe_period, probe_out))
        )
    for p in workers:
        p.start()
    results = [out.get() for _ in mixes]
    latencies = probe_out.get() if probe_period is not None else []
    for p in workers:
        p.join()
    count = sum(r[0] for r in results)
    return LoadResult(
        throughput=count / seconds,
        mbps=sum(r[1] for r in results) / seconds / 1e6,
        errors=sum(r[2] for r in results),
        probe=latencies,
    )


# ---- a long request meanwhile: short requests timed while long ones are in flight ----


def _long_worker(
    server: Server, query: str, seconds: float, done: EventType, out: mp.Queue
) -> None:
    """Send `query` again and again, starting the last one before `seconds` are over (at
    least one); put the (start, end, status) of each, then set `done`."""
    client = Client(server)
    calls = []
    deadline = time.monotonic() + seconds
    try:
        while True:
            t0 = time.monotonic()
            status, body, _, _ = client.api(query)
            calls.append((t0, time.monotonic(), status, body[:200] if status != 200 else b""))
            if time.monotonic() >= deadline:
                break
    finally:
        done.set()
        out.put(calls)


def _short_worker(
    server: Server, query: str, period: float, done: EventType, limit: float, out: mp.Queue
) -> None:
    """Send `query` every `period` s until `done` is set (at most `limit` s); put the
    (start, end, status) of each."""
    client = Client(server)
    calls = []
    deadline = time.monotonic() + limit
    try:
        while not done.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            status, body, _, _ = client.api(query)
            calls.append((t0, time.monotonic(), status, body[:200] if status != 200 else b""))
            time.sleep(period)
    finally:
        out.put(calls)


Call = tuple[float, float, int, bytes]  # start, end (time.monotonic, all processes), status,
# the start of the body of a non-200 answer


@dataclass
class Meanwhile:
    """The calls of `meanwhile()`: the long ones, the short ones, and of these those sent
    while one of the long ones was in flight."""

    long: list[Call]
    short_all: list[Call]
    short: list[Call]  # sent while a long call was in flight

    @staticmethod
    def latencies(calls: list[Call]) -> list[float]:
        """Seconds of the calls answered 200."""
        return [end - start for start, end, status, _ in calls if status == 200]

    def long_errors(self) -> list[Call]:
        return [c for c in self.long if c[2] != 200]

    def short_errors(self) -> list[Call]:
        return [c for c in self.short_all if c[2] != 200]


def meanwhile(
    server: Server,
    long_query: str,
    short_query: str,
    seconds: float,
    period: float = 0.01,
    limit: float = 600.0,
) -> Meanwhile:
    """One client process sends `long_query` in a loop for about `seconds` (the last one
    started before they are over runs to its end), another sends `short_query` every `period`
    s until the first is done (at most `limit` s). The short calls kept are those sent while a
    long one was in flight. time.monotonic is CLOCK_MONOTONIC on Linux: one clock for all
    processes."""
    ctx = mp.get_context("fork")
    done = ctx.Event()
    long_out: mp.Queue = ctx.Queue()
    short_out: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_long_worker, args=(server, long_query, seconds, done, long_out)),
        ctx.Process(
            target=_short_worker, args=(server, short_query, period, done, limit, short_out)
        ),
    ]
    for p in procs:
        p.start()
    try:  # each puts its calls even if a request fails; a process that died cannot
        long_calls = long_out.get(timeout=limit)
        short_calls = short_out.get(timeout=60 + seconds)
    except queue.Empty:
        for p in procs:
            p.terminate()
        raise RuntimeError(f"{server.label}: a client of meanwhile() gave no result") from None
    finally:
        for p in procs:
            p.join()
    during = [c for c in short_calls if any(start <= c[0] < end for start, end, _, _ in long_calls)]
    return Meanwhile(long_calls, short_calls, during)


# ---- worker processes of our server ----

WORKER_MODULE = "jupyter_h5grove.worker"


def worker_processes(pid: int) -> list[psutil.Process]:
    """The running worker processes of our server `pid`: its children whose command line
    contains `jupyter_h5grove.worker` (exited and zombie ones left out)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if any(WORKER_MODULE in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def rss_of(procs: Sequence[psutil.Process]) -> list[int]:
    """RSS (bytes) of each process still there."""
    sizes = []
    for proc in procs:
        try:
            sizes.append(proc.memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return sizes
