"""End to end: the jupyterlab-h5web viewer, in headless Chromium, on jupyter_h5grove.

JupyterLab runs as a subprocess with our extension at prefix `h5web` and jupyterlab_h5web's own
server extension disabled, so every request the H5Web frontend makes is answered by us.
Screenshots of each view go to test-artifacts/browser/ at the repository root.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

PREFIX = "h5web"
BASE_URL = "/user/e2e/"  # a JupyterHub-like base URL, not "/"
REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# Debugging aid: H5WEB_E2E_REFERENCE=1 runs the same views on jupyterlab_h5web's own server.
REFERENCE = os.environ.get("H5WEB_E2E_REFERENCE") == "1"


def _unavailable(reason: str) -> None:
    """Skip loudly on a developer machine; in CI (env CI set) a missing browser is a failure."""
    message = f"BROWSER TEST NOT RUN: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: the browser test must run)", pytrace=False)
    pytest.skip(message, allow_module_level=True)


if not Path(CHROMIUM).is_file():
    _unavailable(
        f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y chromium` "
        "or set CHROMIUM_PATH"
    )
try:
    import playwright.sync_api as pw
    from browser import datafiles as files
    from browser import h5webui as ui
    from browser.labserver import LabServer, start_lab
except ImportError as error:  # the `test` extra brings playwright, pillow, jupyterlab...
    _unavailable(f"{error}; install the test extra: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab with our extension at /h5web/ and jupyterlab_h5web's server part off."""
    root = tmp_path_factory.mktemp("root")
    files.build_tree(root)
    ours = not REFERENCE
    server = start_lab(
        root,
        tmp_path_factory.mktemp("jupyter"),
        base_url=BASE_URL,
        extensions={"jupyter_h5grove": ours, "jupyterlab_h5web": not ours},
        extra_args=(f"--H5GroveApp.url_prefix={PREFIX}",) if ours else (),
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[pw.BrowserContext]:
    """Headless Debian Chromium with a fresh profile."""
    with tempfile.TemporaryDirectory() as profile, pw.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=ui.CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(
    lab: LabServer, chromium: pw.BrowserContext
) -> Iterator[tuple[pw.Page, ui.PrefixRecorder]]:
    """A JupyterLab tab, with every request to our prefix recorded."""
    page = chromium.new_page()
    page.set_default_timeout(ui.UI_TIMEOUT_MS)
    recorder = ui.PrefixRecorder(f"{lab.url}{PREFIX}/")
    recorder.attach(page)
    ui.open_lab(page, lab.url, lab.token)
    try:
        yield page, recorder
    finally:
        page.close()


def _check_view(
    page: pw.Page,
    recorder: ui.PrefixRecorder,
    name: str,
    *,
    vis: str,
    min_fraction: float,
    min_colours: int,
) -> None:
    """Assert H5Web drew `vis` on a non-blank canvas, error-free, and save a screenshot."""
    ink = ui.wait_for_plot(page, min_fraction, min_colours)
    assert ui.selected_vis(page) == vis
    ui.assert_no_h5web_error(page)
    shot = ui.screenshot(page, ARTIFACTS, name)
    assert recorder.exchanges, "H5Web made no request to our prefix"
    assert not recorder.bad(), f"{name}: requests to /{PREFIX}/ not 2xx: {recorder.bad()}"
    print(f"{name}: {vis}, {ink}, {shot}")


LINE = {"vis": "Line", "min_fraction": 0.002, "min_colours": 2}
HEATMAP = {"min_fraction": 0.5, "min_colours": 32}


def test_prefix_is_served_by_jupyter_h5grove(lab: LabServer) -> None:
    """`stats` exists only in our server: proves jupyterlab_h5web's handlers are not loaded."""
    if REFERENCE:
        pytest.skip("H5WEB_E2E_REFERENCE=1: the prefix is served by jupyterlab_h5web")
    status, body, _ = lab.get(f"{PREFIX}/stats?file={files.NEXUS_FILE}&path=/line")
    assert status == 200, body
    assert {"min", "max", "mean"} <= set(json.loads(body))
    assert "Jupyterlab-h5web extension will serve" not in lab.log_text()


def test_nexus_file_views(page: tuple[pw.Page, ui.PrefixRecorder]) -> None:
    """Open the NeXus file; check its default plot, a line, a heatmap, a stack slice, NXdata."""
    tab, recorder = page
    ui.open_from_file_browser(tab, files.NEXUS_FILE)
    _check_view(tab, recorder, "01-nexus-default-plot", vis="NX Heatmap", **HEATMAP)

    ui.select_entity(tab, "/line")
    _check_view(tab, recorder, "02-line-1d", **LINE)

    ui.select_entity(tab, "/image")
    _check_view(tab, recorder, "03-heatmap-2d", vis="Heatmap", **HEATMAP)

    ui.select_entity(tab, "/stack")
    _check_view(tab, recorder, "04-stack-3d-slice-0", vis="Heatmap", **HEATMAP)
    before = ui.canvas_pixels(tab)
    mark = recorder.mark()
    index = ui.move_slider(tab, 3)
    recorder.wait_for(
        lambda x: x.endpoint == "data" and f"selection={index},:,:" in x.query, mark
    )
    ui.wait_for_change(tab, before)
    _check_view(tab, recorder, f"05-stack-3d-slice-{index}", vis="Heatmap", **HEATMAP)

    ui.select_entity(tab, "/entry/data")
    _check_view(tab, recorder, "06-nxdata-group", vis="NX Heatmap", **HEATMAP)


def test_file_in_folder_with_space(page: tuple[pw.Page, ui.PrefixRecorder]) -> None:
    """Open a file inside a folder whose name has a space, and plot its compressed stack."""
    tab, recorder = page
    ui.open_from_file_browser(tab, files.SPACED_FOLDER, files.SPACED_FILE)
    ui.select_entity(tab, "/stack")
    _check_view(tab, recorder, "07-folder-with-space-stack", vis="Heatmap", **HEATMAP)
    requested = {x.query.split("&")[0] for x in recorder.exchanges}
    assert requested == {f"file={files.SPACED_FOLDER}/{files.SPACED_FILE}"}, requested
