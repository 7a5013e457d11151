"""The dashboard in a real browser: headless Chromium (Debian's chromium and
chromium-driver, which ``make browser-deps`` installs) driven by Selenium against
``whisperpool serve`` (fake backend, an API key) in a subprocess on a free loopback port.

Without the key the page is the login form; after logging in the worker cards show
``warm``; a worker killed with SIGKILL is seen to fail and a new one to become warm; a
file given to the drop zone's file input is transcribed. Screenshots (a laptop and a
390 px phone) are kept in ``build/`` as build artefacts. Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import WAIT, encode, samples, wait_for
from whisperpool.loadtest import start_server
from whisperpool.testing import FakeBehavior

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

KEY = "browser-test-key-42"
MARKERS = FakeBehavior()
BUILD = Path(__file__).resolve().parent.parent / "build"


def _browser() -> tuple[str, str] | None:
    chrome = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None
    )
    return (chrome, driver) if chrome and driver else None


@pytest.fixture(scope="module")
def server():
    proc, url = start_server(2, 1, None, fake=True, extra=["--api-key", KEY, "--grace", "2"])
    try:
        headers = {"Authorization": f"Bearer {KEY}"}
        assert wait_for(lambda: _ready(url), timeout=60), "the server did not become ready"
        yield url, headers
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def browser():
    found = _browser()
    if found is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver (make browser-deps)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1800",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, timeout: float = WAIT):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def tolerant(d):
        # A page that reloads (the login) or a card that goes away leaves stale references;
        # mid-navigation, Chromium says a node "does not belong to the document": try again.
        try:
            return condition(d)
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return False
            raise

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(tolerant)


def _cards(driver) -> dict[str, str]:
    """Worker id -> the state its card shows (cards of replaced workers too)."""
    from selenium.webdriver.common.by import By

    return {
        card.get_attribute("data-worker-id"): card.get_attribute("data-state")
        for card in driver.find_elements(By.CSS_SELECTOR, "article.worker")
    }


def _gauges(driver) -> dict[str, tuple[str, str]]:
    """Gauge name -> (the value it shows, its hover title)."""
    from selenium.webdriver.common.by import By

    return {
        g.find_element(By.TAG_NAME, "span").text: (
            g.find_element(By.TAG_NAME, "b").text,
            g.get_attribute("title") or "{}",
        )
        for g in driver.find_elements(By.CSS_SELECTOR, "#gauges .gauge")
    }


def test_the_dashboard_in_a_browser(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, headers = server
    driver = browser
    BUILD.mkdir(exist_ok=True)

    # Without the key: the login form, and no feed.
    driver.get(f"{url}/")
    form = _wait(driver, lambda d: d.find_element(By.ID, "login"))
    assert form.is_displayed() and not driver.find_element(By.ID, "main").is_displayed()
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-auth") == "login"
    assert not _cards(driver)

    # A wrong key is refused; the right one opens the dashboard, and is not in the address.
    driver.find_element(By.ID, "key").send_keys("not the key")
    driver.find_element(By.ID, "login-button").click()
    _wait(driver, lambda d: d.find_element(By.ID, "login-wrong").is_displayed())
    driver.find_element(By.ID, "key").send_keys(KEY)
    driver.find_element(By.ID, "login-button").click()
    _wait(driver, lambda d: d.find_element(By.ID, "main").is_displayed())
    assert KEY not in driver.current_url
    cookie = driver.get_cookie("whisperpool_dashboard")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and KEY not in cookie["value"]

    # The workers appear, warm, with their pids: two and the express one, tagged.
    _wait(driver, lambda d: list(_cards(d).values()) == ["warm", "warm", "warm"])
    _wait(driver, lambda d: d.find_element(By.ID, "feed").text == "feed: live")
    pool = httpx.get(f"{url}/v1/pool", headers=headers).json()
    pids = {str(w["id"]): w["pid"] for w in pool["workers"]}
    expected = {k: str(v) for k, v in pids.items()}

    def shown(d) -> dict[str, str]:  # read inside _wait: a card re-rendered meanwhile is read again
        return {
            card.get_attribute("data-worker-id"): card.find_element(By.CSS_SELECTOR, 'dd[data-field="pid"]').text
            for card in d.find_elements(By.CSS_SELECTOR, "article.worker")
        }

    _wait(driver, lambda d: shown(d) == expected)
    tagged = {
        card.get_attribute("data-worker-id")
        for card in driver.find_elements(By.CSS_SELECTOR, "article.worker")
        if card.find_elements(By.CSS_SELECTOR, ".top .express")
    }
    assert tagged == {str(w["id"]) for w in pool["workers"] if w["express"]} and len(tagged) == 1

    # A file given to the drop zone's input is transcribed, with its timings shown.
    wav = encode(samples(8000), tmp_path / "note.wav")
    driver.find_element(By.ID, "file").send_keys(str(wav))
    _wait(driver, lambda d: d.find_element(By.ID, "result-text").text == "8000 samples")
    meta = driver.find_element(By.ID, "result-meta").text
    assert "0.50 s of audio" in meta and "Server-Timing" in meta and "inference;dur=" in meta

    # A fallback and a retry (the fake backend's markers) are counted in their gauges, by
    # reason on hover.
    assert _gauges(driver)["window retries"] == ("0", "{}")
    for marker in (MARKERS.fallback_marker, MARKERS.retry_marker, MARKERS.retry_marker):
        audio = np.zeros(8000, np.float32)
        audio[0] = marker
        data = encode(audio, tmp_path / f"marked-{marker}.wav").read_bytes()
        r = httpx.post(f"{url}/v1/audio/transcriptions", headers=headers, files={"file": ("m.wav", data)}, timeout=WAIT)
        assert r.status_code == 200, r.text
    _wait(driver, lambda d: _gauges(d)["window retries"] == ("2", '{"repetition":2}'))
    assert _gauges(driver)["window fallbacks"] == ("1", '{"log_probability":1}')

    # A worker killed: its card turns failed, a new card comes up warm.
    victim, pid = next(iter(pids.items()))
    os.kill(pid, signal.SIGKILL)
    _wait(driver, lambda d: _cards(d).get(victim) == "failed")
    _wait(driver, lambda d: sum(1 for k, s in _cards(d).items() if k not in pids and s == "warm") == 1)
    _wait(driver, lambda d: "3 of 3 worker(s) warm" in d.find_element(By.ID, "warmup-text").text)  # the next status
    failures = driver.find_element(By.ID, "failures").text
    assert f"worker {victim} failed" in failures
    driver.save_screenshot(str(BUILD / "dashboard.png"))  # the docs show a copy: docs/img/dashboard.png

    # A phone's width: one column, nothing wider than the screen.
    driver.set_window_size(390, 1600)
    _wait(driver, lambda d: d.execute_script("return document.documentElement.scrollWidth") <= 390)
    driver.save_screenshot(str(BUILD / "dashboard-phone.png"))
    driver.set_window_size(1280, 1800)


def test_a_page_without_the_key_gets_no_data(server, browser):
    url, _ = server
    driver = browser
    driver.delete_all_cookies()
    driver.get(f"{url}/dashboard")
    from selenium.webdriver.common.by import By

    _wait(driver, lambda d: d.find_element(By.ID, "login").is_displayed())
    status = driver.execute_script(
        "return fetch('/v1/dashboard/events').then(r => r.status)"  # the feed itself: refused
    )
    assert status == 401
    assert not _cards(driver)
