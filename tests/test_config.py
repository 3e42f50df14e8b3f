"""Configuration: prefix, traits documented in the README, enabling, start-up log, conflicts."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import h5py
import pytest
from remote_servers import free_port
from traitlets import TraitError

from jupyter_h5grove.app import H5GroveApp

README = Path(__file__).parent.parent / "README.md"
JUPYTER = Path(sys.executable).parent / "jupyter"


def config_traits() -> dict[str, object]:
    """Our configurable traits and their defaults."""
    return {
        name: trait.default() for name, trait in H5GroveApp.class_own_traits(config=True).items()
    }


MACHINE_DEFAULTS = {"worker_processes": ("min(4, cores)", min(4, len(os.sched_getaffinity(0))))}
"""Defaults that depend on the machine: how the README writes them, and their value here."""


def readme_table() -> dict[str, object]:
    """Rows `| `name` | `default` | meaning |` of the README's Configuration table."""
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, re.MULTILINE)
    table = {}
    for name, default in rows:
        written, value = MACHINE_DEFAULTS.get(name, (None, None))
        table[name] = value if default == written else ast.literal_eval(default)
    return table


def test_readme_documents_every_trait() -> None:
    """The README's table lists exactly our traits, with their defaults."""
    assert readme_table() == config_traits()


def test_every_trait_has_help() -> None:
    """Every trait explains itself (shown by --help-all)."""
    for name, trait in H5GroveApp.class_own_traits(config=True).items():
        assert trait.help and len(trait.help) > 20, name


def test_readme_shows_both_config_spellings() -> None:
    """c.H5GroveApp.x = ... and --H5GroveApp.x=... are both shown."""
    text = README.read_text()
    assert 'c.H5GroveApp.url_prefix = "h5web"' in text
    assert "--H5GroveApp.url_prefix=h5web" in text


@pytest.mark.parametrize(
    ("trait", "value"),
    [
        ("url_prefix", "/"),
        ("url_prefix", ""),
        ("worker_threads", 0),
        ("stream_block_bytes", 0),
        ("worker_processes", -1),
        ("request_timeout", -1),
        ("remote_roots", {"file:///data/": {}}),
        ("remote_roots", {"data/": {}}),
        ("remote_roots", {"s3://bucket/../x/": {}}),
        ("remote_roots", {"https://user@example.org/": {}}),
    ],
)
def test_invalid_values_refused(trait: str, value: object) -> None:
    """Values that would break every request are refused at start."""
    with pytest.raises(TraitError):
        H5GroveApp(**{trait: value})


def test_prefix_slashes_are_stripped() -> None:
    """'/h5web/' and 'h5web' are the same prefix."""
    assert H5GroveApp(url_prefix="/h5web/").url_prefix == "h5web"


@pytest.fixture
def sample(write_h5):
    """A small file."""
    return write_h5("a.h5", lambda f: f.create_dataset("x", data=[1, 2]))


class TestPrefixFromConfig:
    """c.H5GroveApp.url_prefix moves every endpoint."""

    @pytest.fixture
    def h5grove_config(self):
        """A nested, non-default prefix."""
        return {"H5GroveApp": {"url_prefix": "hdf5/api"}}

    async def test_endpoints_under_new_prefix(self, api, sample, jp_fetch) -> None:
        """The endpoints answer under the new prefix, not under the default one."""
        assert (await api("data", file="a.h5", path="/x")).body == b"[1,2]"
        assert (await api("")).body == b"ok"
        with pytest.raises(Exception) as info:
            await jp_fetch("h5grove", "meta", params={"file": "a.h5"})
        assert getattr(info.value, "code", None) == 404


class TestPrefixFromArgv:
    """--H5GroveApp.url_prefix=data on the command line."""

    @pytest.fixture
    def jp_argv(self):
        """Command-line configuration."""
        return ["--H5GroveApp.url_prefix=data"]

    async def test_cli_prefix(self, jp_fetch, sample) -> None:
        """The endpoints answer under /data/."""
        response = await jp_fetch("data", "data", params={"file": "a.h5", "path": "/x"})
        assert response.body == b"[1,2]"


class TestConflictWarning:
    """With jupyterlab_h5web's server extension also enabled on the same prefix."""

    @pytest.fixture
    def h5grove_config(self):
        """Both extensions on `h5web`."""
        return {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_h5grove": True, "jupyterlab_h5web": True}
            },
            "H5GroveApp": {"url_prefix": "h5web"},
        }

    async def test_warns_and_still_serves(self, jp_serverapp, api, sample, caplog) -> None:
        """A warning names the clash; our handlers (registered first) answer."""
        pytest.importorskip("jupyterlab_h5web")
        app = jp_serverapp.extension_manager.extension_apps["jupyter_h5grove"]
        (extension,) = app
        clashes = extension.warn_prefix_conflicts()
        assert any("h5web/meta" in pattern for pattern in clashes)
        response = await api("stats", file="a.h5", path="/x")  # jupyterlab_h5web has no stats
        assert response.code == 200


