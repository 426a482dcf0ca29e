"""End to end in a real browser: `python app.py` serves a trained model on 127.0.0.1, headless Chromium drives it.

Needs Debian's `chromium` (`make setup` installs it as root) and the `playwright` Python package (the `dev` extra);
Playwright's own browser download is not used. Screenshots of each tab go to `$APP_SCREENSHOTS_DIR` when set (how
docs/app-*.png were made), else to the test's temporary folder.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, require, require_module
from tiny_training import KNOWN


pytestmark = [pytest.mark.slow, pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STARTUP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def app_url(trained_tiny_model_dir, tmp_path_factory):
    require(CHROMIUM is not None, "Debian's chromium (the browser)")
    require_module("gradio")
    corpus = tmp_path_factory.mktemp("corpus") / "corpus.json"
    corpus.write_text(
        json.dumps(
            [{"text": text, "source": f"toy · {label}"} for text, (_, label) in KNOWN.items()] + ["election vote"]
        )
    )
    log = tmp_path_factory.mktemp("app") / "app.log"
    # The app's own defaults (analytics off among them): nothing GRADIO_* from the caller's environment.
    env = {key: value for key, value in os.environ.items() if not key.startswith("GRADIO_")}
    for _attempt in range(3):  # a free port may be taken before app.py binds it: then try another
        port = free_port()
        command = [sys.executable, str(ROOT / "app.py"), str(trained_tiny_model_dir), "--port", str(port)]
        with open(log, "w") as output:
            process = subprocess.Popen(
                [*command, "--corpus", str(corpus)], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{port}/"
        try:
            if _wait_until_serving(process, url, log):
                yield url
                return
        finally:
            process.terminate()
            process.wait(timeout=30)
    pytest.fail(f"app.py found no free port in 3 tries:\n{log.read_text()}")


def _wait_until_serving(process: subprocess.Popen, url: str, log: Path) -> bool:
    """True once `url` answers with this process's app; False if the port was taken; fails on any other exit."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            output = log.read_text()
            if "address already in use" in output.lower() or "cannot find empty port" in output.lower():
                return False
            pytest.fail(f"app.py exited with {process.returncode}:\n{output}")
        if "Ready in" in log.read_text():
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
        if time.monotonic() > deadline:
            pytest.fail(f"app.py did not answer on {url} within {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def page(app_url):
    sync_api = require_module("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 850})
        page.set_default_timeout(30_000)
        page.goto(app_url)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("APP_SCREENSHOTS_DIR")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


def test_classify_shows_each_heads_top_label(page, screenshots):
    page.get_by_role("tab", name="Classify").click()
    for sentence, (task, label) in KNOWN.items():
        page.locator("#classify-text textarea").fill(sentence)
        page.locator("#classify-button").click()
        heading = page.locator(f"#head-{task} h2")  # gr.Label shows the top label as its heading
        page.wait_for_function(
            "([selector, label]) => document.querySelector(selector)?.textContent.trim() === label",
            arg=[f"#head-{task} h2", label],
        )
        assert heading.inner_text().strip() == label
    page.screenshot(path=screenshots / "app-classify.png", full_page=True)


def test_compare_renders_the_heatmap(page, screenshots):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-text textarea").fill("the team won\nstock market fell\na great film")
    page.locator("#compare-button").click()
    image = page.locator("#compare-plot img")
    image.wait_for(state="visible")
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert image.evaluate("img => img.naturalWidth") > 300
    page.screenshot(path=screenshots / "app-compare.png", full_page=True)


def test_search_lists_the_nearest_text_with_its_predictions(page, screenshots):
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-text textarea, #search-text input").first.fill("the team won")
    page.locator("#search-button").click()
    cell = "#search-results [data-testid='cell-0-{}']"  # the first hit's cells (rank, cosine, text, source, heads)
    page.wait_for_function(
        "(selector) => document.querySelector(selector)?.textContent.trim() === 'the team won'", arg=cell.format(2)
    )
    assert page.locator(cell.format(0)).inner_text().strip() == "1"
    assert page.locator(cell.format(3)).inner_text().strip() == "toy · sports"
    assert page.locator(cell.format(4)).inner_text().strip().startswith("sports (")  # the topic head's prediction
    page.screenshot(path=screenshots / "app-search.png", full_page=True)


def test_bad_input_shows_a_message_in_the_page(page, screenshots):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-text textarea").fill("\n".join(["the team won"] * 500))
    page.locator("#compare-button").click()
    message = page.get_by_text("Got 500 sentences; the heatmap takes at most 30")
    message.first.wait_for(state="visible")
    page.screenshot(path=screenshots / "app-error.png", full_page=True)
