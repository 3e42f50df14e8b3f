"""Drive JupyterLab's file browser and the jupyterlab-h5web viewer with Playwright."""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import Page

UI_TIMEOUT_MS = 30_000
PLOT_TIMEOUT_S = 30.0

# The visible H5Web app: other documents' widgets sit in hidden dock tabs.
ROOT = ".h5web-root:visible"
CANVAS = f"{ROOT} figure canvas"
# H5Web's error boundaries render `<p class="_error_…">` or `<details class="_detailedError_…">`.
ERRORS = f'{ROOT} [class*="_error_"], {ROOT} [class*="_detailedError_"]'

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def open_lab(page: Page, lab_url: str, token: str, workspace: str) -> None:
    """Load JupyterLab in a fresh workspace and wait for its file browser."""
    page.goto(f"{lab_url}lab/workspaces/{workspace}?reset&token={token}", timeout=60_000)
    page.locator(".jp-DirListing-content").wait_for(timeout=60_000)


def open_from_file_browser(page: Page, *names: str) -> None:
    """Double-click each name in turn in the file browser (folders, then the file)."""
    for name in names:
        item = page.locator(".jp-DirListing-item", has=page.get_by_text(name, exact=True))
        item.dblclick(timeout=UI_TIMEOUT_MS)
    page.locator(ROOT).wait_for(timeout=UI_TIMEOUT_MS)


def run_first_cell(page: Page, notebook: str) -> None:
    """Open a notebook from the file browser and run its first cell (Shift+Enter)."""
    item = page.locator(".jp-DirListing-item", has=page.get_by_text(notebook, exact=True))
    item.dblclick(timeout=UI_TIMEOUT_MS)
    # A cell run before the kernel is connected is dropped: wait for the status bar's "Idle".
    kernel = page.locator(".jp-StatusBar-Widget .jp-StatusBar-TextItem", has_text="| Idle")
    kernel.first.wait_for(timeout=2 * UI_TIMEOUT_MS)
    cell = page.locator(".jp-Notebook:visible .jp-CodeCell").first
    cell.locator(".cm-content").click(timeout=UI_TIMEOUT_MS)
    page.keyboard.press("Shift+Enter")
    cell.locator(".jp-InputPrompt", has_text="[1]").wait_for(timeout=UI_TIMEOUT_MS)
    cell.locator(f".jp-OutputArea-output {ROOT}").wait_for(timeout=UI_TIMEOUT_MS)


def select_entity(page: Page, path: str) -> None:
    """Click an entity in H5Web's explorer tree, expanding its parent groups first."""
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts)):
        parent = page.locator(f'{ROOT} [role=treeitem][data-path="/{"/".join(parts[:depth])}"]')
        if parent.get_attribute("aria-expanded", timeout=UI_TIMEOUT_MS) != "true":
            parent.click(timeout=UI_TIMEOUT_MS)
    page.locator(f'{ROOT} [role=treeitem][data-path="{path}"]').click(timeout=UI_TIMEOUT_MS)
    page.locator(f'{ROOT} [role=treeitem][data-path="{path}"][aria-selected="true"]').wait_for(
        timeout=UI_TIMEOUT_MS
    )


def set_mode(page: Page, mode: str) -> None:
    """Switch H5Web between its "Display" and "Inspect" modes."""
    tab = page.locator(f"{ROOT} [role=tablist][aria-label='Viewer mode'] [role=tab]", has_text=mode)
    tab.click(timeout=UI_TIMEOUT_MS)
    page.locator(
        f"{ROOT} [role=tablist][aria-label='Viewer mode'] [role=tab][aria-checked=true]",
        has_text=mode,
    ).wait_for(timeout=UI_TIMEOUT_MS)


def wait_for_text(page: Page, *needles: str) -> str:
    """Wait (bounded) until H5Web's main area shows every needle; return its text."""
    area = page.locator(f"{ROOT} [data-testid=h5w-main-area]")
    deadline = time.monotonic() + PLOT_TIMEOUT_S
    text = ""
    while time.monotonic() < deadline:
        assert_no_h5web_error(page)
        text = area.inner_text(timeout=UI_TIMEOUT_MS)
        if all(needle in text for needle in needles):
            return text
        page.wait_for_timeout(250)
    missing = [needle for needle in needles if needle not in text]
    raise AssertionError(f"H5Web does not show {missing}; it shows:\n{text}")


def selected_vis(page: Page) -> str:
    """The name of the visualization tab H5Web shows (Line, Heatmap, NX Heatmap...)."""
    tab = page.locator(f'{ROOT} [role=tablist][aria-label=Visualization] [aria-selected="true"]')
    return tab.inner_text(timeout=UI_TIMEOUT_MS).strip()


def plot_title(page: Page) -> str:
    """The title H5Web gives the plot (the figure's accessible name)."""
    return page.locator(f"{ROOT} figure").get_attribute("aria-label", timeout=UI_TIMEOUT_MS) or ""


