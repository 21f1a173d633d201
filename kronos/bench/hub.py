"""How soon a forecast says the Hugging Face hub cannot be reached, when the weights are not cached.

    python -m kronos.bench hub

Runs `python -m kronos forecast --model mini` against a hub address on loopback that refuses connections,
and one that accepts them and never answers (a firewall dropping packets), with an empty cache; prints the
seconds until the command exits with its message (target: within 10 s), the process start included.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

from kronos.engine.synthetic import random_walk

TARGET_S = 10.0


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print("| hub | seconds to the message | target (s) | message |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        candles = os.path.join(folder, "candles.csv")
        random_walk(64).to_csv(candles, index=False)
        for name, listening in (("refuses connections", False), ("never answers", True)):
            with socket.socket() as listener:
                listener.bind(("127.0.0.1", 0))
                if listening:
                    listener.listen()
                env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HOME": os.path.join(folder, name),
                       "HF_ENDPOINT": f"http://127.0.0.1:{listener.getsockname()[1]}"}
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "kronos", "forecast", "--csv", candles, "--model", "mini"],
                                      capture_output=True, text=True, env=env, timeout=300)
                seconds = time.perf_counter() - started
            print(f"| {name} | {seconds:.1f} | <= {TARGET_S:g} | {done.stderr.strip()[:90]}... |")
