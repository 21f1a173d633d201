"""`python -m kronos serve`: the HTTP API on uvicorn, the model loaded once at start-up."""

from __future__ import annotations

import argparse
import dataclasses

from kronos.cli.options import add_dataclass_options, add_model_options, model_from
from kronos.settings import ServerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Address, model, pool size and deadlines (ServerSettings' defaults and help texts)."""
    add_dataclass_options(parser, ServerSettings, ("host", "port"))
    add_model_options(parser)
    add_dataclass_options(parser, ServerSettings, ("workers", "queue_size", "timeout", "exchange_timeout",
                                                     "body_timeout", "calibration_wait"))
    parser.add_argument("--compile", action="store_true", default=None,
                        help="compile the decode step at start-up (slow to start, faster after; env KRONOS_COMPILE)")


def server_from(args: argparse.Namespace) -> ServerSettings:
    """The checked server settings; InvalidInputError naming each value out of range."""
    return ServerSettings(**{field.name: getattr(args, field.name) for field in dataclasses.fields(ServerSettings)})


def run(args: argparse.Namespace) -> int:
    """Load the model, then answer HTTP on --host:--port until interrupted."""
    import uvicorn

    from kronos.api import create_app

    server = server_from(args)
    app = create_app(model_from(args), max_context=args.max_context, server=server, compile=args.compile)
    uvicorn.run(app, host=server.host, port=server.port)
    return 0
