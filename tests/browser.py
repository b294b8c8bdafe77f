"""A real browser for the page tests: headless Chromium driven by Selenium through Debian's
``chromium-driver``, with its console log and screenshots.

Selenium is given the driver and the browser explicitly, so its driver manager never
tries to download anything. Each browser gets a fresh profile directory and is quit (the
browser and the driver stopped) by the fixture that started it. Screenshots go to the
test artifacts directory: ``$PGPERF_TEST_ARTIFACTS`` or ``.artifacts/`` in the repository
(ignored by git), written again on every run; ``docs/screenshots/`` holds a committed set
(``PGPERF_SCREENSHOTS_DOCS=1`` also writes there).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

__all__ = ["ARTIFACTS", "DOC_SCREENSHOTS", "Browser", "chromedriver"]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("PGPERF_TEST_ARTIFACTS") or ROOT / ".artifacts")
DOC_SCREENSHOTS = ROOT / "docs" / "screenshots"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
         "--disable-features=Translate,OptimizationHints,MediaRouter")

T = TypeVar("T")


def chromedriver() -> tuple[str, str]:
    """(driver, browser) paths of Debian's chromium-driver and chromium."""
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    browser = "/usr/lib/chromium/chromium" if os.path.exists("/usr/lib/chromium/chromium") else shutil.which("chromium")
    if not os.path.exists(driver) or not browser:
        raise AssertionError("chromium and chromium-driver are needed (Debian packages chromium, chromium-driver; "
                             "make deps installs them)")
    return driver, browser


class Browser:
    """One headless Chromium window (1366×900), driven by Selenium."""

    def __init__(self, *, width: int = 1366, height: int = 900, ca_file: Path | None = None) -> None:
        driver, binary = chromedriver()
        self.profile = tempfile.mkdtemp(prefix="pgperf-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in (*FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        if ca_file is not None:  # the test's own CA, which this browser profile cannot be told to trust
            options.add_argument("--ignore-certificate-errors")
            options.accept_insecure_certs = True
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        os.environ.setdefault("SE_AVOID_STATS", "true")
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        self.driver.set_page_load_timeout(60)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- pages -----------------------------------------------------------------------------

    def get(self, url: str) -> None:
        self.driver.get(url)
        self.wait(lambda: self.driver.execute_script("return document.readyState") == "complete", 30,
                  f"{url} loaded")

    @property
    def path(self) -> str:
        url: str = self.driver.current_url
        return "/" + url.split("://", 1)[1].split("/", 1)[1] if "://" in url else url

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str) -> str:
        return str(self.find(css).text)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, check: Callable[[], T | None], timeout: float = 15.0, message: str = "condition") -> T:
        """Poll *check* until it returns something truthy (stale elements count as not yet)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
            except (StaleElementReferenceException, WebDriverException) as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")

    def sign_in(self, base: str, token: str) -> None:
        self.get(base + "/login")
        self.find("#token").send_keys(token)
        self.find("form[action='/login'] button[type=submit]").click()
        self.wait(lambda: not self.path.startswith("/login"), 15, "the sign-in to complete")

    # -- what the page says ------------------------------------------------------------------

    def console(self) -> list[dict[str, Any]]:
        """The console messages since the last call (Chromium hands each out once)."""
        return list(self.driver.get_log("browser"))

    def console_errors(self) -> list[str]:
        """The console messages of level SEVERE since the last call: script errors, failed
        loads, Content-Security-Policy violations."""
        return [f"{m.get('source')}: {m.get('message')}" for m in self.console() if m.get("level") == "SEVERE"]

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        """A PNG of the page under ``ARTIFACTS/screenshots/<name>.png`` (and in
        docs/screenshots with PGPERF_SCREENSHOTS_DOCS=1), the whole page's height."""
        target = ARTIFACTS / "screenshots" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        size = self.driver.get_window_size()
        try:
            if full_page:
                height = int(self.js("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"))
                self.driver.set_window_size(size["width"], min(max(height + 120, 600), 6000))
                time.sleep(0.3)  # charts redraw at the new size
            self.driver.save_screenshot(str(target))
        finally:
            if full_page:
                self.driver.set_window_size(size["width"], size["height"])
        if os.environ.get("PGPERF_SCREENSHOTS_DOCS"):
            DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOC_SCREENSHOTS / target.name)
        return target
