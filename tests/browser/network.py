"""Record what the page asked of the HDF5 prefix, and how it was answered."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote_plus, urlsplit

from playwright.sync_api import Page, Request, Response


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
    def params(self) -> dict[str, str]:
        """Decoded query parameters (last value of each)."""
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.url).query).items()}

    def __str__(self) -> str:
        return f"{self.status} {self.endpoint}?{unquote_plus(urlsplit(self.url).query)}"


@dataclass
class PrefixRecorder:
    """Every response (and network failure) of the page's requests under one URL prefix."""

    prefix: str
    exchanges: list[Exchange] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        """Listen to `page`'s responses, failed requests and uncaught exceptions."""
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_failed)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def _on_response(self, response: Response) -> None:
        if response.url.startswith(self.prefix):
            self.exchanges.append(Exchange(response.status, response.url))

    def _on_failed(self, request: Request) -> None:
        if request.url.startswith(self.prefix):
            self.failures.append(f"{request.url}: {request.failure}")

    def mark(self) -> int:
        """A position in the record, to look at what happened after it."""
        return len(self.exchanges)

    def since(self, mark: int) -> list[Exchange]:
        """Responses recorded after `mark`."""
        return self.exchanges[mark:]

    def bad(self) -> list[str]:
        """Every non-2xx answer and network failure so far, readable."""
        answers = [str(x) for x in self.exchanges if not 200 <= x.status < 300]
        return answers + [f"network failure {f}" for f in self.failures]

    def wait_for(
        self, page: Page, predicate: Callable[[Exchange], bool], mark: int, timeout_s: float
    ) -> Exchange:
        """Wait (bounded) until a response after `mark` satisfies `predicate`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for exchange in self.since(mark):
                if predicate(exchange):
                    return exchange
            page.wait_for_timeout(100)  # not time.sleep: lets Playwright deliver page events
        seen = "\n".join(f"  {x}" for x in self.since(mark))
        raise AssertionError(f"expected request not answered within {timeout_s}s; seen:\n{seen}")
