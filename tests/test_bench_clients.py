"""The calibrated-API benchmark's client: it follows "not yet" answers (202/429/503 with Retry-After, a Location)
to the calibrated answer and counts each status, against a scripted loopback server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kronos.bench.calibrated_api import calibrated

RECORD = {"record": {"origins": 34, "target": 200, "provisional": True}}


@pytest.fixture
def scripted():
    """A server answering each GET with the next (status, headers, body) of `server.script`; the paths asked."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = server.script.pop(0)
            server.asked.append(self.path)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.script, server.asked = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_the_client_follows_202_and_503_to_the_calibrated_answer(scripted):
    scripted.script = [(202, {"Retry-After": "0", "Location": "/jobs/7"}, {}),
                       (503, {"Retry-After": "0"}, {"detail": "busy"}),
                       (200, {}, {"calibrated": None}),  # not calibrated yet: ask again
                       (200, {}, {"calibrated": RECORD})]
    outcome = calibrated(f"http://127.0.0.1:{scripted.server_port}", {"temperature": 1.1}, time.monotonic() + 30)
    assert outcome.error is None and outcome.origins == 34 and outcome.provisional
    assert dict(outcome.statuses) == {202: 1, 503: 1, 200: 2}
    assert scripted.asked[0].startswith("/predict_api?") and "calibrate=true" in scripted.asked[0]
    assert scripted.asked[1:] == ["/jobs/7"] * 3


def test_an_answer_that_cannot_be_calibrated_ends_the_client(scripted):
    scripted.script = [(200, {}, {"calibrated": {"unavailable": "needs 1,631 rows"}})]
    outcome = calibrated(f"http://127.0.0.1:{scripted.server_port}", {}, time.monotonic() + 30)
    assert outcome.seconds is None and outcome.error == "not calibrated: needs 1,631 rows"
