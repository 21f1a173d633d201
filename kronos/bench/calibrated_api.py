"""`GET /predict_api?calibrate=true` on a fresh store: alone, four clients at once, and a plain forecast meanwhile.

    python -m kronos.bench calibrated-api [--rows 3300] [--csv candles.csv.gz] [--clients 4] [--deadline 900]
                                          [--calibration quick|full]

It starts the API (`kronos.api.create_app` on uvicorn, in a child process) with the parity checkpoint
(tests/fixtures/kronos_parity, or --model/--tokenizer) and a fresh store of the last `--rows` hourly candles of
--csv (e.g. the shared BTC/USDT 1h candles, stored as Binance BTC/USDT 1h; every exchange offline,
so the API answers from the store). Then, in seconds:

1. a plain forecast alone (the median of three, each with its own seed);
2. one `calibrate=true` request at the default settings until its answer is calibrated (target: <= 10 s);
3. `--clients` `calibrate=true` clients at once, each with its own temperature, each until a calibrated answer,
   while a plain forecast is sent over and over (target: its median <= 2x its time alone).

A client follows a 202, 429 or 503 with its Retry-After (1 s if none), to the Location header when one is given,
as a polite client does; every status it got is counted. An answer is calibrated when its `calibrated` block is a
combined forecast (a record), whether provisional or full: the table says which and on how many origins.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from kronos.bench.api import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
PARITY = ROOT / "tests" / "fixtures" / "kronos_parity"
TARGET_ALONE_S, TARGET_SLOWDOWN = 10.0, 2.0
WAITING = (202, 429, 503)  # answers that say "not yet": follow their Retry-After


@dataclass
class Outcome:
    """One client's way to a calibrated answer: seconds, every status met, and what it returned."""

    seconds: float | None = None
    statuses: Counter = field(default_factory=Counter)
    origins: int | None = None
    provisional: bool | None = None
    error: str | None = None


def serve(port: int, store: str, model: str, tokenizer: str) -> None:
    """The API on loopback with every exchange offline (the child process's whole work)."""
    import uvicorn

    from kronos.api import create_app
    from kronos.data import market
    from kronos.data.store import CandleStore
    from kronos.settings import ModelChoice

    market.make_exchange = _offline
    uvicorn.run(create_app(ModelChoice(model, tokenizer), store=CandleStore(store)), host="127.0.0.1", port=port,
                log_level="warning")


def _offline(name: str, timeout: float) -> SimpleNamespace:
    """An exchange listing BTC/USDT 1h whose every candle request fails at once, as with no network."""
    import ccxt

    def unreachable(*args, **kwargs):
        raise ccxt.NetworkError(f"{name}: offline in this benchmark")

    markets = {"BTC/USDT": {"id": "BTCUSDT", "symbol": "BTC/USDT"}}
    return SimpleNamespace(id=name, markets=markets, symbols=list(markets), timeframes={"1h": "1h"},
                           load_markets=lambda *a, **k: markets, publicGetKlines=unreachable, fetch_ohlcv=unreachable,
                           fetch_tickers=unreachable, rateLimit=50)


def start(port: int, store: Path, model: str, tokenizer: str) -> subprocess.Popen:
    """The server in a child process; returns once /health answers 200."""
    code = (f"from kronos.process import prepare; prepare(); from kronos.bench.calibrated_api import serve; "
            f"serve({port}, {str(store)!r}, {model!r}, {tokenizer!r})")
    return wait_healthy(subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "1"}), port)


def get(url: str, timeout: float) -> tuple[int, dict, dict]:
    """One GET: status, JSON body (empty if none) and headers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            body = json.loads(text or b"{}")
        except ValueError:
            body = {}
        return error.code, body, dict(error.headers)


def calibrated(base: str, query: dict, deadline: float) -> Outcome:
    """Ask `query` with calibrate=true until the answer is calibrated, following every "not yet" answer."""
    outcome, started = Outcome(), time.perf_counter()
    url = f"{base}/predict_api?{urllib.parse.urlencode({**query, 'calibrate': 'true'})}"
    while time.monotonic() < deadline:
        try:
            status, body, headers = get(url, timeout=max(1.0, deadline - time.monotonic()))
        except OSError as error:
            outcome.statuses[type(error).__name__] += 1
            continue
        outcome.statuses[status] += 1
        block = body.get("calibrated") if status == 200 else None
        if isinstance(block, dict) and "record" in block:
            outcome.seconds = time.perf_counter() - started
            outcome.origins, outcome.provisional = block["record"]["origins"], block["record"]["provisional"]
            return outcome
        if status == 200 and isinstance(block, dict) and block.get("unavailable"):
            outcome.error = f"not calibrated: {block['unavailable']}"
            return outcome
        if status not in WAITING and status != 200:
            outcome.error = f"{status}: {json.dumps(body)[:200]}"
            return outcome
        if "location" in {k.lower() for k in headers}:
            url = urllib.parse.urljoin(base + "/", next(v for k, v in headers.items() if k.lower() == "location"))
        time.sleep(min(float(headers.get("Retry-After", 1)), max(0.0, deadline - time.monotonic())))
    outcome.error = "no calibrated answer before the deadline"
    return outcome


def plain(base: str, seed: int) -> float:
    """Seconds for one plain forecast (its own seed); raises on an answer that is not 200."""
    started = time.perf_counter()
    status, body, _ = get(f"{base}/predict_api?seed={seed}", timeout=300)
    if status != 200:
        raise RuntimeError(f"a plain forecast answered {status}: {json.dumps(body)[:200]}")
    return time.perf_counter() - started


def concurrent(base: str, clients: int, deadline: float, choice: str) -> tuple[list[Outcome], list[float]]:
    """`clients` calibrating clients at once, each with its own temperature, and plain forecasts sent one after
    another until they are all done: their outcomes and the plain forecasts' seconds."""
    temperatures = [round(0.8 + 0.1 * i + (0.1 if i >= 2 else 0), 2) for i in range(clients)]  # 1.0 is calibrated
    outcomes: list[Outcome] = [Outcome() for _ in temperatures]

    def client(i: int) -> None:
        outcomes[i] = calibrated(base, {"temperature": temperatures[i], "calibration": choice}, deadline)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    meanwhile, seed = [], 5000
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        meanwhile.append(plain(base, seed := seed + 1))
    for thread in threads:
        thread.join()
    return outcomes, meanwhile


