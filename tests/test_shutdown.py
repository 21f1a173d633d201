"""Clean shutdown: batching and job threads end when closed (a model leaving the dashboard's cache, the interpreter's
exit), kept errors hold no frames, and the dashboard's processes exit 0 (an AppTest run, `streamlit run` + SIGTERM)."""

from __future__ import annotations

import asyncio
import gc
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest
import websockets
from app_server import serve
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from kronos.cancellation import check_current
from kronos.errors import InvalidInputError, WorkCancelledError
from kronos.serving.batching import Batcher
from kronos.serving.jobs import Jobs
from kronos.serving.pieces import Yielding

ROOT = Path(__file__).resolve().parents[1]
PARITY = Path(__file__).parent / "fixtures" / "kronos_parity"


class Slow:
    """A ForecastSource double whose forecasts take 10,000 steps of a millisecond each (so they are cut short)."""

    name, max_context, fingerprint = "slow", 128, "0"

    def __init__(self):
        self.entered = threading.Event()

    def check_arguments(self, *arguments) -> None:
        pass

    def forecast_many(self, histories, *, progress=None, **settings):
        self.entered.set()
        for step in range(1, 10_001):
            progress(step, 10_000)
            time.sleep(0.001)
        return [None] * len(histories)


def in_thread(call) -> tuple[threading.Thread, list]:
    """Run `call` in a thread; the list gets its result or its exception."""
    outcome: list = []

    def run():
        try:
            outcome.append(call())
        except Exception as error:  # noqa: BLE001 - the test looks at it
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_closed_batcher_ends_its_thread_and_every_request_hears_why(parity_input):
    source = Slow()
    batcher = Batcher(source, window_s=0)
    running, first = in_thread(lambda: batcher.forecast_many([parity_input]))
    assert source.entered.wait(30)
    queued, second = in_thread(lambda: batcher.forecast_many([parity_input]))  # alone: waits behind the first
    time.sleep(0.1)
    worker = batcher._worker
    batcher.close()
    for thread in (running, queued):
        thread.join(30)
    assert not worker.is_alive() and worker not in threading.enumerate()
    for outcome in (first, second):
        assert isinstance(outcome[0], WorkCancelledError) and "unloaded" in str(outcome[0])
    with pytest.raises(WorkCancelledError, match="unloaded"):
        batcher.forecast(parity_input)
    batcher.close()  # again: nothing


def test_a_model_leaving_the_dashboards_cache_has_its_batching_thread_ended(store, parity_input, monkeypatch,
                                                                             tmp_path):
    from ui import loaders

    monkeypatch.setenv("KRONOS_ALLOW_ANY_MODEL", "1")
    loaders.load_forecaster.clear()
    models = []
    for number in range(3):  # the cache keeps two
        shutil.copytree(PARITY, tmp_path / str(number))
        models.append((str(tmp_path / str(number) / "model"), str(tmp_path / str(number) / "tokenizer")))
    first = loaders.load_forecaster(*models[0])
    first.forecast(parity_input, horizon=2, samples=2)
    worker = first._worker
    assert worker.is_alive()
    for model in models[1:]:
        loaders.load_forecaster(*model).forecast(parity_input, horizon=2, samples=2)
    worker.join(30)
    assert first.closed and not worker.is_alive()
    kept = [loaders.load_forecaster(*model) for model in models[1:]]  # still cached, still serving
    assert not any(b.closed for b in kept) and all(b._worker.is_alive() for b in kept)
    loaders.load_forecaster.clear()
    assert all(b.closed and not b._worker.is_alive() for b in kept)


def test_closed_jobs_end_their_thread_the_running_one_cancelled_at_its_next_step(parity_input):
    source = Slow()
    batcher, jobs = Batcher(source, window_s=0), Jobs()
    running = jobs.start("running", lambda progress, publish: Yielding(batcher).forecast_many([parity_input] * 2))
    assert source.entered.wait(30)
    waiting = jobs.start("waiting", lambda progress, publish: "never")
    threads = jobs.threads
    assert len(threads) == 1  # the running job's; the waiting one has none yet
    jobs.close()
    assert not any(t.is_alive() for t in threads) and not jobs.threads and running.done and waiting.done
    assert running.cancelled and waiting.cancelled
    with pytest.raises(WorkCancelledError):
        jobs.start("later", lambda progress, publish: "never")
    batcher.close()


