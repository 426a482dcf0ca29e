"""Screenshots of the demo app for the README: serve a model with app.py, drive each tab in headless Chromium.

    python docs/screenshots.py outputs/multitask-st          # writes docs/app-classify.png, app-compare.png, ...

Needs the app extra, playwright and Debian's chromium (what `make setup` installs).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright


ROOT = Path(__file__).resolve().parents[1]
CLASSIFY = "A moving, beautifully acted film that stays with you."
COMPARE = [
    "The striker scored twice as the champions won the cup final.",
    "The team won the match with two late goals.",
    "Shares in the carmaker fell sharply after profits missed forecasts.",
    "The central bank raised interest rates again.",
    "A dull, lifeless remake that wastes a talented cast.",
    "A moving, beautifully acted film that stays with you.",
]
SEARCH = "a mobile phone maker launches a new handset"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="Model folder (or Hub id) to serve.")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="Folder for the PNGs (default: docs/).")
    args = parser.parse_args(argv)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), args.model, "--port", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    return server.returncode
                time.sleep(1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"), headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.set_default_timeout(60_000)
            page.goto(url)
            out = Path(args.out)
            page.locator("#classify-text textarea").fill(CLASSIFY)
            page.locator("#classify-button").click()
            page.locator("[id^='head-'] h2").first.wait_for()
            page.wait_for_timeout(1500)  # the bars animate in
            page.screenshot(path=out / "app-classify.png", full_page=True)
            page.get_by_role("tab", name="Compare").click()
            page.locator("#compare-text textarea").fill("\n".join(COMPARE))
            page.locator("#compare-button").click()
            page.locator("#compare-plot img").wait_for()
            page.screenshot(path=out / "app-compare.png", full_page=True)
            page.get_by_role("tab", name="Search").click()
            page.locator("#search-text textarea, #search-text input").first.fill(SEARCH)
            page.locator("#search-button").click()
            page.locator("#search-results [data-testid='cell-0-2']").wait_for()
            page.wait_for_timeout(1000)
            page.screenshot(path=out / "app-search.png", full_page=True)
            browser.close()
        print(
            f"Wrote {', '.join(str(out / name) for name in ('app-classify.png', 'app-compare.png', 'app-search.png'))}"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
