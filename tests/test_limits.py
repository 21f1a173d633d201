"""Bounded resources: the store's cap on backtest paths, cancelled work that stops and writes nothing more."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request

from kronos.cancellation import DisconnectWatch, Token, client_gone, running
from kronos.data.store import CandleStore
from kronos.engine.synthetic import random_walk
from kronos.errors import ServiceTimeoutError, WorkCancelledError
from kronos.evaluation.backtest import KEPT_EVERY, BacktestSettings, run_backtest
from kronos.serving.batching import Batcher
from kronos.serving.service import ForecastService
from kronos.settings import Environment, ForecastSettings, ServerSettings

PATH_BYTES = 4 * 3 * 8  # one origin's closes: 4 samples x 3 hours of float64


def paths(*keys: str) -> dict[str, tuple[np.ndarray, float | None]]:
    return {key: (np.full((4, 3), float(i)), None) for i, key in enumerate(keys)}


def kept(store: CandleStore) -> tuple[list[str], int]:
    """The stored origins' keys (oldest first) and their paths' bytes."""
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT key, LENGTH(closes) FROM backtest_paths ORDER BY used, key").fetchall()
    return [key for key, _ in rows], sum(size for _, size in rows)


def count(store: CandleStore) -> int:
    store.check()  # the store sets its file up when first used
    with sqlite3.connect(store.path) as db:
        return db.execute("SELECT COUNT(*) FROM backtest_paths").fetchone()[0]


def test_writes_beyond_the_cap_evict_the_least_recently_used_paths(tmp_path):
    store, limit = CandleStore(tmp_path / "s.sqlite"), 5 * PATH_BYTES
    store.put_backtest_paths(paths("a", "b", "c"), limit_bytes=limit)
    store.put_backtest_paths(paths("d", "e"), limit_bytes=limit)
    assert kept(store) == (["a", "b", "c", "d", "e"], limit)
    assert set(store.backtest_paths(["a"])) == {"a"}  # read: now the most recently used
    store.put_backtest_paths(paths("f", "g"), limit_bytes=limit)
    keys, size = kept(store)
    assert size <= limit and keys == ["d", "e", "a", "f", "g"]  # b and c, the oldest, went first


def test_the_cap_comes_from_the_environment(tmp_path, monkeypatch):
    assert Environment.read({}).store_paths_mb == 300
    assert Environment.read({"KRONOS_STORE_PATHS_MB": "2"}).store_paths_mb == 2
    monkeypatch.setenv("KRONOS_STORE_PATHS_MB", "0")
    store = CandleStore(tmp_path / "s.sqlite")
    store.put_backtest_paths(paths("a"))
    assert kept(store) == ([], 0)


def test_a_store_made_before_the_cap_gets_its_used_column(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE backtest_paths (key TEXT PRIMARY KEY, closes BLOB NOT NULL, samples INTEGER NOT NULL, "
                   "vol_prob REAL) WITHOUT ROWID")
        db.execute("INSERT INTO backtest_paths VALUES ('old', ?, 4, NULL)", (np.zeros((4, 3)).tobytes(),))
    store = CandleStore(path)
    store.put_backtest_paths(paths("new"), limit_bytes=PATH_BYTES)
    assert kept(store)[0] == ["new"]


def test_a_cancelled_job_writes_no_paths():
    token = Token()
    token.cancel()
    with running(token), pytest.raises(WorkCancelledError):
        CandleStore.put_backtest_paths(None, paths("a"))  # checked before the store is touched


def test_a_backtest_past_its_deadline_stops_writing_and_frees_its_worker(forecaster, tmp_path):
    store, batcher = CandleStore(tmp_path / "s.sqlite"), Batcher(forecaster)
    frame = random_walk(40 + 4 + 8 * KEPT_EVERY)
    settings = BacktestSettings(ForecastSettings(horizon=4, samples=4, lookback=40), origins=8 * KEPT_EVERY, every=1)
    service, ended = ForecastService(workers=1, queue_size=0, timeout=60), threading.Event()

    def job():
        try:
            return run_backtest(batcher, frame, settings, store=store)
        finally:
            ended.set()

    gone = threading.Event()
    threading.Thread(target=lambda: (_wait_for(lambda: count(store) >= KEPT_EVERY), gone.set()), daemon=True).start()
    with pytest.raises(WorkCancelledError):  # the client went away once the first part was kept
        service.run("backtest", job, cancel=gone)
    assert ended.wait(10)
    written = count(store)
    assert KEPT_EVERY <= written < 8 * KEPT_EVERY
    time.sleep(0.5)
    assert count(store) == written  # nothing more after it stopped
    assert service.run("next", lambda: "free") == "free"  # the one worker is free again
    service.timeout = 0.3
    with pytest.raises(ServiceTimeoutError):
        service.run("backtest again", lambda: run_backtest(batcher, random_walk(len(frame), seed=1), settings,
                                                             store=store))
    after_deadline, service.timeout = count(store), 60
    started = time.monotonic()
    assert service.run("then", lambda: "free") == "free"  # the timed-out job stopped and freed the worker
    assert time.monotonic() - started < 10 and count(store) == after_deadline


def test_a_cancelled_request_in_a_shared_batch_leaves_the_others_their_paths(forecaster, parity_input):
    batcher, token, answers = Batcher(forecaster, window_s=2), Token(), {}
    history = parity_input.iloc[:100]
    token.cancel()  # its caller has gone: it leaves at once, its request queued with the other one

    def leaving() -> None:
        with running(token):
            try:
                batcher.forecast(history, horizon=6, samples=3, seed=1)
            except WorkCancelledError as error:
                answers["left"] = error

    threads = [threading.Thread(target=leaving),
               threading.Thread(target=lambda: answers.update(stayed=batcher.forecast(history, horizon=6, samples=5,
                                                                                       seed=2)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert isinstance(answers["left"], WorkCancelledError) and batcher.batches == 1
    alone = forecaster.forecast(history, horizon=6, samples=5, seed=2)
    assert np.array_equal(answers["stayed"].paths, alone.paths)


def test_a_batch_whose_every_request_is_cancelled_stops_at_the_next_step(forecaster, parity_input):
    steps = []

    class Counting:
        def __getattr__(self, name):
            return getattr(forecaster, name)

        def forecast_many(self, *args, progress, **kwargs):
            def counted(step: int, total: int) -> None:
                steps.append(step)
                token.cancel()  # the caller goes away during the first step
                progress(step, total)
            return forecaster.forecast_many(*args, progress=counted, **kwargs)

    batcher, token = Batcher(Counting()), Token()
    with running(token), pytest.raises(WorkCancelledError):
        batcher.forecast(parity_input, horizon=20, samples=2, seed=1)
    time.sleep(0.3)
    assert steps == [1]


def _wait_for(condition, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)


PEAK_SCRIPT = """
import sys
from pathlib import Path
from kronos.data.reading import read_csv_bytes

