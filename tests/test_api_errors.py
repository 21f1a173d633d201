"""Error answers stay small whatever the request held: problems grouped by field and named by rows, a count of
the rest, inputs quoted in short excerpts, every answer under 64 KB, and the memory a burst of junk leaves behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from test_api import SMALL, custom_body

from kronos.api import create_app
from kronos.api.errors import MAX_ERROR_BYTES, error_body, error_response
from kronos.data.reading import read_json_text
from kronos.data.store import CandleStore
from kronos.errors import MAX_PROBLEMS, InvalidInputError
from kronos.settings import MarketChoice

ROWS = 20_000
COLUMNS = ("timestamps", "open", "high", "low", "close", "volume", "amount")


def junk_strings() -> dict:
    """About 700 kB: 20,000 "x" in every list."""
    return {column: ["x"] * ROWS for column in COLUMNS}


def negative_rows() -> dict:
    """20,000 hourly rows whose every value is negative."""
    return {"timestamps": [1_600_000_000 + 3600 * i for i in range(ROWS)],
            **{column: [-1.0] * ROWS for column in COLUMNS[1:]}}


@pytest.fixture(name="client")
def api_client(forecaster, tmp_path):
    with TestClient(create_app(forecaster=forecaster, store=CandleStore(tmp_path / "s.sqlite"))) as client:
        yield client


@pytest.mark.parametrize("body", [junk_strings(), negative_rows()], ids=["junk strings", "negative rows"])
def test_a_body_of_20000_bad_rows_gets_a_short_answer_naming_rows(client, body):
    response = client.post("/predict_custom", json=body)
    problems = response.json()["problems"]
    assert response.status_code == 422 and len(response.content) < 8_000  # was 30.3 MB and 16.2 MB
    assert len(problems) <= MAX_PROBLEMS + 1
    assert all(" and 19,997 more row(s): " in problem for problem in problems)
    assert problems[0].startswith("timestamps: row 1 (item 0 of each JSON list) " if "x" in body["open"] else
                                  "open: row 1 (item 0 of each JSON list) -1.0, row 2 ")


def test_a_10000_character_value_is_quoted_in_an_excerpt(client, parity_input):
    long = "A" * 10_000 + "/USDT"
    for path in ("/predict_api", "/track_record"):
        response = client.get(path, params={"symbol": long})
        assert response.status_code == 422 and len(response.content) < 600, path
        assert "(10,007 characters)" in response.text
    body = custom_body(parity_input, **SMALL)
    body["open"][7] = "9" * 10_000 + "x"
    response = client.post("/predict_custom", json=body)
    assert response.status_code == 422 and len(response.content) < 1_000 and "row 8 (item 7" in response.text
    with pytest.raises(InvalidInputError) as caught:
        MarketChoice(symbol=long)
    assert len(str(caught.value)) < 200
    cells = {**{c: [1.0] * 40 for c in COLUMNS}, "timestamps": ["2024-01-01 " + "9" * 10_000] * 40}
    assert len(" ".join(read_json_text(json.dumps(cells)).errors)) < 600  # the validator's own: three excerpts


def test_an_error_lists_at_most_twenty_problems_then_counts_the_rest():
    error = InvalidInputError([f"problem {i}" for i in range(1000)])
    assert error.problems == [*(f"problem {i}" for i in range(MAX_PROBLEMS)), "and 980 more problem(s)"]


def test_every_error_answer_is_under_64_kb():
    huge = error_body(422, "x" * 10**6, ["y" * 10**5] * 1000)
    body = json.loads(huge.body)
    assert len(huge.body) <= MAX_ERROR_BYTES and body["problems"][-1].startswith("and ")
    assert len(body["error"]) < 1_100
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "app": create_app(forecaster=object())}
    answer = error_response(Request(scope), InvalidInputError(["z" * 10**5] * 10**4))
    assert answer.status_code == 422 and len(answer.body) <= MAX_ERROR_BYTES


def test_every_route_documents_its_503_with_retry_after_and_bodies_their_408(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            codes = operation["responses"]
            assert "503" in codes and "Retry-After" in codes["503"]["description"], (path, method)
            if method == "post":
                assert {"408", "413"} <= set(codes), (path, method)


MEMORY_SCRIPT = """
import json, sys, threading
from pathlib import Path
sys.path.insert(0, "tests")
from fastapi.testclient import TestClient
from test_api_errors import junk_strings, negative_rows
from kronos import Forecaster
from kronos.api import create_app
from kronos.data.store import CandleStore

def rss():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS"))
    return int(line.split()[1]) / 1024

parity = Path("tests/fixtures/kronos_parity")
forecaster = Forecaster.from_pretrained(str(parity / "model"), str(parity / "tokenizer"), max_context=128)
bodies = [json.dumps(b) for b in (junk_strings(), negative_rows())]
with TestClient(create_app(forecaster=forecaster, store=CandleStore(sys.argv[1]))) as client:
    post = lambda body: client.post("/predict_custom", content=body, headers={"content-type": "application/json"})
    for body in bodies:  # first calls: imports and caches
        post(body)
    before = rss()
    threads = [threading.Thread(target=post, args=(body,)) for body in bodies * 2]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(before, rss())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc (Linux)")
def test_four_concurrent_junk_requests_leave_memory_within_50_mb(tmp_path):
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "s.sqlite")], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).parents[1], check=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "", "PYTHONPATH": str(Path(__file__).parents[1])})
    before, after = map(float, done.stdout.split())
    assert after - before < 50  # was +477 MiB here (632 MiB before, 1,109 MiB after)
