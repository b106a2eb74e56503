"""Issue 11, item 5: `contactstream publish` as a new user meets it: the samples of
docs/samples published with nothing but the data dir, `--format` for files and stdin,
and each common mistake (no such file, no server, a wrong token or port) one line on
stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import http.server
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from contactstream.adapters.broker import free_port
from tests.e2e.system import Up, cli
from tests.helpers import Background, eventually

pytestmark = pytest.mark.e2e

SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "samples"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with Up(tmp_path_factory.mktemp("publish") / "data").start() as system:
        yield system


def failed_in_one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("contactstream publish: "), done.stderr
    return lines[0]


def test_the_jsonl_sample_is_published_with_only_the_data_dir(up: Up) -> None:
    # `up` runs on a random port, not :8080: the data dir alone leads publish to it
    done = cli("publish", str(SAMPLES / "events.jsonl"), "--data-dir", str(up.data_dir))
    assert done.returncode == 0, done.stderr
    assert "accepted 8, duplicates 0, rejected 0" in done.stdout, done.stdout
    view = eventually(lambda: (r := up.get("/v1/customers/c-9001")).status_code == 200
                      and r.json())
    assert view["name"] == "Kovács Anna"


def test_the_csv_sample_is_read_from_stdin_with_format_csv(up: Up) -> None:
    done = cli("publish", "-", "--format", "csv", "--data-dir", str(up.data_dir),
               stdin=(SAMPLES / "events.csv").read_text(encoding="utf-8"))
    assert done.returncode == 0, done.stderr
    assert "accepted 8, duplicates 0, rejected 0" in done.stdout, done.stdout
    # the CSV's typed cells arrive typed: a number, a boolean false
    timeline = eventually(lambda: len(items := up.get("/v1/customers/c-9002/timeline")
                                      .json().get("items", [])) >= 8 and items)
    by_type = {i["type"]: i["payload"] for i in timeline}
    assert by_type["survey.answered"]["score"] == 9
    assert by_type["consent.changed"]["granted"] is False


def test_format_decides_over_the_extension(up: Up, tmp_path: Path) -> None:
    text = (SAMPLES / "events.csv").read_text(encoding="utf-8").replace("sample-csv-",
                                                                        "format-csv-")
    path = tmp_path / "export.txt"
    path.write_text(text, encoding="utf-8")
    guess = failed_in_one_line(cli("publish", str(path), "--data-dir", str(up.data_dir)))
    assert "cannot tell the format" in guess, guess
    done = cli("publish", str(path), "--format", "csv", "--data-dir", str(up.data_dir))
    assert done.returncode == 0 and "accepted 8" in done.stdout, (done.stdout, done.stderr)


def test_a_wrong_token_is_one_line(up: Up) -> None:
    line = failed_in_one_line(cli("publish", str(SAMPLES / "events.jsonl"), "--url", up.url,
                                  "--token", "not-a-token"))
    assert "refused the token" in line and "401" in line, line


def test_an_agent_token_is_one_line(up: Up) -> None:
    line = failed_in_one_line(cli("publish", str(SAMPLES / "events.jsonl"), "--url", up.url,
                                  "--token", up.tokens["agent"]))
    assert "not a publisher's" in line, line


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    line = failed_in_one_line(cli("publish", str(tmp_path / "nope.jsonl"), "--url",
                                  f"http://127.0.0.1:{free_port()}"))
    assert f"cannot read {tmp_path / 'nope.jsonl'}" in line, line


def test_no_server_at_the_url_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = failed_in_one_line(cli("publish", str(SAMPLES / "events.jsonl"), "--url", url))
    assert f"no contactstream answers at {url}" in line and "--data-dir" in line, line


def test_another_server_on_the_port_is_one_line() -> None:
    # a port where some other HTTP server answers (a wrong --port)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = Background(server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        line = failed_in_one_line(cli("publish", str(SAMPLES / "events.jsonl"), "--url",
                                      url))
        assert "is not a contactstream API" in line and "--url" in line, line
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
