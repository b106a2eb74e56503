"""Issue 11, item 1: `/docs` and `/redoc` of a running `up` work in a browser cut off from
everything but loopback: their scripts and styles come from the installed package."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import chromium, left_loopback, requested_urls
from tests.e2e.system import Up

pytestmark = pytest.mark.e2e


def test_docs_and_redoc_list_the_operations_offline(tmp_path: Path) -> None:
    with Up(tmp_path / "data").start() as up, chromium() as driver:
        driver.get(f"{up.url}/docs")
        # Swagger UI renders one block per operation once it has read /openapi.json
        WebDriverWait(driver, 30).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) > 10)
        paths = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert {"/v1/events", "/v1/customers/{customer_id}", "/v1/cases"} <= paths
        docs_urls = requested_urls(driver)

        driver.get(f"{up.url}/redoc")
        # ReDoc lists each operation's summary in its side menu
        WebDriverWait(driver, 30).until(
            lambda d: "Publish one envelope" in d.find_element(By.TAG_NAME, "body").text)
        redoc_urls = requested_urls(driver)

    assert any(u.endswith("/openapi.json") for u in docs_urls)
    assert any(u.endswith("swagger-ui-bundle.js") for u in docs_urls)
    assert any(u.endswith("redoc.standalone.js") for u in redoc_urls)
    assert left_loopback(docs_urls) == []
    assert left_loopback(redoc_urls) == []
