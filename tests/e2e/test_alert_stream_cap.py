"""Live alert streams are capped per token (issue 10, item 13): one more than the cap is
answered 429 with the JSON envelope; a stream closed gives its slot back."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.system import Up
from tests.helpers import eventually

pytestmark = pytest.mark.e2e


def test_one_stream_more_than_the_cap_is_429_and_a_closed_one_frees_its_slot(
        tmp_path: Path) -> None:
    up = Up(tmp_path / "data", env={"CONTACTSTREAM_MAX_STREAMS_PER_TOKEN": "3"}).start()
    try:
        headers = {"Authorization": f"Bearer {up.tokens['supervisor']}"}
        with httpx.Client(base_url=up.url, headers=headers, timeout=10) as client:
            streams = [client.stream("GET", "/v1/alerts/stream") for _ in range(3)]
            opened = [s.__enter__() for s in streams]
            assert [r.status_code for r in opened] == [200, 200, 200]
            refused = client.get("/v1/alerts/stream")
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_streams"
            assert refused.headers["retry-after"] == "5"
            # another token has slots of its own
            with client.stream("GET", "/v1/alerts/stream", headers={
                    "Authorization": f"Bearer {up.tokens['admin']}"}) as other:
                assert other.status_code == 200
            streams[0].__exit__(None, None, None)

            def reopened() -> int:
                with client.stream("GET", "/v1/alerts/stream") as again:
                    return again.status_code
            assert eventually(lambda: reopened() == 200)
            for s in streams[1:]:
                s.__exit__(None, None, None)
    finally:
        code = up.stop()
    assert code == 0, up.logs()[-2000:]
