"""`python -m kronos serve`: the HTTP API on uvicorn, the model loaded once at start-up."""

from __future__ import annotations

import argparse

from kronos.cli.options import add_model_options, model_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Address, model, pool size and deadlines."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_model_options(parser)
    parser.add_argument("--workers", type=int, default=16,
                        help="requests handled at once; their forecasts run in shared batches (default 16)")
    parser.add_argument("--queue-size", type=int, default=32, help="requests waiting before 429 (default 32)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a request waits for its forecast")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="compile the decode step at start-up (slow to start, faster after; env KRONOS_COMPILE)")
    parser.add_argument("--exchange-timeout", type=float, default=10.0,
                        help="seconds to wait for the exchanges before answering from the local store (default 10)")


def run(args: argparse.Namespace) -> int:
    """Load the model, then answer HTTP on --host:--port until interrupted."""
    import uvicorn

    from kronos.api import create_app
    from kronos.service import ForecastService

    service = ForecastService(args.workers, args.queue_size, args.timeout)
    app = create_app(model_from(args), max_context=args.max_context, service=service,
                     exchange_deadline=args.exchange_timeout, compile=args.compile)
    uvicorn.run(app, host=args.host, port=args.port)
    return 0
