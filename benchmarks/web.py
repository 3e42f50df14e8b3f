"""Issue 13's rows (group `web`): revalidation (304), compression, throttled links, logins.

On the running servers of run.py (ours, h5grove 4.0.0 and, where it answers,
jupyterlab-h5web's), or alone: ``python benchmarks/web.py [--quick] [--profile DIR]``.

- **Revalidation**: a conditional request (If-None-Match with the tag of a preceding 200 of
  the same query and the same Accept-Encoding) and a full answer, side by side, for `meta`
  of a small dataset, `meta` of the 2,000-children group, `data` of the JSON line and a
  `stats` of about a second. h5grove and jupyterlab-h5web answer 304 too (tornado's SHA-1
  ETag of the body): after reading HDF5, encoding and hashing the whole answer.
- **Sizes**: the gzip and identity answers of ours (`meta` of 2,000 children, the JSON line),
  their ratio, the decoded body checked against the identity body byte for byte.
- **Links**: the same two requests through a proxy process per server modelling a link
  (proxy.LinkProxy: 20 Mbit/s and 40 ms RTT, 1 Gbit/s and 1 ms RTT): ours with
  Accept-Encoding gzip (the client decodes the body as it arrives, as a browser does), ours
  without (identity), h5grove and jupyterlab-h5web with the same header as ours' gzip side.
- **Logins**: `meta` small with the token in the Authorization header only (no cookie sent),
  and with the login cookie only (from one request with ``?token=``, as a browser gets it).
- **Profiles** (with ``--profile DIR``, or run.py's ``--profile-ours DIR``): py-spy on our
  server (its worker processes too) during a burst of `meta` small, token only then cookie
  only, and on h5grove's server, summarised by layer (see `LAYERS`).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data as d
from measure import interleaved_calls
from profiling import PySpy
from proxy import LinkProxy
from report import OtherLoad, Row, machine_info, ms, table
from servers import Lineup, Server, started
from workloads import q

# ---- targets (issue 13) ----
NOT_MODIFIED_MS = 1.0  # ours' 304, client round trip on loopback (an upper bound of server time)
REVALIDATED_MS = 100.0  # ours' 304 of a request whose full answer takes about a second
SIZE_RATIO = 0.3  # compressed / identity: expected, printed
SLOW_TARGET = 0.5  # ours (gzip) / h5grove through the slow link
LAN_TARGET = 1.0  # ours (gzip) / ours (identity) through the fast link
LOGIN_TARGET = 1.0  # ours / h5grove, meta small, token only and cookie only

GZIP = {"Accept-Encoding": "gzip, deflate, br, zstd"}  # what browsers send
ONE_SECOND = q("stats", d.MILLION, "/x", selection="0:512,:")
"""A request whose full answer takes about a second on ours (a quarter of million.h5's
1,048,576 chunks; the same file in both profiles)."""


@dataclass(frozen=True)
class Link:
    key: str
    label: str
    rate: float  # bytes / s each way
    rtt: float  # seconds


LINKS = (
    Link("slow", "20 Mbit/s, 40 ms RTT", 20e6 / 8, 0.040),
    Link("lan", "1 Gbit/s, 1 ms RTT", 1e9 / 8, 0.001),
)

SIDE_LABELS = {"ours": "ours", "base": "h5grove", "h5web": "h5web"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the client


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes  # decoded
    wire: int  # body bytes received (before decoding)
    seconds: float  # from sending the request to the decoded body
    members: int = 0  # gzip members of an encoded body (a browser reads one)
    decode_s: float = 0.0  # of `seconds`, decoding the body

    @property
    def coding(self) -> str:
        return self.headers.get("Content-Encoding", "") or "identity"


class Conn:
    """One keep-alive connection to `port` (a server or a proxy), opened now, before any
    timing. Sends only the headers given: no cookie is kept unless `cookies` is given (a
    browser's jar, updated from Set-Cookie). Counts the answers with Set-Cookie and the
    reconnections (a closed connection is reopened within the next timing: counted, logged)."""

    def __init__(
        self, port: int, headers: dict[str, str], cookies: dict[str, str] | None = None
    ) -> None:
        self.port = port
        self.headers = headers
        self.cookies = cookies
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.conn.connect()
        self.reconnects = 0
        self.answers = 0
        self.set_cookies = 0

    def get(self, path: str, extra: dict[str, str] | None = None) -> Reply:
        """GET `path`; a gzip body is decoded as it arrives, within the time."""
        headers = {**self.headers, **(extra or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.conn.sock is None:
            self.reconnects += 1
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers=headers)
        resp = self.conn.getresponse()
        body, wire, members, decode_s = read_body(resp)
        elapsed = time.perf_counter() - t0
        self.answers += 1
        found = resp.headers.get_all("Set-Cookie") or []
        self.set_cookies += bool(found)
        if self.cookies is not None:
            for cookie in found:
                name, _, value = cookie.split(";", 1)[0].partition("=")
                self.cookies[name.strip()] = value
        return Reply(resp.status, resp.headers, body, wire, elapsed, members, decode_s)

    def close(self) -> None:
        self.conn.close()


READ_BYTES = 64 * 1024
"""Bytes read from the socket at a time (a gzip body is decoded piece by piece as it
arrives, as browsers do)."""


def read_body(resp: http.client.HTTPResponse) -> tuple[bytes, int, int, float]:
    """The decoded body, the bytes received, the gzip members (a browser reads one; all are
    decoded here to compare) and the seconds spent decoding, overlapped with receiving."""
    coded = resp.getheader("Content-Encoding", "") == "gzip"
    parts: list[bytes] = []
    wire = members = 0
    decode_s = 0.0
    inflater: Any = None
    while chunk := resp.read(READ_BYTES):
        wire += len(chunk)
        if not coded:
            parts.append(chunk)
            continue
        started = time.perf_counter()
        while chunk:
            if inflater is None:
                inflater = zlib.decompressobj(31)
                members += 1
            parts.append(inflater.decompress(chunk))
            chunk = inflater.unused_data if inflater.eof else b""
            if inflater.eof:
                inflater = None
        decode_s += time.perf_counter() - started
    return b"".join(parts), wire, members, decode_s


def tag_of(reply: Reply) -> str | None:
    return reply.headers.get("ETag")


def token_of(server: Server) -> str:
    return server.headers.get("Authorization", "").removeprefix("token ").strip()


def expect(reply: Reply, status: int, what: str) -> Reply:
    if reply.status != status:
        raise RuntimeError(f"{what}: HTTP {reply.status}, expected {status}: {reply.body[:200]!r}")
    return reply


# --------------------------------------------------------------------------- figures


def med(values: list[float]) -> float:
    return float(np.median(values))


def iqr(num: list[float], den: list[float]) -> str:
    lo, hi = np.percentile(np.asarray(num) / np.asarray(den), [25, 75])
    return f"{lo:.2f}..{hi:.2f}"


def ratio(num: list[float], den: list[float]) -> float:
    return med(num) / med(den)


def size(n: float) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def met(ok: bool) -> str:
    return "yes" if ok else "NO"


# --------------------------------------------------------------------------- the rows


@dataclass
class Rounds:
    """How many rounds (full, quick) and the time budget (full, quick) of a row."""

    full: int
    quick: int
    budget: float
    quick_budget: float

    def of(self, quick: bool) -> tuple[int, float]:
        return (self.quick, self.quick_budget) if quick else (self.full, self.budget)


REVALIDATE = {  # key -> (label, query, rounds)
    "web_304_meta_small": ("meta small, 304", q("meta", d.SMALL, "/small"), Rounds(200, 40, 10, 3)),
    "web_304_meta_children": (
        "meta 2,000 children, 304",
        q("meta", d.CHILDREN, "/parent"),
        Rounds(20, 5, 30, 8),
    ),
    "web_304_line": ("line JSON 1e6 f64, 304", q("data", d.LINE, "/line"), Rounds(15, 5, 30, 8)),
    "web_304_1s": ("stats ~1 s read, 304", ONE_SECOND, Rounds(5, 3, 60, 20)),
}
PAYLOADS = {  # key -> (label, query)
    "meta_children": ("meta 2,000 children", q("meta", d.CHILDREN, "/parent")),
    "line": ("line JSON 1e6 f64", q("data", d.LINE, "/line")),
}
LINK_ROUNDS = {  # (link, payload) -> rounds
    ("slow", "meta_children"): Rounds(10, 5, 30, 10),
    ("slow", "line"): Rounds(5, 3, 240, 90),
    ("lan", "meta_children"): Rounds(20, 8, 30, 8),
    ("lan", "line"): Rounds(15, 5, 30, 10),
}
LOGIN_ROUNDS = Rounds(300, 60, 10, 4)


@dataclass
class Web:
    """The servers (side -> Server) and what the rows found."""

    servers: dict[str, Server]
    quick: bool
    workdir: Path
    rows: list[Row] = field(default_factory=list)
    record: dict = field(default_factory=lambda: {"key": "web"})
    oddities: list[str] = field(default_factory=list)

    @property
    def sides(self) -> list[str]:
        return [side for side in ("ours", "base", "h5web") if side in self.servers]

    def answers(self, side: str, query: str) -> bool:
        """Whether a side answers the query (jupyterlab-h5web has no stats)."""
        return side != "h5web" or not query.startswith("stats")

    def odd(self, text: str) -> None:
        log(f"  ! web: {text}")
        if text not in self.oddities:
            self.oddities.append(text)

    @contextlib.contextmanager
    def conns(self, specs: dict[str, tuple[int, dict[str, str]]]) -> Iterator[dict[str, Conn]]:
        """Connections name -> Conn(port, headers), opened before any timing, closed after;
        their reconnections logged."""
        opened: dict[str, Conn] = {}
        try:
            for name, (port, headers) in specs.items():
                opened[name] = Conn(port, headers)
            yield opened
        finally:
            for name, conn in opened.items():
                if conn.reconnects:
                    self.odd(f"{name}: {conn.reconnects} reconnection(s) within timed requests")
                conn.close()

    # ---- revalidation

    def revalidation(self) -> None:
        records = {}
        for key, (label, query, rounds) in REVALIDATE.items():
            records[key] = self._revalidate(key, label, query, rounds)
        self.record["revalidation"] = records

    def _revalidate(self, key: str, label: str, query: str, rounds: Rounds) -> dict:
        """Per round and side, in a random order: a full answer, and two conditional requests
        back to back: the first comes after the requests to the other servers (the server
        idled meanwhile, as between a browser's revalidations), the second right after it
        (warm: closest to the server's own time)."""
        sides = [s for s in self.sides if self.answers(s, query)]
        specs = {
            side: (self.servers[side].port, {**self.servers[side].headers, **GZIP})
            for side in sides
        }
        idle: dict[str, list[float]] = defaultdict(list)
        with self.conns(specs) as conns:
            tags: dict[str, str | None] = {}
            first: dict[str, Reply] = {}
            for side in sides:  # the 200 the tags come from (same query, same Accept-Encoding)
                path = self.servers[side].prefix + query
                first[side] = expect(conns[side].get(path), 200, f"{side} {query}")
                tags[side] = tag_of(first[side])
                if tags[side] is None:
                    self.odd(f"{SIDE_LABELS[side]}: no ETag on the 200 of {query}")
            same = all(first[s].body == first["base"].body for s in sides)
            statuses: dict[str, Counter[int]] = defaultdict(Counter)
            calls: dict[str, Callable[[int], float]] = {}
            for side in sides:
                path = self.servers[side].prefix + query

                def full(i: int, side: str = side, path: str = path) -> float:
                    reply = conns[side].get(path)
                    statuses[f"{side}_200"][reply.status] += 1
                    return reply.seconds

                calls[f"{side}_200"] = full
                tag = tags[side]
                if tag is None:
                    continue

                def conditional(
                    i: int, side: str = side, path: str = path, tag: str = tag
                ) -> float:
                    seconds = []
                    for _ in range(2):
                        reply = conns[side].get(path, {"If-None-Match": tag})
                        statuses[f"{side}_304"][reply.status] += 1
                        if reply.body:
                            statuses[f"{side}_304_body_bytes"][len(reply.body)] += 1
                        seconds.append(reply.seconds)
                    idle[f"{side}_304"].append(seconds[0])
                    return seconds[1]

                calls[f"{side}_304"] = conditional
            for name in calls:  # warm-up, unrecorded
                calls[name](0)
            idle.clear()
            n, budget = rounds.of(self.quick)
            res = interleaved_calls(calls, n, budget, min_rounds=min(3, n))
        not_304 = {
            name: dict(c)
            for name, c in statuses.items()
            if name.endswith("_304") and set(c) != {304}
        }
        for name, found in not_304.items():
            self.odd(f"{name} of {query}: statuses {found} (not all 304)")
        log(
            f"  {label}: {len(res['ours_200'])} rounds; "
            + ", ".join(f"{name} {ms(med(v))}" for name, v in res.items())
            + "; after idle: "
            + ", ".join(f"{name} {ms(med(v))}" for name, v in idle.items())
        )
        limit = REVALIDATED_MS if key == "web_304_1s" else NOT_MODIFIED_MS
        warm = med(res["ours_304"])
        cell = "304s" if not not_304 else "not 304!"
        if not same:
            cell += ", 200 DIFF"
            self.odd(f"{query}: the 200 bodies differ between servers")
        self.rows.append(
            self._row(
                f"{label} (warm)",
                res,
                "ours_304",
                "base_304",
                "h5web_304",
                f"ours < {limit:g} ms",
                met(warm * 1e3 < limit and not not_304),
                cell,
                key,
                digits=3,
            )
        )
        self.rows.append(
            self._row(
                "  304 after idle",
                idle,
                "ours_304",
                "base_304",
                "h5web_304",
                "info",
                "",
                "",
                f"{key}_idle",
                digits=3,
            )
        )
        self.rows.append(
            self._row(
                "  full answers (200)",
                res,
                "ours_200",
                "base_200",
                "h5web_200",
                "info",
                "",
                f"ours 304/200 {ratio(res['ours_304'], res['ours_200']):.3f}",
                f"{key}_200",
            )
        )
        return {
            "query": query,
            "label": label,
            "tags": tags,
            "seconds_warm_304_and_200": res,
            "seconds_304_after_idle": dict(idle),
            "statuses": {name: dict(c) for name, c in statuses.items()},
            "same_200": same,
            "target_ms": limit,
        }

    @staticmethod
    def _row(
        label: str,
        res: dict[str, list[float]],
        ours: str,
        base: str,
        h5web: str,
        target: str,
        ok: str,
        same: str,
        key: str,
        digits: int = 2,
    ) -> Row:
        """A row of medians: ours, h5grove ("no ETag" when absent) and h5web if present."""
        has_base, has_web = base in res, h5web in res
        return Row(
            label,
            ms(med(res[ours])),
            ms(med(res[base])) if has_base else "no ETag",
            f"{ratio(res[ours], res[base]):.{digits}f}" if has_base else "",
            iqr(res[ours], res[base]) if has_base else "",
            target,
            ok,
            same,
            ms(med(res[h5web])) if has_web else "",
            f"{ratio(res[ours], res[h5web]):.{digits}f}" if has_web else "",
            key=key,
        )

    # ---- sizes

    def sizes(self) -> None:
        records = {}
        ours, base, h5web = (self.servers.get(s) for s in ("ours", "base", "h5web"))
        assert ours is not None and base is not None
        for key, (label, query) in PAYLOADS.items():
            with contextlib.ExitStack() as stack:
                plain = Conn(ours.port, dict(ours.headers))
                gz = Conn(ours.port, {**ours.headers, **GZIP})
                ref = Conn(base.port, dict(base.headers))
                for conn in (plain, gz, ref):
                    stack.callback(conn.close)
                identity = expect(plain.get(ours.prefix + query), 200, f"ours {query}")
                coded = expect(gz.get(ours.prefix + query), 200, f"ours gzip {query}")
                reference = expect(ref.get(base.prefix + query), 200, f"h5grove {query}")
                web = None
                if h5web is not None:
                    hw = Conn(h5web.port, {**h5web.headers, **GZIP})
                    stack.callback(hw.close)
                    web = expect(hw.get(h5web.prefix + query), 200, f"h5web {query}")
            if coded.coding != "gzip":
                self.odd(f"ours: {query} with Accept-Encoding gzip answered {coded.coding}")
            if identity.coding != "identity":
                self.odd(f"ours: {query} without Accept-Encoding answered {identity.coding}")
            if coded.members > 1:
                self.odd(f"ours: {query}: {coded.members} gzip members")
            for name, reply in (("identity", identity), ("gzip", coded)):
                if reply.headers.get("Vary", "") != "Accept-Encoding":
                    self.odd(f"ours: {query} ({name}): Vary {reply.headers.get('Vary')!r}")
            same_decoded = coded.body == identity.body
            same_ref = identity.body == reference.body
            cell = "bytes" if same_decoded and same_ref else "DIFF"
            if not same_decoded:
                self.odd(f"ours: {query}: the decoded gzip body differs from the identity body")
            if not same_ref:
                self.odd(f"ours: {query}: the identity body differs from h5grove's")
            r = coded.wire / identity.wire
            log(
                f"  size {label}: gzip {coded.wire:,} B / identity {identity.wire:,} B = {r:.3f}"
                f" ({coded.members} member); h5grove {reference.wire:,} B"
                + (
                    f", h5web with Accept-Encoding gzip: {web.wire:,} B, {web.coding}"
                    if web
                    else ""
                )
            )
            self.rows.append(
                Row(
                    f"{label}, gzip / identity size",
                    size(coded.wire),
                    size(identity.wire),
                    f"{r:.3f}",
                    "",
                    f"< {SIZE_RATIO:g} (expected)",
                    met(r < SIZE_RATIO),
                    cell,
                    f"{size(web.wire)} {web.coding}" if web else "",
                    "",
                    key=f"web_size_{key}",
                )
            )
            records[key] = {
                "query": query,
                "gzip_bytes": coded.wire,
                "identity_bytes": identity.wire,
                "ratio": r,
                "gzip_members": coded.members,
                "decoded_equals_identity": same_decoded,
                "identity_equals_h5grove": same_ref,
                "h5grove_bytes": reference.wire,
                "h5web_bytes": web.wire if web else None,
                "h5web_coding": web.coding if web else None,
            }
        self.record["sizes"] = records

    # ---- links

    def links(self) -> None:
        records = {}
        for link in LINKS:
            with contextlib.ExitStack() as stack:
                proxies = {
                    side: stack.enter_context(
                        LinkProxy(
                            self.servers[side].port,
                            link.rate,
                            link.rtt,
                            self.workdir / f"link-{link.key}-{side}.log",
                        )
                    )
                    for side in self.sides
                }
                for key, (label, query) in PAYLOADS.items():
                    records[f"{link.key}_{key}"] = self._through(link, proxies, key, label, query)
        self.record["links"] = records

    def _through(
        self, link: Link, proxies: dict[str, LinkProxy], key: str, label: str, query: str
    ) -> dict:
        """One payload through one link: ours gzip, ours identity, h5grove, h5web."""
        sides = {"ours_gzip": ("ours", GZIP), "ours_identity": ("ours", {})}
        sides |= {side: (side, GZIP) for side in self.sides if side != "ours"}
        specs = {
            name: (proxies[side].port, {**self.servers[side].headers, **extra})
            for name, (side, extra) in sides.items()
        }
        wire: dict[str, int] = {}
        bodies: dict[str, bytes] = {}
        decode: dict[str, list[float]] = defaultdict(list)
        with self.conns(specs) as conns:
            calls: dict[str, Callable[[int], float]] = {}
            for name, (side, _) in sides.items():
                path = self.servers[side].prefix + query
                proxies[side].reset()
                reply = expect(conns[name].get(path), 200, f"{name} via {link.label} {query}")
                wire[name] = proxies[side].counts()["down"]  # headers included
                bodies[name] = reply.body
                if name == "ours_gzip" and reply.coding != "gzip":
                    self.odd(f"ours via {link.label}: {query} answered {reply.coding}")

                def call(i: int, name: str = name, path: str = path) -> float:
                    reply = conns[name].get(path)
                    if reply.status != 200:
                        raise RuntimeError(f"{name}: HTTP {reply.status} for {path}")
                    decode[name].append(reply.decode_s)
                    return reply.seconds

                calls[name] = call
            same = all(body == bodies["base"] for body in bodies.values())
            n, budget = LINK_ROUNDS[(link.key, key)].of(self.quick)
            res = interleaved_calls(calls, n, budget, min_rounds=min(3, n))
        log(
            f"  {label} via {link.label}: {len(res['ours_gzip'])} rounds; "
            + ", ".join(f"{name} {ms(med(v))} ({size(wire[name])} down)" for name, v in res.items())
            + f"; the client's gzip decoding: {ms(med(decode['ours_gzip']))} (median)"
        )
        gz, ident, base = res["ours_gzip"], res["ours_identity"], res["base"]
        web = res.get("h5web")
        h5web_cells = (ms(med(web)), f"{ratio(gz, web):.2f}") if web else ("", "")
        cell = "bytes" if same else "DIFF"
        if link.key == "slow":
            self.rows.append(
                Row(
                    f"{label}, {link.label}",
                    ms(med(gz)),
                    ms(med(base)),
                    f"{ratio(gz, base):.2f}",
                    iqr(gz, base),
                    f"≤ {SLOW_TARGET:g}",
                    met(ratio(gz, base) <= SLOW_TARGET),
                    cell,
                    *h5web_cells,
                    key=f"web_{link.key}_{key}",
                )
            )
            self.rows.append(
                Row(
                    "  ours gzip / ours identity",
                    ms(med(gz)),
                    f"ident. {ms(med(ident))}",
                    f"{ratio(gz, ident):.2f}",
                    iqr(gz, ident),
                    "info",
                    key=f"web_{link.key}_{key}_identity",
                )
            )
        else:
            self.rows.append(
                Row(
                    f"{label}, {link.label}: gzip / identity",
                    ms(med(gz)),
                    f"ident. {ms(med(ident))}",
                    f"{ratio(gz, ident):.2f}",
                    iqr(gz, ident),
                    f"≤ {LAN_TARGET:g}",
                    met(ratio(gz, ident) <= LAN_TARGET),
                    cell,
                    *h5web_cells,
                    key=f"web_{link.key}_{key}",
                )
            )
            self.rows.append(
                Row(
                    "  ours gzip vs h5grove",
                    ms(med(gz)),
                    ms(med(base)),
                    f"{ratio(gz, base):.2f}",
                    iqr(gz, base),
                    "info",
                    key=f"web_{link.key}_{key}_h5grove",
                )
            )
        return {
            "query": query,
            "link": {"rate_bytes_s": link.rate, "rtt_s": link.rtt, "label": link.label},
            "seconds": res,
            "bytes_down": wire,
            "decode_s": dict(decode),
            "same": same,
        }

    # ---- logins

    def logins(self) -> None:
        query = q("meta", d.SMALL, "/small")
        conns: dict[str, Conn] = {}
        try:
            for side in ("ours", "h5web"):
                server = self.servers.get(side)
                if server is None:
                    continue
                conns[f"{side}_token"] = Conn(server.port, dict(server.headers))
                jar = self.login_cookie(server)
                conns[f"{side}_cookie"] = Conn(server.port, {}, jar)
            conns["base"] = Conn(self.servers["base"].port, {})
            calls: dict[str, Callable[[int], float]] = {}
            for name, conn in conns.items():
                path = self.servers[name.split("_")[0]].prefix + query

                def call(i: int, conn: Conn = conn, path: str = path, name: str = name) -> float:
                    reply = conn.get(path)
                    if reply.status != 200:
                        raise RuntimeError(f"{name}: HTTP {reply.status}: {reply.body[:200]!r}")
                    return reply.seconds

                for _ in range(2):  # warm-up, unrecorded
                    call(0)
                calls[name] = call
            before = {name: (c.answers, c.set_cookies) for name, c in conns.items()}
            n, budget = LOGIN_ROUNDS.of(self.quick)
            res = interleaved_calls(calls, n, budget, min_rounds=min(5, n))
            cookies = {
                name: (c.set_cookies - before[name][1], c.answers - before[name][0])
                for name, c in conns.items()
            }
        finally:
            for conn in conns.values():
                conn.close()
        log(
            f"  meta small, logins: {len(res['base'])} rounds; "
            + ", ".join(f"{name} {ms(med(v))}" for name, v in res.items())
            + "; answers with Set-Cookie: "
            + ", ".join(f"{name} {k}/{n}" for name, (k, n) in cookies.items())
        )
        if cookies["ours_token"][0] > 1 + cookies["ours_token"][1] // 100:
            self.odd(f"ours sends Set-Cookie on {cookies['ours_token'][0]} token-only answers")
        if cookies["ours_cookie"][0]:
            self.odd(f"ours sends Set-Cookie on {cookies['ours_cookie'][0]} cookie-only answers")
        for mode in ("token", "cookie"):
            mine, base = res[f"ours_{mode}"], res["base"]
            web = res.get(f"h5web_{mode}")
            k, total = cookies[f"ours_{mode}"]
            self.rows.append(
                Row(
                    f"meta small, {mode} only",
                    ms(med(mine)),
                    ms(med(base)),
                    f"{ratio(mine, base):.2f}",
                    iqr(mine, base),
                    f"≤ {LOGIN_TARGET:g}",
                    met(ratio(mine, base) <= LOGIN_TARGET),
                    f"Set-Cookie {k}/{total}",
                    ms(med(web)) if web else "",
                    f"{ratio(mine, web):.2f}" if web else "",
                    key=f"web_{mode}",
                )
            )
        self.record["logins"] = {
            "query": query,
            "seconds": res,
            "set_cookie_answers": cookies,
        }

    def login_cookie(self, server: Server) -> dict[str, str]:
        """The cookies a browser gets from one request with ``?token=`` (Jupyter's status
        endpoint), checked: the API answers a request with these cookies only."""
        conn = Conn(server.port, {}, {})
        try:
            login = conn.get(f"{server.status_path}?token={quote(token_of(server))}")
            expect(login, 200, f"{server.label} login")
            if not conn.cookies:
                raise RuntimeError(f"{server.label}: no cookie from a request with ?token=")
            expect(conn.get(server.prefix + q("meta", d.SMALL, "/small")), 200, "cookie login")
            return dict(conn.cookies)
        finally:
            conn.close()

    # ---- profiles

    def profiles(self, out: Path, seconds: float) -> None:
        """py-spy during a burst of meta small: ours token only, ours cookie only, h5grove."""
        out.mkdir(parents=True, exist_ok=True)
        query = q("meta", d.SMALL, "/small")
        ours, base = self.servers["ours"], self.servers["base"]
        bursts = {
            "ours_token": (ours, Conn(ours.port, dict(ours.headers))),
            "ours_cookie": (ours, Conn(ours.port, {}, self.login_cookie(ours))),
            "h5grove": (base, Conn(base.port, {})),
        }
        summaries = {}
        for name, (server, conn) in bursts.items():
            try:
                for _ in range(20):
                    expect(conn.get(server.prefix + query), 200, name)
                raw = out / f"web_{name}.txt"
                # blocking: whole stacks (the process pauses at each sample: its timings
                # are off, not its shares)
                spy = PySpy(
                    server.pid, raw, rate=500, subprocesses=server is ours, nonblocking=False
                )
                time.sleep(1.0)  # py-spy attaches
                count, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds and count < 100_000:
                    conn.get(server.prefix + query)
                    count += 1
                elapsed = time.perf_counter() - t0
                spy.stop()
            finally:
                conn.close()
            text = summarise_layers(raw)
            header = (
                f"{name}: {count} sequential requests of {query} in {elapsed:.1f} s "
                f"({1e3 * elapsed / max(count, 1):.2f} ms each, under py-spy)\n"
            )
            (out / f"web_{name}.layers.txt").write_text(header + text)
            summaries[name] = header + text
            log(f"  profile {name}: {count} requests in {elapsed:.1f} s -> {raw}")
        self.record["profiles"] = {name: str(out / f"web_{name}.layers.txt") for name in bursts}
        (out / "web_profiles.txt").write_text("\n\n".join(summaries.values()))


# --------------------------------------------------------------------------- layers

_OURS = r"jupyter_h5grove/"
_HDF5_WORK = _OURS + (
    r"(service|content|dataset|typeinfo|guard|files|entities|encoders|"
    r"compression|paths|selection|stats|linkmemo|models|utils|errors)\.py"
)
LAYERS: list[tuple[str, str, str]] = [
    # (layer, file pattern, function pattern): a sample belongs to the layer of its innermost
    # frame that matches (the first rule that matches that frame)
    ("logging", r"(^|/)logging/|jupyter_server/log\.py|prometheus", r""),
    ("our _log (skips the line)", _OURS + r"handlers\.py", r"^_log$"),
    ("Jupyter: identity (get_user)", r"jupyter_server/auth/identity\.py", r""),
    ("Jupyter: identity (get_user)", r"jupyter_server/base/handlers\.py", r"current_user|login"),
    ("our identity memo", _OURS + r"identity\.py", r""),
    ("Jupyter: authorizer", r"jupyter_server/auth/(authorizer|decorator|utils)\.py", r""),
    ("Jupyter: XSRF/origin/host checks", r"", r"xsrf|check_origin|check_host|check_referer"),
    ("Jupyter: update_api_activity", r"", r"update_api_activity"),
    ("Jupyter: prepare/finish, other", r"jupyter_server/", r""),
    ("IPC: pickle + socket (ipc.py)", _OURS + r"ipc\.py", r""),
    ("our pool/runner (hop to a worker)", _OURS + r"(pool|runners)\.py", r""),
    ("worker: its loop, reply (worker.py)", _OURS + r"worker\.py", r""),
    ("ETag (tags.py)", _OURS + r"tags\.py", r""),
    ("h5py (HDF5 calls)", r"(^|/)h5py/", r""),
    ("our HDF5 work: entity, metadata, encode", _HDF5_WORK, r""),
    (
        "our handler: query parsing",
        _OURS + r"handlers\.py",
        r"^(query|argument|accepts_gzip|entity_tags|parse_bool_arg)$",
    ),
    ("our handler: writing", _OURS + r"handlers\.py", r"^(write_whole|write_body|set_headers)$"),
    ("our handler: other", _OURS, r""),
    ("h5grove: content, metadata, encode", r"(^|/)h5grove/", r""),
    (
        "tornado: finish/write/flush (web.py)",
        r"tornado/web\.py",
        r"^(finish|flush|write|set_etag_header|compute_etag|check_etag_header|set_header|"
        r"clear|_convert_header_value|set_default_headers|_log|on_finish|log_exception)$",
    ),
    (
        "tornado: HTTP write",
        r"tornado/(http1connection|iostream)\.py",
        r"write|finish|_format|_handle_write|_add_io_state",
    ),
    ("tornado: HTTP parse/read", r"tornado/(http1connection|httputil|httpserver|iostream)", r""),
    ("tornado: routing/dispatch (web.py)", r"tornado/(routing|web)\.py", r""),
    ("asyncio event loop", r"(^|/)asyncio/|selectors\.py|tornado/platform", r""),
]
_LAYERS = [(name, re.compile(f), re.compile(fn)) for name, f, fn in LAYERS]
_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>.*?)(:\d+)?\)$")

Frame = tuple[str, str]  # function, file


def layer_of(frames: list[Frame]) -> str:
    """The layer of a stack (root first) of (function, file) frames."""
    for fn, file in reversed(frames):
        for name, file_re, fn_re in _LAYERS:
            if file_re.search(file) and fn_re.search(fn):
                return name
    return "other"


def waiting(frames: list[Frame]) -> bool:
    """A thread waiting, not working: the event loop's poll, a worker waiting for its next
    job (its receive called by its serving loop: includes unpickling the job), its watchdog
    thread's sleep, a queue or a lock. py-spy's idle filter misses short waits, and in
    blocking mode a thread in a C call (time.sleep) shows as its Python caller."""
    fn, file = frames[-1]
    if fn in ("EpollSelector.select", "select") and file.endswith("selectors.py"):
        return True
    if fn == "die_with_parent.<locals>.watch":
        return True
    if fn.startswith(("_queue_SimpleQueue_get", "Condition.wait", "Event.wait")):
        return True
    return (
        len(frames) >= 2
        and fn == "Channel.receive"
        and frames[-2][0] in ("Worker._serve", "Worker.serve")
    )


def summarise_layers(raw: Path, top: int = 12) -> str:
    """Busy samples of py-spy's raw output by layer and by function (self and total), the
    server's own process apart from its children (our worker processes; py-spy's
    --subprocesses nests their stacks under a second "process" frame)."""
    if not raw.exists():
        return "no samples (py-spy wrote nothing)"
    acc: dict[str, dict[str, Counter[str]]] = defaultdict(
        lambda: {"layer": Counter(), "self": Counter(), "total": Counter(), "n": Counter()}
    )
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        nested = sum(part.startswith("process ") for part in parts)
        proc = "server process" if nested <= 1 else "worker processes"
        frames: list[Frame] = []
        for part in parts:
            if part.startswith(("process ", "thread ")):
                continue
            m = _FRAME.match(part)
            frames.append((m["fn"], m["file"]) if m else (part, ""))
        if not frames:
            continue
        got = acc[proc]
        if waiting(frames):
            got["n"]["waiting"] += count
            continue
        got["n"]["busy"] += count
        got["layer"][layer_of(frames)] += count
        got["self"][_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            got["total"][frame] += count
    lines = []
    for proc in sorted(acc):
        got = acc[proc]
        n = got["n"]["busy"]
        if not n:
            continue
        lines += [
            f"== {proc}: {n} busy samples ({got['n']['waiting']} waiting, left out)",
            "",
            "   %  layer (of the innermost frame that matches a rule)",
        ]
        lines += [f"{100 * c / n:5.1f}  {name}" for name, c in got["layer"].most_common()]
        lines += ["", "self %  function"]
        lines += [f"{100 * c / n:6.1f}  {f}" for f, c in got["self"].most_common(top)]
        lines += ["", "total %  function (below the frames common to every sample)"]
        below = [(f, c) for f, c in got["total"].most_common() if c < 0.995 * n]
        lines += [f"{100 * c / n:6.1f}  {f}" for f, c in below[: 2 * top]]
        lines.append("")
    return "\n".join(lines)


def _short(frame: Frame) -> str:
    fn, file = frame
    return f"{fn} ({'/'.join(file.split('/')[-2:])})" if file else fn


# --------------------------------------------------------------------------- entry points


def run_web(
    servers: dict[str, Server], quick: bool, workdir: Path, profile_dir: Path | None = None
) -> tuple[list[Row], dict]:
    """Every row of the group on running servers (ours, base and maybe h5web)."""
    web = Web(servers, quick, Path(tempfile.mkdtemp(prefix="web-", dir=workdir)))
    for step in (web.revalidation, web.sizes, web.links, web.logins):
        log(f"web: {step.__name__} ...")
        step()
    if profile_dir is not None:
        log("web: profiles ...")
        web.profiles(profile_dir, 4.0 if quick else 8.0)
    web.record["oddities"] = web.oddities
    web.record["one_second_query"] = ONE_SECOND
    return web.rows, web.record


NOTES = """web rows (issue 13): 304 = a conditional request (If-None-Match with the tag of a 200 of
the same query and Accept-Encoding), its client round trip on a keep-alive loopback connection: an
upper bound of the server's time; h5grove and h5web answer 304 with tornado's SHA-1 ETag after
reading HDF5 and hashing the body; ratio there = ours' 304 / theirs; 'full answers' = the 200s
(ours with Accept-Encoding gzip, decoded by the client). Sizes: ours' body bytes with and
without Accept-Encoding gzip (same? = decoded body equal to the identity one and to h5grove's);
h5web column: what it sends for Accept-Encoding gzip. Links: a proxy process per server models
the link (rate each way, RTT/2 each way; no loss, no slow start); connections opened before
timing; ours gzip decoded by the client within the time; 'ident.' = ours without
Accept-Encoding. Logins: token = Authorization header only, no cookie sent; cookie = the login
cookie only (from one ?token= request); h5grove has no authentication; same? = answers of ours
with Set-Cookie / answers."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="reduced data, few rounds")
    parser.add_argument("--data-dir", type=Path, default=d.default_cache_dir())
    parser.add_argument("--no-h5web", action="store_true", help="without jupyterlab-h5web's server")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy bursts into DIR")
    parser.add_argument("--json", type=Path, help="also write raw results to this file")
    args = parser.parse_args(argv)
    profile = d.PROFILES["quick" if args.quick else "full"]
    root = d.ensure_data(
        args.data_dir, profile, log, names=(d.SMALL, d.CHILDREN, d.LINE, d.MILLION)
    )
    for name in (d.SMALL, d.CHILDREN, d.LINE, d.MILLION):
        with open(root / name, "rb") as fh:
            while fh.read(1 << 24):
                pass
    t0 = time.monotonic()
    other = OtherLoad()
    lineup = Lineup(root, h5web=not args.no_h5web)
    with (
        tempfile.TemporaryDirectory(prefix="h5grove-web-") as tmp,
        started(lineup, Path(tmp)) as servers,
    ):
        rows, record = run_web(servers, args.quick, Path(tmp), args.profile)
    info = machine_info()
    info["machine sharing"] = other.summary()
    print(
        f"\njupyter_h5grove, issue 13's rows — profile '{profile.name}', "
        f"{time.monotonic() - t0:.0f} s"
    )
    for k, v in info.items():
        print(f"  {k}: {v}")
    print()
    print(table(rows, h5web=not args.no_h5web))
    print()
    print(NOTES)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": [record]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