def test_a_cancelled_job_is_started_afresh_when_asked_for_again():
    jobs, started = Jobs(), threading.Event()

    def work(progress, publish):
        started.set()
        while True:
            check_current()  # as a forecast's every step
            time.sleep(0.001)

    job = jobs.start("a", work)
    assert started.wait(30)
    job.cancel()
    assert job.wait(30) and job.cancelled
    again = jobs.start("a", lambda progress, publish: "done")
    assert again is not job and again.wait(30) and again.result() == "done"
    jobs.close()


class Big:
    """Something a failing computation holds in a local variable (as a forecast holds its tensors)."""


def test_kept_errors_hold_no_frames_of_the_work_that_failed(parity_input):
    held: list[weakref.ref] = []

    def failing(*args, **kwargs):
        big = Big()
        held.append(weakref.ref(big))
        raise InvalidInputError("no good")

    class Failing(Slow):
        forecast_many = staticmethod(failing)

    batcher = Batcher(Failing())
    with pytest.raises(InvalidInputError):
        batcher.forecast(parity_input)
    job = Jobs().start("failing", lambda progress, publish: failing())
    assert job.wait(30) and isinstance(job._error, InvalidInputError)
    gc.collect()
    assert len(held) == 2 and all(ref() is None for ref in held)  # the batcher's last request and the job keep none
    batcher.close()


CHILD = """
import atexit, os, sys, threading
def threads_left():  # registered first, so it runs last of the exit hooks
    left = [t.name for t in threading.enumerate() if t.name.startswith("kronos-")]
    if left:
        print("threads alive at exit:", left, flush=True)
        os._exit(3)
atexit.register(threads_left)
sys.path[:0] = [{root!r}, {tests!r}]
from app_server import offline
from kronos.data import market
from kronos.data.store import CandleStore
from kronos.engine.synthetic import random_walk
market.make_exchange = offline
CandleStore().merge(random_walk(600, seed=3), "binance", "BTC/USDT", "1h")
from streamlit.testing.v1 import AppTest
app = AppTest.from_file({dashboard!r}, default_timeout=60)
app.query_params.update(lookback="64", horizon="6", samples="8", hour_idx="4")
app.run()
assert not app.exception, [e.value for e in app.exception]
from ui import loaders
assert any(not job.done for job in loaders.calibrations()._jobs.values()), "no calibration running at exit"
print("ran", flush=True)
"""


def test_an_apptest_process_exits_0_with_a_calibration_running_every_time(tmp_path):
    env = {"KRONOS_MODEL": str(PARITY / "model"), "KRONOS_TOKENIZER": str(PARITY / "tokenizer"),
           "KRONOS_STORE": str(tmp_path / "candles.sqlite"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    code = CHILD.format(root=str(ROOT), tests=str(ROOT / "tests"), dashboard=str(ROOT / "dashboard.py"))
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "ran" in done.stdout, (done.returncode, done.stdout, done.stderr[-3000:])


async def run_session(url: str, query: str, timeout_s: float = 120) -> None:
    """Open a session of the dashboard at `url` as a browser would (its websocket) and run the script once."""
    async with websockets.connect(url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"],
                                  max_size=2**26) as socket:
        message = BackMsg()
        message.rerun_script.query_string = query
        await socket.send(message.SerializeToString())
        while True:
            answer = ForwardMsg()
            answer.ParseFromString(await asyncio.wait_for(socket.recv(), timeout_s))
            if answer.WhichOneof("type") == "script_finished":
                return


def test_streamlit_run_stopped_with_sigterm_exits_0_every_time(tmp_path):
    from kronos.data.store import CandleStore
    from kronos.engine.synthetic import random_walk

    for number in range(3):
        folder = tmp_path / str(number)
        folder.mkdir()
        with serve(folder, exchange="offline") as server:
            CandleStore(folder / "candles.sqlite").merge(random_walk(600, seed=3), "binance", "BTC/USDT", "1h")
            asyncio.run(run_session(server.url, "lookback=64&horizon=6&samples=8&hour_idx=4"))  # a calibration starts
            assert "loaded model" in server.log_text()
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(60) == 0, server.log_text()[-3000:]