def status(name):
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(name))
    return int(line.split()[1]) // 1024

data = Path(sys.argv[1]).read_bytes()
before = status("VmRSS")
result = read_csv_bytes(memoryview(data))
print(before, status("VmHWM"), len(result.frame) if result.frame is not None else result.errors)
"""


def big_csv(rows: int) -> bytes:
    """Minute candles with ten decimals: about 127 bytes a row."""
    rng = np.random.default_rng(0)
    close, volume = 60000 * np.exp(np.cumsum(rng.normal(0, 0.006, rows))), rng.lognormal(7, 0.5, rows)
    stamps = np.datetime_as_string(np.datetime64("1990-01-01T00:00") + np.arange(rows) * np.timedelta64(1, "m"))
    lines = [f"{s},{c * 0.999:.10f},{c * 1.003:.10f},{c * 0.997:.10f},{c:.10f},{v:.10f},{v * c:.10f}"
             for s, c, v in zip(stamps.tolist(), close.tolist(), volume.tolist())]
    return ("timestamps,open,high,low,close,volume,amount\n" + "\n".join(lines) + "\n").encode()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc (Linux)")
def test_a_60_mb_upload_is_read_within_a_bounded_memory(tmp_path):
    rows = 500_000  # the most a file may hold (kronos.data.reading.MAX_ROWS)
    path = tmp_path / "big.csv"
    path.write_bytes(big_csv(rows))
    size_mib = path.stat().st_size / 2**20
    assert 58 <= size_mib <= 64
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True, text=True, check=True,
                          timeout=300, cwd=Path(__file__).parents[1])
    before, peak, read = done.stdout.split(maxsplit=2)
    assert read.strip() == str(rows)
    assert int(peak) - int(before) < 5 * size_mib  # was 12 times the file's size (711 MiB for 60 MiB)


def test_a_client_that_closes_its_connection_is_noticed_while_its_request_runs():
    seen = {}

    async def app(scope, receive, send):  # reads the body, then waits for its work as a route would
        seen["body"] = (await receive())["body"]
        seen["noticed"] = await asyncio.to_thread(client_gone(scope).wait, 5)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def client():
        messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.sleep(0.1)  # the client hangs up while the work goes on
            return {"type": "http.disconnect"}

        async def send(message):
            pass

        await DisconnectWatch(app)({"type": "http"}, receive, send)

    asyncio.run(client())
    assert seen == {"body": b"{}", "noticed": True}
    assert not client_gone({}).is_set()  # without the middleware: never gone


def test_a_backtest_stops_writing_when_its_http_client_hangs_up(forecaster, tmp_path):
    store, batcher, service = CandleStore(tmp_path / "s.sqlite"), Batcher(forecaster), ForecastService(timeout=60)
    frame = random_walk(40 + 4 + 8 * KEPT_EVERY)
    settings = BacktestSettings(ForecastSettings(horizon=4, samples=4, lookback=40), origins=8 * KEPT_EVERY, every=1)
    app, ended = FastAPI(), threading.Event()
    app.add_middleware(DisconnectWatch)

    @app.post("/backtest")
    def backtest(request: Request) -> dict:  # as kronos.api's route, wired with cancel=client_gone(request.scope)
        def job():
            try:
                return run_backtest(batcher, frame, settings, store=store)
            finally:
                ended.set()
        service.run("backtest", job, cancel=client_gone(request.scope))
        return {}

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    _wait_for(lambda: server.started)
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"POST /backtest HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
            _wait_for(lambda: count(store) >= KEPT_EVERY)
        assert ended.wait(10), count(store)  # the client hung up: the work stopped
        written = count(store)
        time.sleep(0.5)
        assert KEPT_EVERY <= count(store) == written < 8 * KEPT_EVERY
    finally:
        server.should_exit = True


def test_a_long_job_gives_the_freed_memory_back(monkeypatch):
    released = []
    monkeypatch.setattr("kronos.serving.service.release_memory", lambda: released.append(1))
    monkeypatch.setattr("kronos.serving.service.RELEASE_AFTER_S", 0.05)
    service = ForecastService(workers=1)
    service.run("short", lambda: None)
    assert released == []
    service.run("long", lambda: time.sleep(0.1))
    assert released == [1]  # the heaps trimmed (kronos.process.release_memory), as after a big backtest


def test_a_body_trickled_one_byte_a_second_is_cut_off_with_408(forecaster, tmp_path):
    from kronos.api import create_app

    app = create_app(forecaster=forecaster, store=CandleStore(tmp_path / "s.sqlite"),
                     server=ServerSettings(body_timeout=1.5))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    _wait_for(lambda: server.started)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"POST /predict_custom HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                           b"content-length: 1000\r\n\r\n")
            started, answer = time.monotonic(), b""
            client.setblocking(False)
            while time.monotonic() - started < 8 and b"\r\n\r\n" not in answer:
                try:
                    client.send(b" ")  # one byte at a time, as a slow client would
                except OSError:
                    break
                time.sleep(0.25)
                try:
                    answer += client.recv(65536)
                except BlockingIOError:
                    pass
            waited = time.monotonic() - started
            client.setblocking(True)
            while chunk := client.recv(65536):  # the server closes the connection after its answer
                answer += chunk
    finally:
        server.should_exit = True
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]  # was: kept open as long as bytes came
    assert 1.4 <= waited < 4 and b"did not arrive within 1.5 s" in answer
