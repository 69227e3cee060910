"""The command line: ``python -m tasks_app.simulator`` serves the simulator until stopped.

``make run`` (through ``manage.py runstudio``) starts it as its own process for demo mode.
Secrets are read from environment variables named on the command line, never from the
command line itself, where any user of the machine could read them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .config import SimulatorConfig
from .state import KlingSimulator


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tasks_app.simulator",
        description="Serve a local simulator of Kling's lip-sync API (the studio's demo mode).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--api-key", default="demo-key", help="the accepted Bearer API key")
    parser.add_argument("--access-key", help="accept JWTs issued for this access key ...")
    parser.add_argument(
        "--secret-key-env", metavar="NAME", help="... signed with the secret in this env variable"
    )
    parser.add_argument("--submitted-seconds", type=float, default=3.0)
    parser.add_argument("--processing-seconds", type=float, default=12.0)
    parser.add_argument("--create-latency", type=float, default=0.0)
    parser.add_argument("--request-latency", type=float, default=0.0)
    parser.add_argument("--concurrency-limit", type=int, default=None)
    parser.add_argument(
        "--webhook-secret-env",
        metavar="NAME",
        help="sign callbacks with the Standard Webhooks secret in this environment variable",
    )
    parser.add_argument("--public-url", help="base URL of result videos (default: own URL)")
    parser.add_argument("--prefix", default="", help='also serve the API under e.g. "/kling"')
    parser.add_argument(
        "--fetch-sources",
        action="store_true",
        help="download each task's video_url as Kling does, failing the task when it cannot",
    )
    parser.add_argument("--fetch-timeout", type=float, default=10.0)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _secret_from_env(parser_flag: str, name: str | None) -> str | None:
    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{parser_flag}: environment variable {name} is not set")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT or SIGTERM; returns the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = SimulatorConfig(
            host=args.host,
            port=args.port,
            api_key=args.api_key or None,
            access_key=args.access_key,
            secret_key=_secret_from_env("--secret-key-env", args.secret_key_env),
            submitted_seconds=args.submitted_seconds,
            processing_seconds=args.processing_seconds,
            create_latency=args.create_latency,
            request_latency=args.request_latency,
            concurrency_limit=args.concurrency_limit,
            webhook_secret=_secret_from_env("--webhook-secret-env", args.webhook_secret_env),
            public_url=args.public_url,
            prefix=args.prefix,
            request_log_size=0,
            fetch_sources=args.fetch_sources,
            fetch_timeout=args.fetch_timeout,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    simulator = KlingSimulator(config)
    try:
        simulator.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"Kling simulator listening on {simulator.api_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0