async def test_no_warning_alone(jp_serverapp) -> None:
    """Alone on its prefix, the extension finds no clash."""
    (extension,) = jp_serverapp.extension_manager.extension_apps["jupyter_h5grove"]
    assert extension.warn_prefix_conflicts() == []


def test_extension_list_shows_enabled() -> None:
    """Installing the package enables the extension (shared-data JSON)."""
    out = subprocess.run(
        [str(JUPYTER), "server", "extension", "list"], capture_output=True, text=True, timeout=120
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"jupyter_h5grove\s+enabled", text), text
    assert re.search(r"jupyter_h5grove \S+ OK", text), text


def jupyter_server_command(root: Path, port: int, token: str, *options: str) -> list[str]:
    """The command line of a Jupyter server process serving `root` on loopback."""
    return [
        sys.executable,
        "-m",
        "jupyter_server",
        f"--port={port}",
        "--ip=127.0.0.1",
        "--no-browser",
        "--allow-root",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        *options,
    ]


def wait_for(lines: list[str], text: str, server: subprocess.Popen) -> None:
    """Wait until a server log line contains `text` (the server must stay up)."""
    deadline = time.monotonic() + 60
    while not any(text in line for line in lines):
        assert server.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)


def get(url: str, token: str, attempts: int = 100) -> bytes:
    """GET with the token, retrying while the server is still starting to listen."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return bytes(response.read())
        except urllib.error.URLError as error:
            if not isinstance(error.reason, ConnectionRefusedError):
                raise
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


@pytest.mark.parametrize("prefix", ["data", "h5web"])
def test_real_server_logs_one_line_and_serves(tmp_path: Path, prefix: str) -> None:
    """`jupyter server --H5GroveApp.url_prefix=data`: one start-up line naming root and URL;
    on `h5web` next to an enabled jupyterlab_h5web, a warning about the clash too."""
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = [1, 2, 3]
    port, token = free_port(), "secret-token-for-test"
    command = jupyter_server_command(tmp_path, port, token, f"--H5GroveApp.url_prefix={prefix}")
    server = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert server.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_for(lines, "Use Control-C to stop this server", server)
        url = f"http://127.0.0.1:{port}/{prefix}/data?file=a.h5&path=/x"
        assert get(url, token) == b"[1,2,3]"
        h5web_loaded = any(
            "jupyterlab_h5web | extension was successfully loaded" in x for x in lines
        )
        expect_warning = prefix == "h5web" and h5web_loaded
        if expect_warning:  # logged once every extension has started, after the event loop runs
            wait_for(lines, "another server extension also serves", server)
    finally:
        server.terminate()
        server.wait(30)
        reader.join(30)
    ours = [line for line in lines if "jupyter_h5grove | serving" in line]
    assert len(ours) == 1, lines
    assert f"serving HDF5 files of {tmp_path} at http://127.0.0.1:{port}/{prefix}/" in ours[0]
    warnings = [line for line in lines if "another server extension also serves" in line]
    assert len(warnings) == (1 if expect_warning else 0), lines


class TestJupyterHubBaseUrl:
    """Under a JupyterHub-like base_url (every test already runs under pytest-jupyter's
    unusual `/a%40b/`)."""

    @pytest.fixture
    def jp_base_url(self):
        """A base URL like a single-user server's."""
        return "/user/alice@example.org/"

    async def test_endpoints_under_base_url(self, api, sample, jp_fetch) -> None:
        """Every endpoint answers under {base_url}h5grove/."""
        assert (await api("")).body == b"ok"
        assert (await api("data", file="a.h5", path="/x")).body == b"[1,2]"
        response = await jp_fetch("h5grove", "paths", params={"file": "a.h5"})
        assert response.body == b'["/","/x"]'


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run ends with the README's test command, exactly, and is executable."""
    readme = README.read_text()
    command = readme.split("Tests:\n\n```bash\n", 1)[1].split("\n```", 1)[0]
    assert command.count("\n") == 0 and "pytest" in command
    ci = README.parent / ".ci" / "run"
    assert ci.stat().st_mode & 0o111
    assert ci.read_text().rstrip().splitlines()[-1] == command
