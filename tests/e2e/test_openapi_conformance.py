"""Issue 11, item 2: schemathesis against a running `up`: every operation of
/openapi.json (the SSE stream excepted) with about 20 generated requests each, positive and
negative; any 5xx, an undeclared status, content type or header, a body that breaks the
documented schema, a 405 without `Allow`, or invalid data accepted fails the test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.system import Up

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance",
          "negative_data_rejection", "unsupported_method")


def test_the_running_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    with Up(tmp_path / "data").start() as up:
        started = time.monotonic()
        run = subprocess.run(
            [str(Path(sys.executable).with_name("st")), "--no-color",
             "--config-file", str(CONFIG), "run", f"{up.url}/openapi.json",
             "--checks", ",".join(CHECKS), "--exclude-path", "/v1/alerts/stream",
             "--phases", "examples,coverage,fuzzing", "--workers", "2",
             "--request-timeout", "40", "--seed", str(int(time.time())),
             "-H", f"Authorization: Bearer {up.tokens['admin']}"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache there
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
        took = time.monotonic() - started
    print(f"schemathesis took {took:.1f} s")  # shown with -s, and in the report on failure
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
