"""Start the two servers under test as subprocesses on loopback, and stop them."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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


def _wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", server.prefix, headers=server.headers)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return
            last_error = f"HTTP {resp.status} on {server.prefix}"
            if resp.status in (302, 404) and _extension_failed(server):
                break
        except OSError as e:
            last_error = str(e)
        time.sleep(0.2)
    log = server.log_path.read_text()[-3000:] if server.log_path else ""
    server.stop()
    raise RuntimeError(f"{server.label} did not start ({last_error}); log tail:\n{log}")


def _extension_failed(server: Server) -> bool:
    """Jupyter started without our extension (it logs the import error and goes on)."""
    text = server.log_path.read_text(errors="replace") if server.log_path else ""
    return "jupyter_h5grove | error" in text or "jupyter_h5grove | extension failed" in text


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Benchmark the checkout, even if another version of the package is installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def start_h5grove(root: Path, workdir: Path, label: str = "h5grove") -> Server:
    """h5grove 4.0.0's tornado handlers in a bare tornado app."""
    port = free_port()
    log_path = workdir / f"{label}.log"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "h5grove_server.py"), "--root", str(root), "--port", str(port)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    server = Server(label, port, "/", "/", proc, log_path=log_path)
    _wait_ready(server)
    return server


def start_ours(
    root: Path,
    workdir: Path,
    base_url: str = "/",
    url_prefix: str = "h5grove",
    extra_args: list[str] | None = None,
) -> Server:
    """Our extension inside a real Jupyter server, with token authentication."""
    port = free_port()
    token = secrets.token_hex(16)
    config_dir = workdir / "jupyter_config"
    config_dir.mkdir(exist_ok=True)
    # Isolated user config: only our extension is explicitly enabled on top of the site config.
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_h5grove": True}}})
    )
    env = _env()
    env["JUPYTER_CONFIG_DIR"] = str(config_dir)
    env["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")
    log_path = workdir / "ours.log"
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
        f"--H5GroveApp.url_prefix={url_prefix}",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        *(extra_args or []),
    ]
    proc = subprocess.Popen(
        args, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=str(workdir)
    )
    server = Server(
        "ours",
        port,
        f"{base_url}{url_prefix}/",
        f"{base_url}api/status",
        proc,
        headers={"Authorization": f"token {token}"},
        log_path=log_path,
    )
    _wait_ready(server, timeout=120)
    return server
