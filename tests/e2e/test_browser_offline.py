"""The browser the console and docs tests use is really offline, and says what it asked for."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser import chromium, left_loopback, requested_urls

pytestmark = pytest.mark.e2e

PAGE = """<!doctype html><title>t</title><p id=p>local</p>
<img src="https://cdn.example.com/x.png"><script src="/local.js"></script>"""


def test_a_page_on_loopback_loads_and_its_outside_request_is_listed(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "local.js").write_text("document.getElementById('p').textContent='ran';")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with chromium() as driver:
            driver.get(f"http://127.0.0.1:{server.server_port}/index.html")
            assert driver.find_element("id", "p").text == "ran"
            urls = requested_urls(driver)
    finally:
        server.shutdown()
        thread.join()
    assert f"http://127.0.0.1:{server.server_port}/local.js" in urls
    assert left_loopback(urls) == ["https://cdn.example.com/x.png"]
