"""Start the servers under test as subprocesses on loopback, and stop them."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def free_port() -> int:
    """Ask the OS for a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server: where to send requests, and how to authenticate."""

    label: str
    port: int
    prefix: str  # URL path prefix of the h5grove API, ending with "/"
    status_path: str  # a trivial endpoint, for responsiveness probes
    proc: subprocess.Popen[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    ready_path: str = ""  # polled until it answers 200 (default: prefix)
    loaded_marker: str = ""  # once ready, the log must contain it (the extension loaded)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """Terminate the server process (and only it)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    """Poll until the server answers (stopping it and raising if it never does)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    path = server.ready_path or server.prefix
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", path, headers=server.headers)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                if not server.loaded_marker or server.loaded_marker in _log_text(server):
                    return
                last_error = f"the log lacks {server.loaded_marker!r} (extension not loaded)"
                break
            last_error = f"HTTP {resp.status} on {path}"
            if resp.status in (302, 404) and _extension_failed(server):
                break
        except OSError as e:
            last_error = str(e)
        time.sleep(0.2)
    log = _log_text(server)[-3000:]
    server.stop()
    raise RuntimeError(f"{server.label} did not start ({last_error}); log tail:\n{log}")


def _log_text(server: Server) -> str:
    return server.log_path.read_text(errors="replace") if server.log_path else ""


def _extension_failed(server: Server) -> bool:
    """Jupyter started without our extension (it logs the import error and goes on)."""
    text = _log_text(server)
    return "jupyter_h5grove | error" in text or "jupyter_h5grove | extension failed" in text


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Benchmark the checkout, even if another version of the package is installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def start_h5grove(root: Path, workdir: Path, label: str = "h5grove") -> Server:
    """h5grove 4.0.0's tornado handlers in a bare tornado app."""
    server = launch_h5grove(root, workdir, label)
    wait_ready(server)
    return server


def launch_h5grove(root: Path, workdir: Path, label: str = "h5grove") -> Server:
    """start_h5grove() without waiting until it answers."""
    port = free_port()
    log_path = workdir / f"{label}.log"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "h5grove_server.py"), "--root", str(root), "--port", str(port)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    return Server(label, port, "/", "/", proc, log_path=log_path)


def start_ours(
    root: Path,
    workdir: Path,
    base_url: str = "/",
    url_prefix: str = "h5grove",
    extra_args: list[str] | None = None,
    config: dict[str, dict[str, Any]] | None = None,
) -> Server:
    """Our extension inside a real Jupyter server, with token authentication (`config`:
    more settings for its config file, e.g. {"H5GroveApp": {"remote_roots": {...}}})."""
    server = launch_ours(root, workdir, base_url, url_prefix, extra_args, config)
    wait_ready(server, timeout=120)
    return server


def launch_ours(
    root: Path,
    workdir: Path,
    base_url: str = "/",
    url_prefix: str = "h5grove",
    extra_args: list[str] | None = None,
    config: dict[str, dict[str, Any]] | None = None,
) -> Server:
    """start_ours() without waiting until it answers."""
    return _launch_jupyter(
        "ours",
        root,
        workdir,
        # Only our extension of the two: the site config of an environment with both
        # installed enables both.
        {"jupyter_h5grove": True, "jupyterlab_h5web": False},
        base_url,
        f"{base_url}{url_prefix}/",
        [f"--H5GroveApp.url_prefix={url_prefix}", *(extra_args or [])],
        config,
    )


def start_h5web(root: Path, workdir: Path, base_url: str = "/") -> Server:
    """jupyterlab-h5web's own h5grove-based extension inside a Jupyter server, token auth."""
    server = launch_h5web(root, workdir, base_url)
    wait_ready(server, timeout=120)
    return server


def launch_h5web(root: Path, workdir: Path, base_url: str = "/") -> Server:
    """start_h5web() without waiting until it answers.

    jupyterlab_h5web serves {base_url}h5web/{attr,data,meta,paths}: no root endpoint (so the
    readiness check polls Jupyter's api/status and then looks for the extension's log line),
    no stats.
    """
    server = _launch_jupyter(
        "h5web",
        root,
        workdir,
        {"jupyter_h5grove": False, "jupyterlab_h5web": True},
        base_url,
        f"{base_url}h5web/",
        [],
    )
    server.ready_path = server.status_path
    server.loaded_marker = "Jupyterlab-h5web extension will serve HDF5 files"
    return server


def _launch_jupyter(
    label: str,
    root: Path,
    workdir: Path,
    extensions: dict[str, bool],
    base_url: str,
    prefix: str,
    extra_args: list[str],
    config: dict[str, dict[str, Any]] | None = None,
) -> Server:
    """A Jupyter server with an isolated user config enabling/disabling `extensions`, and
    the settings of `config` (class -> trait -> value; the command line overrides them)."""
    port = free_port()
    token = secrets.token_hex(16)
    config_dir = workdir / f"{label}_jupyter_config"
    config_dir.mkdir(exist_ok=True)
    # Isolated user config, on top of the site config (which enables what is installed).
    settings = {name: dict(traits) for name, traits in (config or {}).items()}
    settings.setdefault("ServerApp", {})["jpserver_extensions"] = extensions
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(settings))
    env = _env()
    env["JUPYTER_CONFIG_DIR"] = str(config_dir)
    env["JUPYTER_RUNTIME_DIR"] = str(workdir / f"{label}_runtime")
    log_path = workdir / f"{label}.log"
    args = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.base_url={base_url}",
        f"--IdentityProvider.token={token}",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        *extra_args,
    ]
    proc = subprocess.Popen(
        args, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=str(workdir)
    )
    return Server(
        label,
        port,
        prefix,
        f"{base_url}api/status",
        proc,
        headers={"Authorization": f"token {token}"},
        log_path=log_path,
    )


@dataclass(frozen=True)
class Lineup:
    """Which servers to start, from the command line: ours, h5grove and (optionally) h5web."""

    root: Path
    ours: str = "extension"  # or "h5grove": a second h5grove app (A/A check)
    base_url: str = "/"  # of our Jupyter server
    ours_args: tuple[str, ...] = ()
    h5web: bool = True

    def launch(self, workdir: Path, into: dict[str, Server]) -> None:
        """Launch every server into `into` (side -> Server), then wait until all answer.

        Launched together, they start in parallel; whatever was launched is in `into`
        even if this raises, for the caller to stop.
        """
        if self.ours == "extension":
            into["ours"] = launch_ours(
                self.root, workdir, base_url=self.base_url, extra_args=list(self.ours_args)
            )
        else:
            into["ours"] = launch_h5grove(self.root, workdir, label="ours")
        into["base"] = launch_h5grove(self.root, workdir)
        if self.h5web:
            into["h5web"] = launch_h5web(self.root, workdir)
        for server in into.values():
            wait_ready(server, timeout=120)


@contextmanager
def started(lineup: Lineup, workdir: Path) -> Iterator[dict[str, Server]]:
    """Start the lineup's servers (logs and config in a new folder of `workdir`), yield them
    as side -> Server ("ours", "base", and "h5web" unless disabled), stop them on exit."""
    servers: dict[str, Server] = {}
    try:
        lineup.launch(Path(tempfile.mkdtemp(prefix="servers-", dir=workdir)), servers)
        yield servers
    finally:
        for server in servers.values():
            server.stop()  # reaped: its CPU time counts in RUSAGE_CHILDREN, as ours
