"""Start the dashboard for the browser test and the load script, with exchanges that never touch the network.

    python tests/app_server.py --port 8599 [--exchange recorded|offline]

`recorded`: Binance answers hourly BTC/USDT klines in its recorded response shape (strings, close time,
quote volume in field 7) from a synthetic random walk that ends at the current hour; the other exchanges
are unreachable. `offline`: every exchange is unreachable, so the app answers from the local store.
Set KRONOS_MODEL, KRONOS_TOKENIZER and KRONOS_STORE before starting it, or use `serve()`, which starts
it with Kronos-mini's shapes (random weights) and a fresh store in a folder.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ccxt
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kronos.data import market  # noqa: E402  (after the path is set)
from kronos.engine.synthetic import random_walk  # noqa: E402

HOUR_MS = 3_600_000
REAL_MAKE_EXCHANGE = market.make_exchange


class RecordedBinance:
    """Binance's klines for BTC/USDT, answered from a random walk of `rows` hours ending at the current hour."""

    def __init__(self, rows: int = 2000):
        frame = random_walk(rows)
        now = market.utc_now().floor("h")
        frame["timestamps"] = pd.date_range(end=now, periods=rows, freq="h")
        ms = frame["timestamps"].astype("datetime64[ms]").astype("int64")
        self.rows = {int(t): row for t, row in zip(ms, frame.itertuples(index=False))}

    def klines(self, params: dict) -> list[list]:
        """Raw klines opening in [startTime, endTime], at most `limit`, as Binance sends them."""
        start, end = params["startTime"], params["endTime"]
        found = [t for t in range(start + -start % HOUR_MS, end + 1, HOUR_MS) if t in self.rows]
        return [[t, *(str(getattr(self.rows[t], c)) for c in ("open", "high", "low", "close", "volume")),
                 t + HOUR_MS - 1, str(self.rows[t].amount), 100, "0", "0", "0"]
                for t in found[:params["limit"]]]

    def exchange(self, name: str, timeout: float) -> ccxt.Exchange:
        """make_exchange's replacement: Binance answers from the recording, the others fail as if offline."""
        exchange = REAL_MAKE_EXCHANGE(name, timeout)
        if name != "binance":
            return offline(name, timeout)
        exchange.set_markets([{"id": "BTCUSDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT",
                               "baseId": "BTC", "quoteId": "USDT", "type": "spot", "spot": True, "active": True}])
        exchange.load_markets = lambda *args, **kwargs: exchange.markets
        exchange.publicGetKlines = self.klines
        return exchange


def offline(name: str, timeout: float) -> ccxt.Exchange:
    """An exchange whose every request fails as with no network."""
    exchange = REAL_MAKE_EXCHANGE(name, timeout)

    def unreachable(*args, **kwargs):
        raise ccxt.NetworkError(f"{name}: no network in this test")

    exchange.load_markets = unreachable
    return exchange


def demo_checkpoint(directory: Path) -> dict[str, str]:
    """Kronos-mini's shapes with random weights (32 MB) under `directory`, made once; the environment naming them."""
    from kronos.engine.synthetic import random_checkpoint

    if not (directory / "model" / "model.safetensors").exists():
        return random_checkpoint(directory)
    return {"KRONOS_MODEL": str(directory / "model"), "KRONOS_TOKENIZER": str(directory / "tokenizer")}


@dataclass
class Server:
    """A running dashboard: its address, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serve(directory: Path, exchange: str = "recorded", start_timeout_s: float = 120) -> Iterator[Server]:
    """Start this launcher with the demo checkpoint and a store under `directory`; stop it on exit."""
    env = {**os.environ, **demo_checkpoint(directory), "KRONOS_STORE": str(directory / "candles.sqlite"),
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    port, log = free_port(), directory / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, __file__, "--port", str(port), "--exchange", exchange],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                urllib.request.urlopen(server.url + "/_stcore/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start:\n{server.log_text()[-3000:]}") from None
                time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str] | None = None) -> None:
    """Patch the exchanges, then hand over to `streamlit run dashboard.py` in this process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--exchange", choices=("recorded", "offline"), default="recorded")
    args = parser.parse_args(argv)
    market.make_exchange = RecordedBinance().exchange if args.exchange == "recorded" else offline
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(ROOT / "dashboard.py"), "--server.port", str(args.port),
                "--server.address", "127.0.0.1", "--server.headless", "true",
                "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    cli.main()


if __name__ == "__main__":
    main()
