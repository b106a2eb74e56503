"""A real headless browser for the e2e tests: Debian's chromium driven by Selenium through
Debian's chromedriver (nothing is downloaded), cut off from every host but loopback.

"Offline" means chromium's host resolver sends every name but localhost nowhere, and
`left_loopback(driver)` lists any request whose host was not loopback (from chromium's
performance log), so a test can assert that nothing left the machine. Under `CI=true` a
missing chromium fails the test; elsewhere it skips it (`.ci/run` installs chromium)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LOOPBACK = {"localhost", "127.0.0.1", "[::1]", "::1"}
# every name but loopback resolves to nothing, so no request can leave the machine
RESOLVER_RULES = "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"


def require_chromium() -> None:
    """Fail under CI, skip elsewhere, when Debian's chromium or chromedriver is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        message = (f"{', '.join(missing)} missing: install Debian's chromium and"
                   " chromium-driver (bash .ci/run does)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def chromium(width: int = 1440, height: int = 900) -> Iterator[object]:
    """A headless chromium at a desktop size, with its performance log on; quit at exit."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="contactstream-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={width},{height}",
                 f"--user-data-dir={profile}", f"--host-resolver-rules={RESOLVER_RULES}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def requested_urls(driver: object) -> list[str]:
    """Every URL the page asked for since the last call (chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):  # type: ignore[attr-defined]
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def left_loopback(urls: list[str]) -> list[str]:
    """The URLs among `urls` that would have left the machine (data: and blob: stay)."""
    outside = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about", "chrome"):
            continue
        if (parts.hostname or "") not in LOOPBACK:
            outside.append(url)
    return outside