def colorbar_domain(page: Page) -> tuple[float, float]:
    """The (min, max) written at the ends of a heatmap's colour bar (autoscale: the data range)."""

    def bound(which: str) -> float:
        label = page.locator(f"{ROOT} figure [aria-label^='{which}: ']").get_attribute(
            "aria-label", timeout=UI_TIMEOUT_MS
        )
        return float((label or "").split(": ", 1)[1].replace("\u2212", "-"))

    return bound("Min"), bound("Max")


def canvas_pixels(page: Page) -> np.ndarray:
    """RGB pixels of the plot's WebGL canvas (H5Web preserves its drawing buffer), on white.

    Only the canvas: axes and grid are SVG drawn over it, so they cannot fake a plot.
    """
    data_url = page.locator(CANVAS).evaluate("c => c.toDataURL('image/png')", timeout=UI_TIMEOUT_MS)
    image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, image).convert("RGB"))


@dataclass
class Ink:
    """How much a canvas shows: share of pixels unlike the background, and distinct colours."""

    fraction: float
    colours: int

    @classmethod
    def of(cls, pixels: np.ndarray) -> Ink:
        """Measure `pixels` (H x W x 3); the background is the most frequent colour."""
        flat = pixels.reshape(-1, 3).astype(np.int16)
        colours, counts = np.unique(flat, axis=0, return_counts=True)
        background = colours[counts.argmax()]
        differs = np.abs(flat - background).max(axis=1) > 24
        return cls(float(differs.mean()), len(colours))

    def __str__(self) -> str:
        return f"{self.fraction:.1%} inked, {self.colours} colours"


def wait_for_plot(page: Page, min_fraction: float, min_colours: int) -> Ink:
    """Wait (bounded) until the canvas shows a plot: H5Web draws after its fetches resolve."""
    deadline = time.monotonic() + PLOT_TIMEOUT_S
    ink = Ink(0.0, 0)
    while time.monotonic() < deadline:
        assert_no_h5web_error(page)
        if page.locator(CANVAS).count() == 1:
            ink = Ink.of(canvas_pixels(page))
            if ink.fraction >= min_fraction and ink.colours >= min_colours:
                return ink
        page.wait_for_timeout(250)
    raise AssertionError(
        f"H5Web canvas still blank after {PLOT_TIMEOUT_S}s: {ink} "
        f"(want >= {min_fraction:.1%} inked and >= {min_colours} colours)"
    )


def wait_for_change(page: Page, before: np.ndarray) -> None:
    """Wait (bounded) until the canvas differs from `before` (e.g. another slice is drawn)."""
    deadline = time.monotonic() + PLOT_TIMEOUT_S
    while time.monotonic() < deadline:
        assert_no_h5web_error(page)
        now = canvas_pixels(page)
        if now.shape != before.shape or np.abs(now.astype(np.int16) - before).max() > 24:
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"H5Web canvas unchanged after {PLOT_TIMEOUT_S}s")


def assert_no_h5web_error(page: Page) -> None:
    """Fail with H5Web's own message if it shows an error."""
    errors = page.locator(ERRORS)
    if errors.count():
        texts = [t.strip() for t in errors.all_inner_texts()]
        raise AssertionError(f"H5Web shows an error: {texts}")


def move_slider(page: Page, steps: int) -> int:
    """Move the first dimension slider up by `steps` with the keyboard; return its new value."""
    thumb = page.locator(f"{ROOT} [class*=_sliders_] [role=slider]").first
    target = int(thumb.get_attribute("aria-valuenow", timeout=UI_TIMEOUT_MS) or 0) + steps
    thumb.focus(timeout=UI_TIMEOUT_MS)
    for _ in range(steps):
        page.keyboard.press("ArrowUp")
    page.locator(f"{ROOT} [class*=_sliders_] [role=slider][aria-valuenow='{target}']").wait_for(
        timeout=UI_TIMEOUT_MS
    )
    return target


def export(page: Page, label: str) -> bytes:
    """Use H5Web's Export menu (e.g. "Export to NPY"); return the downloaded file's bytes."""
    button = page.locator(f"{ROOT} button:visible", has_text="Export")
    if not button.count():  # the toolbar overflows into the "More controls" popup
        button = page.locator("[role=dialog]:visible button", has_text="Export")
        if not button.count():
            more = page.locator(f"{ROOT} button[aria-label='More controls']")
            more.click(timeout=UI_TIMEOUT_MS)
    button.click(timeout=UI_TIMEOUT_MS)
    with page.expect_download(timeout=UI_TIMEOUT_MS) as info:
        page.locator("[role=menu]:visible button", has_text=label).click(timeout=UI_TIMEOUT_MS)
    download = info.value
    failure = download.failure()
    assert failure is None, f"{label}: download of {download.url} failed: {failure}"
    page.keyboard.press("Escape")  # close the popup menus
    return Path(download.path()).read_bytes()


def screenshot(page: Page, folder: Path, name: str) -> Path:
    """Save a screenshot of the whole JupyterLab window as an artifact; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    return path
