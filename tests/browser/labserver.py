"""Start and stop a real `jupyter lab` subprocess for the browser test."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0
# Talk to the loopback server directly, whatever *_proxy variables the CI machine sets.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STOP_TIMEOUT = 15.0


@dataclass
class LabServer:
    """A running JupyterLab: its process, URLs, token and log file."""

    process: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:PORT{base_url}, ends with "/"
    token: str
    log_path: Path

    def log_text(self) -> str:
        """The server's combined stdout/stderr so far."""
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes, dict[str, str]]:
        """GET `path` (relative to the base URL) with the token; never raises on HTTP errors."""
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"token {self.token}"}
        )
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def stop(self) -> None:
        """Terminate the server, then kill it if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _isolated_env(home: Path) -> dict[str, str]:
    """Environment with private Jupyter dirs, and this checkout importable first."""
    env = dict(os.environ)
    for name in ("config", "data", "runtime"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env["JUPYTER_CONFIG_DIR"] = str(home / "config")
    env["JUPYTER_DATA_DIR"] = str(home / "data")
    env["JUPYTER_RUNTIME_DIR"] = str(home / "runtime")
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("JUPYTER_TOKEN", None)
    return env


def _write_config(config_dir: Path, extensions: dict[str, bool], config: dict) -> None:
    """User-level config: which server extensions load, `config`, and a quiet JupyterLab."""
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": extensions}, **config})
    )
    # No toast (news, update check) over the UI.
    settings = config_dir / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
    )


def start_lab(
    root_dir: Path,
    home: Path,
    *,
    base_url: str = "/",
    extensions: dict[str, bool],
    extra_args: tuple[str, ...] = (),
    config: dict | None = None,
) -> LabServer:
    """Start `jupyter lab` on 127.0.0.1 and wait (bounded) until its API answers."""
    env = _isolated_env(home)
    _write_config(Path(env["JUPYTER_CONFIG_DIR"]), extensions, config or {})
    port = free_port()
    token = secrets.token_hex(16)
    log_path = home / "jupyter-lab.log"
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        f"--ServerApp.base_url={base_url}",
        "--LabApp.extension_manager=readonly",
        *extra_args,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # CI containers often run as root
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = LabServer(process, f"http://127.0.0.1:{port}{base_url}", token, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with {process.returncode}:\n{server.log_text()[-4000:]}"
            )
        try:
            status, _, _ = server.get("api/status", timeout=2.0)
            if status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(
        f"jupyter lab did not answer within {START_TIMEOUT}s:\n{server.log_text()[-4000:]}"
    )
