"""Drive JupyterLab's file browser and the jupyterlab-h5web viewer with Playwright."""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_plus, urlsplit

import numpy as np
from PIL import Image
from playwright.sync_api import Page, Response

UI_TIMEOUT_MS = 30_000
PLOT_TIMEOUT_S = 30.0

# The visible H5Web app: other documents' widgets are in hidden dock tabs.
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


@dataclass
class Exchange:
    """One answered request to the HDF5 prefix."""

    status: int
    url: str

    @property
    def endpoint(self) -> str:
        """The last path segment: meta, attr, data, paths, stats..."""
        return urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def query(self) -> str:
        """The decoded query string, for readable messages."""
        return unquote_plus(urlsplit(self.url).query)


@dataclass
class PrefixRecorder:
    """Records every response (and network failure) of requests under one URL prefix."""

    prefix: str
    exchanges: list[Exchange] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        """Listen to `page`'s responses and failed requests."""
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_failed)

    def _on_response(self, response: Response) -> None:
        if response.url.startswith(self.prefix):
            self.exchanges.append(Exchange(response.status, response.url))

    def _on_failed(self, request: object) -> None:
        url = getattr(request, "url", "")
        if url.startswith(self.prefix):
            self.failures.append(f"{url}: {getattr(request, 'failure', None)}")

    def mark(self) -> int:
        """A position in the record, to look at what happened after it."""
        return len(self.exchanges)

    def since(self, mark: int) -> list[Exchange]:
        """Responses recorded after `mark`."""
        return self.exchanges[mark:]

    def bad(self) -> list[str]:
        """Every non-2xx answer and network failure so far, readable."""
        answers = [
            f"{x.status} {x.endpoint}?{x.query}" for x in self.exchanges if not 200 <= x.status < 300
        ]
        return answers + [f"network failure {f}" for f in self.failures]

    def wait_for(self, predicate: object, mark: int, timeout_s: float = PLOT_TIMEOUT_S) -> Exchange:
        """Wait until a response after `mark` satisfies `predicate(exchange)`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for exchange in self.since(mark):
                if predicate(exchange):  # type: ignore[operator]
                    return exchange
            time.sleep(0.1)
        seen = "\n".join(f"  {x.status} {x.endpoint}?{x.query}" for x in self.since(mark))
        raise AssertionError(f"expected request not seen within {timeout_s}s; seen:\n{seen}")


def open_lab(page: Page, lab_url: str, token: str) -> None:
    """Load JupyterLab with the token and wait for its file browser."""
    page.goto(f"{lab_url}lab?token={token}", timeout=60_000)
    page.locator(".jp-DirListing-content").wait_for(timeout=60_000)


def open_from_file_browser(page: Page, *names: str) -> None:
    """Double-click each name in turn in the file browser (folders, then the file)."""
    for name in names:
        item = page.locator(".jp-DirListing-item", has=page.get_by_text(name, exact=True))
        item.dblclick(timeout=UI_TIMEOUT_MS)
    page.locator(ROOT).wait_for(timeout=UI_TIMEOUT_MS)


def select_entity(page: Page, path: str) -> None:
    """Click an entity in H5Web's explorer tree, expanding its parent groups first."""
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts)):
        parent = page.locator(f'{ROOT} [role=treeitem][data-path="/{"/".join(parts[:depth])}"]')
        if parent.get_attribute("aria-expanded", timeout=UI_TIMEOUT_MS) != "true":
            parent.click(timeout=UI_TIMEOUT_MS)
    item = page.locator(f'{ROOT} [role=treeitem][data-path="{path}"]')
    item.click(timeout=UI_TIMEOUT_MS)
    page.locator(f'{ROOT} [role=treeitem][data-path="{path}"][aria-selected="true"]').wait_for(
        timeout=UI_TIMEOUT_MS
    )


def selected_vis(page: Page) -> str:
    """The name of the visualization tab H5Web shows (Line, Heatmap, NX Heatmap...)."""
    tab = page.locator(f'{ROOT} [role=tablist][aria-label=Visualization] [aria-selected="true"]')
    return tab.inner_text(timeout=UI_TIMEOUT_MS).strip()


def canvas_pixels(page: Page) -> np.ndarray:
    """RGB pixels of the plot's WebGL canvas, composited on white (H5Web keeps its buffer)."""
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
        flat = pixels.reshape(-1, 3).astype(np.int16)
        colours, counts = np.unique(flat, axis=0, return_counts=True)
        background = colours[counts.argmax()]
        differs = np.abs(flat - background).max(axis=1) > 24
        return cls(float(differs.mean()), len(colours))


def wait_for_plot(page: Page, min_fraction: float, min_colours: int) -> Ink:
    """Wait (bounded) until the canvas shows a plot; H5Web draws asynchronously after fetching."""
    deadline = time.monotonic() + PLOT_TIMEOUT_S
    ink = Ink(0.0, 0)
    while time.monotonic() < deadline:
        assert_no_h5web_error(page)
        if page.locator(CANVAS).count() == 1:
            ink = Ink.of(canvas_pixels(page))
            if ink.fraction >= min_fraction and ink.colours >= min_colours:
                return ink
        time.sleep(0.25)
    raise AssertionError(
        f"H5Web canvas still blank after {PLOT_TIMEOUT_S}s: {ink} "
        f"(want fraction >= {min_fraction}, colours >= {min_colours})"
    )


def wait_for_change(page: Page, before: np.ndarray) -> None:
    """Wait (bounded) until the canvas differs from `before` (e.g. another slice is drawn)."""
    deadline = time.monotonic() + PLOT_TIMEOUT_S
    while time.monotonic() < deadline:
        assert_no_h5web_error(page)
        now = canvas_pixels(page)
        if now.shape != before.shape or np.abs(now.astype(np.int16) - before).max() > 24:
            return
        time.sleep(0.25)
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
    before = int(thumb.get_attribute("aria-valuenow", timeout=UI_TIMEOUT_MS) or 0)
    thumb.focus(timeout=UI_TIMEOUT_MS)
    for _ in range(steps):
        page.keyboard.press("ArrowUp")
    target = str(before + steps)
    deadline = time.monotonic() + 10.0
    while thumb.get_attribute("aria-valuenow") != target and time.monotonic() < deadline:
        time.sleep(0.1)
    value = int(thumb.get_attribute("aria-valuenow") or -1)
    assert value == before + steps, f"slider at {value}, expected {before + steps}"
    return value


def screenshot(page: Page, folder: Path, name: str) -> Path:
    """Save a full-page screenshot as an artifact and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    return path
