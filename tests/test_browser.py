"""Issue 15: the dashboard in a real browser (Debian's chromium through its chromedriver).

Served by uvicorn on 127.0.0.1 (a free port); a quarantined captain message is resolved by
clicking, then found on its team in the database. Screenshots of the main pages go to
docs/screenshots/. Without chromium or chromedriver the test skips and says why (CI installs
both: .ci/run).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from test_review_scenario import make_quarantine, value

pytest.importorskip("starlette", reason="the dashboard needs the 'web' extra")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")

SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"no browser to drive: {', '.join(missing)} missing "
                    "(apt-get install chromium chromium-driver; .ci/run does)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def served(db_dsn):
    from bulletproof_etl.web.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(db_dsn, actor="browser-test"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # the whole page: the window grown until the viewport holds the document (the outer window
    # is taller than its viewport by the browser's own frame), from a window of 700 pixels (a page
    # shorter than the window measures as tall as the window)
    driver.set_window_size(1280, 700)
    for _ in range(3):
        page, view = driver.execute_script(
            "return [Math.max(document.body.scrollHeight, document.documentElement.scrollHeight), window.innerHeight]")
        if view >= min(page, 2400):
            break
        driver.set_window_size(1280, driver.get_window_size()["height"] + min(page, 2400) - view)
    driver.save_screenshot(str(SHOTS / name))


def test_resolve_a_quarantined_row_by_clicking(db_dsn, served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    q = make_quarantine(db_dsn)
    browser.get(served + "/")
    assert "Health" in browser.find_element(By.ID, "status-banner").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#runs tr")) == 3  # header and two runs
    _shot(browser, "dashboard.png")
    browser.find_element(By.LINK_TEXT, "2").click()
    WebDriverWait(browser, 10).until(ec.url_contains("/runs/2"))
    assert "What changed since run 1" in browser.page_source
    _shot(browser, "run.png")
    browser.find_element(By.LINK_TEXT, "Review queue").click()
    WebDriverWait(browser, 10).until(ec.url_contains("/review"))
    _shot(browser, "review.png")
    button = browser.find_element(By.CSS_SELECTOR, f"#entry-{q['message']} button.assign[data-team='{q['author_team']}']")
    button.click()
    flash = WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.ID, "flash")))
    assert flash.text.startswith("Done: 1 row(s) moved to teams")
    _shot(browser, "review-after-assign.png")
    assert value(db_dsn, "SELECT team_id FROM captain_messages WHERE id = 9005") == [(q["author_team"],)]
    assert value(db_dsn, "SELECT actor, action, quarantine_id FROM bulletproof.review_actions") == [
        ("browser-test", "assign", q["message"])]
