"""A Chromium for the console's browser tests and screenshots: finding one, and installing one.

    python -m devtools.browser            print the Chromium found, or how to install one (exit 1)
    python -m devtools.browser install    install one when none is found (what `make test` runs)

Found, first wins: `$CHROMIUM_PATH`; Playwright's own browser (`python -m playwright install
chromium`, which downloads it and needs the internet); a system Chromium on `PATH` (`chromium`,
`chromium-browser`, `google-chrome`), such as Debian's `chromium` package. `install` tries
Playwright's download first, then, as root with apt, `apt-get install -y chromium`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["HOW_TO_INSTALL", "find_chromium", "main"]

VARIABLE = "CHROMIUM_PATH"
SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOW_TO_INSTALL = (
    "no Chromium found for the browser tests: run `make test` (it installs one), or "
    "`.venv/bin/python -m playwright install chromium`, or on Debian/Ubuntu "
    "`sudo apt-get install -y chromium`, or set CHROMIUM_PATH to a Chromium or Chrome executable"
)


def _playwright_chromium() -> Path | None:
    """The browser `python -m playwright install chromium` put in place, if it did."""
    try:
        from playwright.sync_api import Error, sync_playwright  # noqa: PLC0415 -- only here
    except ImportError:
        return None
    try:
        with sync_playwright() as playwright:
            path = Path(playwright.chromium.executable_path)
    except Error:
        return None
    return path if path.is_file() else None


def find_chromium() -> Path | None:
    """The Chromium to drive (see the module docstring for the order), or None."""
    given = os.environ.get(VARIABLE)
    if given:
        return Path(given) if Path(given).is_file() else None
    own = _playwright_chromium()
    if own is not None:
        return own
    for name in SYSTEM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def _install() -> Path | None:
    print("browser: installing Playwright's Chromium", flush=True)
    subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"], check=False)
    found = find_chromium()
    if found is not None:
        return found
    apt = shutil.which("apt-get")
    if apt is not None and os.geteuid() == 0:
        print("browser: Playwright's download failed; installing Debian's chromium", flush=True)
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update", "-qq"], check=False, env=environment)  # noqa: S603
        subprocess.run(  # noqa: S603 -- apt-get, fixed arguments
            [apt, "install", "-y", "-qq", "chromium"], check=False, env=environment
        )
    return find_chromium()


def main(argv: list[str] | None = None) -> int:
    """Print the Chromium found (installing one with `install`); 1 with instructions if none."""
    arguments = sys.argv[1:] if argv is None else argv
    found = find_chromium()
    if found is None and arguments[:1] == ["install"]:
        found = _install()
    if found is None:
        print(f"browser: {HOW_TO_INSTALL}", file=sys.stderr)
        return 1
    print(f"browser: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
