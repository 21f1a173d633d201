"""The HTTP API's resident memory across big backtests, a cancelled one and calibrations: before, after each, peak.

It builds the app in this process (kronos.api.create_app, a scratch store), warms it up with a small forecast, a
small backtest and a small calibration (lazy imports, first allocations), then posts `--runs` backtests of synthetic
candles, each with a new seed (so none reuses stored paths), one more whose client goes away after `--cancel-after`
seconds (a disconnect, through the app's own disconnect watch), and `--calibrations` calibrated custom forecasts, and
prints the process's resident memory (VmRSS) at the start and after each one. A probe once asked for 500 origins, 100
paths, 48 h; the API's work budget (kronos.settings.MAX_REQUEST_WORK) refuses that with 422 before any work, so the
default is the biggest 500-origin, 48 h backtest it accepts: 12 paths (288,000 generated candle steps). The model:
`--model/--tokenizer` checkpoint directories, else a preset's shapes with random weights (`--preset`, default mini).

    python -m kronos.bench memory [--runs 3] [--origins 500] [--samples 12] [--horizon 48] [--lookback 64]
                                  [--cancel-after 10] [--calibrations 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from kronos.engine.synthetic import random_forecaster, random_walk
from kronos.evaluation.combined import calibration_rows

MIB = 2**20


def resident() -> dict[str, float]:
    """This process's resident memory now and its peak, in MiB (Linux: /proc/self/status)."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024 / MIB
    return {"rss_mib": round(found["VmRSS"], 1), "peak_mib": round(found["VmHWM"], 1)}


def backtest_body(origins: int, samples: int, horizon: int, lookback: int, seed: int) -> dict:
    """A /backtest body: just enough synthetic hourly candles for `origins` origins one row apart."""
    frame = random_walk(lookback + horizon + origins - 1, seed=seed)
    return {"timestamps": frame["timestamps"].astype(str).tolist(),
            **{c: frame[c].tolist() for c in ("open", "high", "low", "close", "volume", "amount")},
            "origins": origins, "every": 1, "samples": samples, "horizon": horizon, "lookback": lookback,
            "seed": seed}


def calibration_body(horizon: int, lookback: int, seed: int) -> dict:
    """A /predict_custom body asking for the calibrated block, with the rows its whole calibration reads."""
    frame = random_walk(calibration_rows(lookback, horizon), seed=seed)
    return {"timestamps": frame["timestamps"].astype(str).tolist(),
            **{c: frame[c].tolist() for c in ("open", "high", "low", "close", "volume", "amount")},
            "horizon": horizon, "lookback": lookback, "seed": seed, "calibrate": True}


async def post_then_leave(app, path: str, body: dict, after_s: float) -> None:
    """POST `body` to the ASGI `app` as a client that closes its connection after `after_s` seconds."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        await asyncio.sleep(after_s)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        pass

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}
    await app(scope, receive, send)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--origins", type=int, default=500)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--horizon", type=int, default=48)
    parser.add_argument("--lookback", type=int, default=64)
    parser.add_argument("--cancel-after", type=float, default=10.0, help="seconds before the client of the "
                        "cancelled backtest goes away")
    parser.add_argument("--calibrations", type=int, default=4)
    parser.add_argument("--calibration-horizon", type=int, default=24)
    parser.add_argument("--model", help="checkpoint directory (default: random weights of --preset)")
    parser.add_argument("--tokenizer", help="tokenizer checkpoint directory, with --model")
    parser.add_argument("--preset", default="mini")
    return parser


def _report(after: str, started: float | None = None, **fields) -> dict[str, float]:
    """Print one measurement line (the seconds since `started`, if given) and return the memory figures."""
    memory = resident()
    timing = {} if started is None else {"seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps({"after": after, **fields, **timing, **memory}), flush=True)
    return memory


def _backtests(client, app, service, args: argparse.Namespace) -> None:
    """The big backtests, then one more whose client leaves after `--cancel-after` seconds."""
    for run in range(1, args.runs + 1):
        started = time.perf_counter()
        answer = client.post("/backtest", json=backtest_body(args.origins, args.samples, args.horizon,
                                                             args.lookback, seed=run))
        _report(f"backtest {run}", started, status=answer.status_code)
    started = time.perf_counter()
    client.portal.call(post_then_leave, app, "/backtest", backtest_body(
        args.origins, args.samples, args.horizon, args.lookback, seed=args.runs + 1), args.cancel_after)
    while service.unfinished:  # the cancelled job stops at its next step
        time.sleep(0.05)
    time.sleep(1.0)  # and the batch it was in
    _report("cancelled backtest", started)


def _calibrations(client, args: argparse.Namespace) -> None:
    """The calibrated custom forecasts (each answers 202 while its calibration runs behind), then the same requests
    again until every one answers calibrated: the calibrations have ended."""
    bodies = [calibration_body(args.calibration_horizon, args.lookback, seed=100 + run)
              for run in range(1, args.calibrations + 1)]
    for run, body in enumerate(bodies, 1):
        started = time.perf_counter()
        _report(f"calibration {run}", started, status=client.post("/predict_custom", json=body).status_code)
    started = time.perf_counter()
    while bodies:
        bodies = [body for body in bodies if client.post("/predict_custom", json=body).status_code == 202]
        time.sleep(2.0 if bodies else 0)
    _report("calibrations ended", started)


def main(argv: list[str] | None = None) -> None:
    """Run the backtests and calibrations and print one JSON line per measurement, then the growth."""
    args = _parser().parse_args(argv)
    from fastapi.testclient import TestClient

    from kronos.api import create_app
    from kronos.data.store import CandleStore
    from kronos.engine import Forecaster
    from kronos.serving.service import ForecastService

    service = ForecastService(timeout=24 * 3600)  # the backtests finish however slow the machine
    forecaster = (Forecaster.from_pretrained(args.model, args.tokenizer) if args.model
                  else random_forecaster(args.preset))
    store = CandleStore(Path(tempfile.mkdtemp()) / "candles.sqlite")
    app = create_app(forecaster=forecaster, store=store, service=service)
    with TestClient(app) as client:
        start = _report("start")
        small = backtest_body(8, 4, 4, args.lookback, seed=0)
        for path in ("/predict_custom", "/backtest"):
            client.post(path, json=small).raise_for_status()
        client.post("/predict_custom", json=calibration_body(2, args.lookback, seed=0)).raise_for_status()
        before = _report("warm-up")
        _backtests(client, app, service, args)
        _calibrations(client, args)
        after = resident()
    print(f"resident memory: {start['rss_mib']:.0f} MiB at the start, {before['rss_mib']:.0f} MiB after the warm-up "
          f"(a small forecast, backtest and calibration), {after['rss_mib']:.0f} MiB after {args.runs} "
          f"backtests ({args.origins} origins, {args.samples} paths, {args.horizon} h), a cancelled one and "
          f"{args.calibrations} calibrations, ended: {after['rss_mib'] - start['rss_mib']:+.0f} MiB from the start, "
          f"{after['rss_mib'] - before['rss_mib']:+.0f} MiB from the warm-up; "
          f"peak {after['peak_mib']:.0f} MiB")