def fresh_store(folder: Path, csv: Path, rows: int) -> tuple[Path, int]:
    """A store of the last `rows` candles of `csv` as Binance BTC/USDT 1h: its path and how many it holds."""
    from kronos.data.store import CandleStore

    frame = pd.read_csv(csv, parse_dates=["timestamps"]).tail(rows).reset_index(drop=True)
    path = folder / "candles.sqlite"
    return path, CandleStore(path).merge(frame, "binance", "BTC/USDT", "1h")


def main(argv: list[str] | None = None) -> None:
    """Run the three measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3300, help="stored candles (default 3300)")
    parser.add_argument("--csv", type=Path, required=True, help="hourly candles in the engine's columns")
    parser.add_argument("--model", default=str(PARITY / "model"))
    parser.add_argument("--tokenizer", default=str(PARITY / "tokenizer"))
    parser.add_argument("--clients", type=int, default=4, help="concurrent calibrating clients (default 4)")
    parser.add_argument("--deadline", type=float, default=900, help="seconds each part may take (default 900)")
    parser.add_argument("--calibration", choices=("quick", "full"), default="quick",
                        help="quick (the API's default): done at the first usable (provisional) record; full: at the "
                             "full record")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not args.csv.exists():
        sys.exit(f"no candles at {args.csv}: give --csv")
    with tempfile.TemporaryDirectory() as folder:
        store, rows = fresh_store(Path(folder), args.csv, args.rows)
        server = start(port := free_port(), store, args.model, args.tokenizer)
        base = f"http://127.0.0.1:{port}"
        try:
            alone = statistics.median(plain(base, seed) for seed in (1, 2, 3))
            first = calibrated(base, {"calibration": args.calibration}, time.monotonic() + args.deadline)
            outcomes, meanwhile = concurrent(base, args.clients, time.monotonic() + args.deadline, args.calibration)
        finally:
            server.terminate()
            server.wait()
    report(rows, alone, first, outcomes, meanwhile, args)


def report(rows: int, alone: float, first: Outcome, outcomes: list[Outcome], meanwhile: list[float],
           args: argparse.Namespace) -> None:
    """Print the table (and write --json)."""
    def seconds(o: Outcome) -> str:
        return o.error if o.seconds is None else f"{o.seconds:.1f} ({'provisional' if o.provisional else 'full'}, " \
                                                  f"{o.origins} origins)"

    def statuses(o: Outcome) -> str:
        return ", ".join(f"{k}: {n}" for k, n in sorted(o.statuses.items(), key=str))

    during = statistics.median(meanwhile) if meanwhile else None
    print(f"/predict_api?calibrate=true&calibration={args.calibration}, parity checkpoint, a fresh store of {rows} "
          "hourly candles, default settings")
    print("| request | seconds to calibrated | target | answers by status |")
    print("|---|---|---|---|")
    print(f"| one client, fresh store | {seconds(first)} | <= {TARGET_ALONE_S:g} | {statuses(first)} |")
    for i, outcome in enumerate(outcomes):
        print(f"| concurrent client {i + 1} of {len(outcomes)} | {seconds(outcome)} | a calibrated answer | "
              f"{statuses(outcome)} |")
    slowdown = "n/a" if during is None else f"{during:.2f} s ({during / alone:.1f}x)"
    print(f"plain forecast alone: {alone:.2f} s (median of 3); while the {len(outcomes)} ran: {slowdown} (median of "
          f"{len(meanwhile)}; target <= {TARGET_SLOWDOWN:g}x)")
    if args.json:
        figures = {"rows": rows, "plain_alone_s": alone, "plain_meanwhile_s": meanwhile,
                   "first": first.__dict__, "concurrent": [o.__dict__ for o in outcomes]}
        args.json.write_text(json.dumps(figures, indent=2, default=str))
