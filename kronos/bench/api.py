"""The HTTP API under load on loopback: N concurrent clients for S seconds; throughput, latency, answers.

It starts `uvicorn kronos.api:create_app --factory` on a free port (the model from
KRONOS_MODEL / KRONOS_TOKENIZER; default: Kronos-mini's shapes with random weights, as the dashboard's load
script) unless --url names a running server, then every client posts /predict_custom with synthetic candles
(kronos.engine.synthetic.random_walk) over and over. A 429 is an answer: the client waits its Retry-After, as a polite
client does. `--histories K` gives the clients K different histories (default 1: all on one history, like the
live market); `--seeds K` makes the requests use K seeds only, so identical concurrent requests share
computations; by default every request is distinct.

    python -m kronos.bench api --clients 16 --seconds 30 [--histories 16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

from kronos.engine.synthetic import random_checkpoint, random_walk


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, workers: int, queue_size: int) -> subprocess.Popen:
    """The API in a child process; returns once /health answers 200."""
    code = ("from kronos.process import prepare; prepare(); import uvicorn; from kronos.api import create_app; "
            "from kronos.serving.service import ForecastService; "
            f"uvicorn.run(create_app(service=ForecastService({workers}, {queue_size})), host='127.0.0.1', "
            f"port={port}, log_level='warning')")
    return wait_healthy(subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "1"}), port)


def wait_healthy(server: subprocess.Popen, port: int) -> subprocess.Popen:
    """Wait until the server child on `port` answers /health with 200 (at most 300 s), then return it."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:  # not listening yet, or not healthy yet
            pass
        if server.poll() is not None:
            sys.exit(f"the server exited with status {server.returncode}")
        time.sleep(0.5)
    server.terminate()
    sys.exit("the server did not become healthy within 300 s")


def body(rows: int, samples: int, horizon: int, history: int = 0) -> dict:
    """A /predict_custom body: synthetic hourly candles (one walk per `history`) and the settings."""
    frame = random_walk(rows, seed=history)
    return {"timestamps": frame["timestamps"].astype(str).tolist(),
            **{c: frame[c].tolist() for c in ("open", "high", "low", "close", "volume", "amount")},
            "samples": samples, "horizon": horizon, "lookback": rows}


def client_loop(url: str, stop: float, payload: dict, seeds: int | None, results: list, lock: threading.Lock) -> None:
    """Post until `stop`; record (status or the error's name, seconds) for every request."""
    while time.monotonic() < stop:
        seed = random.randrange(seeds) if seeds else random.randrange(2**31)
        request = urllib.request.Request(url + "/predict_custom", json.dumps({**payload, "seed": seed}).encode(),
                                         {"content-type": "application/json"})
        start = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                response.read()
                outcome, wait = response.status, 0.0
        except urllib.error.HTTPError as error:  # an answer: 4xx or 5xx
            outcome, wait = error.code, float(error.headers.get("Retry-After", 0))
        except OSError as error:
            outcome, wait = type(error).__name__, 0.0
        with lock:
            results.append((outcome, time.monotonic() - start))
        time.sleep(min(wait, max(0.0, stop - time.monotonic())))


def main(argv: list[str] | None = None) -> None:
    """Run the load and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rows", type=int, default=400, help="candles per request (and the lookback)")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--seeds", type=int, help="distinct seeds used (default: a new one per request)")
    parser.add_argument("--histories", type=int, default=1, help="different histories among the clients")
    parser.add_argument("--workers", type=int, default=16, help="the started server's pool size")
    parser.add_argument("--queue-size", type=int, default=32, help="the started server's queue")
    args = parser.parse_args(argv)
    if args.url is None and "KRONOS_MODEL" not in os.environ:
        os.environ.update(random_checkpoint(Path(tempfile.mkdtemp())))
    server = None if args.url else start_server(port := free_port(), args.workers, args.queue_size)
    url = args.url or f"http://127.0.0.1:{port}"
    payloads = [body(args.rows, args.samples, args.horizon, h) for h in range(args.histories)]
    results: list[tuple[int | str, float]] = []
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds
    started = time.monotonic()
    threads = [threading.Thread(target=client_loop, args=(url, stop, payloads[i % args.histories], args.seeds,
                                                          results, lock)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if server is not None:
        server.terminate()
        server.wait()
    report(results, elapsed, args)


def report(results: list[tuple[int | str, float]], elapsed: float, args: argparse.Namespace) -> None:
    """Print counts by outcome, throughput and latency percentiles."""
    outcomes = Counter(outcome for outcome, _ in results)
    answered = sum(n for outcome, n in outcomes.items() if isinstance(outcome, int))
    ok = np.array([seconds for outcome, seconds in results if outcome == 200])
    print(f"{args.clients} clients, {elapsed:.1f} s, {args.rows} candles, {args.samples} samples x "
          f"{args.horizon} h, {args.histories} history(ies), seeds: {args.seeds or 'all distinct'}")
    print(f"requests {len(results)}, answered {answered} ({'all' if answered == len(results) else 'NOT all'}), "
          f"by status {dict(sorted(outcomes.items(), key=str))}")
    print(f"throughput {len(ok) / elapsed:.2f} forecasts/s ({len(results) / elapsed:.2f} answers/s)")
    if len(ok):
        print(f"latency of 200s: p50 {np.percentile(ok, 50):.2f} s, p99 {np.percentile(ok, 99):.2f} s, "
              f"max {ok.max():.2f} s")

