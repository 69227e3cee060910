"""How a simulator behaves (:class:`SimulatorConfig`) and the clock it runs on."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .callbacks import webhook_signer

ASSETS_PATH: Final = "/assets/"
DEFAULT_ASSETS_DIR: Final = Path(__file__).resolve().parent / "assets"
DEMO_RESULT_NAME: Final = "demo-result.mp4"

Clock = Callable[[], float]


class ManualClock:
    """A clock for tests: stands still until told to move. Thread-safe.

    Pass it as ``SimulatorConfig(now=clock)``; call ``clock.advance(seconds)`` to move time.
    It starts at the real current time by default, so that signed callbacks carry plausible
    timestamps (receivers reject ones more than five minutes off).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self():.3f})"


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """How a :class:`~tasks_app.simulator.KlingSimulator` behaves. Durations are in seconds.

    A running simulator reads its ``config`` on every request, so replacing it (for instance
    with :func:`dataclasses.replace`) changes the behaviour of a simulator already serving;
    ``host``, ``port``, ``now`` and ``request_log_size`` only count at construction.
    """

    host: str = "127.0.0.1"
    #: 0 picks a free port; read the real one from ``KlingSimulator.url``.
    port: int = 0
    #: The accepted ``Authorization: Bearer`` API key; None disables API-key authentication.
    api_key: str | None = "demo-key"
    #: When both are set, HS256 JWTs signed with ``secret_key`` whose ``iss`` is
    #: ``access_key`` are accepted too (Kling's original scheme).
    access_key: str | None = None
    secret_key: str | None = None
    #: How long a task stays ``submitted``, then ``processing`` before its final status.
    submitted_seconds: float = 3.0
    processing_seconds: float = 12.0
    #: The create call sleeps this long *after* creating the task and before answering, so a
    #: client that times out meets the "task may exist" case of the reference.
    create_latency: float = 0.0
    #: Every call sleeps this long before it is handled.
    request_latency: float = 0.0
    #: How many not-yet-final tasks the account may have; a create beyond it gets 429 / 1303.
    concurrency_limit: int | None = None
    #: Standard Webhooks secret (``whsec_<base64>``, or the base64 alone); when set, callbacks
    #: are signed with ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` headers.
    #: Read by the ``standardwebhooks`` library's rule, as the studio reads it (see
    #: :func:`~tasks_app.simulator.callbacks.webhook_signer`).
    webhook_secret: str | None = field(default=None, repr=False)
    #: Base URL for result video URLs; defaults to the simulator's own URL.
    public_url: str | None = None
    #: Where ``/assets/<name>`` files (the demo result video) are served from.
    assets_dir: Path | str = DEFAULT_ASSETS_DIR
    #: Also serve the API under this path prefix (e.g. "/kling"), as resellers do.
    prefix: str = ""
    #: The time source (Unix seconds); inject a :class:`ManualClock` to move time in tests.
    now: Clock = time.time
    #: How often background threads wake up: to look for status changes to call back about,
    #: and to notice a stop().
    tick_seconds: float = 0.05
    #: Timeout of one callback delivery; failures are logged and otherwise ignored.
    callback_timeout: float = 3.0
    #: How many recent requests to keep for inspection (``KlingSimulator.requests``); request
    #: bodies can carry megabytes of audio, so the long-running demo process keeps none.
    request_log_size: int = 200
    #: Download the start of each create's ``video_url`` during the task's ``submitted`` phase,
    #: as Kling does, and fail the task when it is unreachable or not a video. Off by default,
    #: so a simulator never reaches out to the links tests make up; demo mode turns it on.
    fetch_sources: bool = False
    #: Seconds that downloading a source may wait to connect and for each read.
    fetch_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "submitted_seconds",
            "processing_seconds",
            "create_latency",
            "request_latency",
            "callback_timeout",
            "tick_seconds",
            "fetch_timeout",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.tick_seconds == 0:
            raise ValueError("tick_seconds must be > 0")
        if self.fetch_timeout == 0:
            raise ValueError("fetch_timeout must be > 0")
        if self.concurrency_limit is not None and self.concurrency_limit < 1:
            raise ValueError("concurrency_limit must be >= 1 or None")
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("access_key and secret_key go together")
        if self.api_key is None and self.access_key is None:
            raise ValueError("configure api_key, or access_key and secret_key")
        if self.webhook_secret is not None:
            webhook_signer(self.webhook_secret)  # fail at start-up, not at the first callback
        if self.request_log_size < 0:
            raise ValueError("request_log_size must be >= 0")
        prefix = self.prefix.strip().strip("/")
        object.__setattr__(self, "prefix", f"/{prefix}" if prefix else "")
        if self.public_url is not None:
            object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        object.__setattr__(self, "assets_dir", Path(self.assets_dir))
