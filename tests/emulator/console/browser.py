"""Headless Chromium for the console's tests, driven by Playwright: found, never silently skipped.

`chromium()` is the executable `devtools.browser.find_chromium` finds; without one the test fails
and says how to install one. `Watched` is a page with every JavaScript error it reports kept
(console errors, uncaught exceptions, failed requests of its own origin), so a test can assert
there were none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from devtools.browser import HOW_TO_INSTALL, find_chromium

# `expect` waits 5 s by default, apart from the page's own timeout: on a loaded 2-core CI machine
# a view's first API calls can take longer, so assertions wait as long as actions do.
expect.set_options(timeout=15_000)


def chromium() -> Path:
    """The Chromium to drive; fails the test (loudly, with how to install one) when there is none."""
    found = find_chromium()
    if found is None:
        pytest.fail(HOW_TO_INSTALL, pytrace=False)
    return found


@contextmanager
def launched() -> Iterator[Browser]:
    """A headless Chromium for the duration of the block."""
    path = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(path), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page and the errors it reported."""

    page: Page
    errors: list[str] = field(default_factory=list)


def watched(browser: Browser, **context: Any) -> Watched:
    """A new page in a fresh context (no cookies), its errors recorded."""
    page = browser.new_context(viewport={"width": 1400, "height": 900}, **context).new_page()
    result = Watched(page)
    page.on(
        "console",
        lambda message: (
            result.errors.append(f"console {message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: result.errors.append(f"uncaught: {error}"))
    page.set_default_timeout(15_000)
    return result
