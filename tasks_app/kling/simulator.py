"""A local simulator of Kling's lip-sync API, spoken over real HTTP.

Without Kling credentials the studio runs in demo mode against this simulator (``make run``
starts it as its own process), and the test suite uses it as a local server. It implements
the protocol in ``shared/kling-api.md`` on its own (it deliberately imports nothing from the
client side of this package) so that it checks our client honestly: same paths, envelopes,
error codes, authentication schemes, validation messages and callback signing as Kling.

One simulator process serves every web and worker process, so its state lives in memory,
guarded by one lock. Task progress is derived from a clock (injectable, see
:class:`ManualClock`), so tests can move time instead of sleeping.

Run it::

    python -m tasks_app.kling.simulator --host 127.0.0.1 --port 8765

Demo behaviour worth knowing:

* every task succeeds after ``submitted_seconds + processing_seconds``, except when the source
  video's id or URL contains ``noface``: then it fails with "The model did not detect a human"
  (not charged, like on Kling);
* result videos all point at ``/assets/demo-result.mp4?task=<task id>``, served with HTTP range
  support so a browser can play and seek.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import math
import mimetypes
import os
import queue
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from tasks_app.kling.voices import get_voice

__all__ = [
    "DEFAULT_ASSETS_DIR",
    "DEMO_RESULT_NAME",
    "NO_FACE_MESSAGE",
    "CallbackAttempt",
    "KlingSimulator",
    "ManualClock",
    "RecordedRequest",
    "SimulatorConfig",
    "main",
    "sign_webhook",
]

logger = logging.getLogger("kling.simulator")

API_PATH: Final = "/v1/videos/lip-sync"
ASSETS_PATH: Final = "/assets/"
DEFAULT_ASSETS_DIR: Final = Path(__file__).resolve().parent / "assets"
DEMO_RESULT_NAME: Final = "demo-result.mp4"
NO_FACE_MARKER: Final = "noface"
NO_FACE_MESSAGE: Final = "The model did not detect a human"

# Kling's documented limits.
MAX_TEXT_CHARS: Final = 120
MAX_AUDIO_BYTES: Final = 5 * 1024 * 1024
MIN_VOICE_SPEED: Final = 0.8
MAX_VOICE_SPEED: Final = 2.0
DEFAULT_PAGE_SIZE: Final = 30
MAX_PAGE_SIZE: Final = 500

# A base64 audio file of 5 MB is about 6.7 MB of JSON: leave room, refuse anything far larger
# before reading it into memory.
MAX_BODY_BYTES: Final = 12 * 1024 * 1024

# What every successful task costs in the demo, and how long its videos last (the reference
# only shows durations as strings of seconds).
DEMO_DEDUCTION: Final = "5"
DEMO_DURATION: Final = "5.1"

_VIDEO_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_ASSET_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RANGE_RE: Final = re.compile(r"bytes=(\d*)-(\d*)")
_WEBHOOK_SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a marker, not a secret
_USER_AGENT: Final = "KlingSimulator/1.0"

Clock = Callable[[], float]
TaskStatus = Literal["submitted", "processing", "succeed", "failed"]


# --------------------------------------------------------------------------------------------
# Webhook signing (Standard Webhooks)
# --------------------------------------------------------------------------------------------


def _webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 of the text after ``whsec_``."""
    encoded = secret.removeprefix(_WEBHOOK_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook secret must be base64, optionally prefixed with whsec_") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Sign a callback the way Kling does (the Standard Webhooks scheme).

    Returns the ``webhook-signature`` header value ``"v1,<base64 HMAC-SHA256>"`` of
    ``"{msg_id}.{timestamp}.{body}"``, keyed with the base64-decoded ``secret`` (its
    ``whsec_`` prefix, when present, is not part of the key). Raises ``ValueError`` when the
    secret is not valid base64.
    """
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_webhook_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


# --------------------------------------------------------------------------------------------
# Configuration and inspection types
# --------------------------------------------------------------------------------------------


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
    """How a :class:`KlingSimulator` behaves. All durations are in seconds."""

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
    #: Standard Webhooks secret (``whsec_<base64>`` or bare base64); when set, callbacks are
    #: signed with ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` headers.
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

    def __post_init__(self) -> None:
        for name in (
            "submitted_seconds",
            "processing_seconds",
            "create_latency",
            "request_latency",
            "callback_timeout",
            "tick_seconds",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.tick_seconds == 0:
            raise ValueError("tick_seconds must be > 0")
        if self.concurrency_limit is not None and self.concurrency_limit < 1:
            raise ValueError("concurrency_limit must be >= 1 or None")
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("access_key and secret_key go together")
        if self.api_key is None and self.access_key is None:
            raise ValueError("configure api_key, or access_key and secret_key")
        if self.webhook_secret is not None:
            _webhook_key(self.webhook_secret)  # fail at start-up, not at the first callback
        if self.request_log_size < 0:
            raise ValueError("request_log_size must be >= 0")
        prefix = self.prefix.strip().strip("/")
        object.__setattr__(self, "prefix", f"/{prefix}" if prefix else "")
        if self.public_url is not None:
            object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        object.__setattr__(self, "assets_dir", Path(self.assets_dir))


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the simulator answered, for tests to inspect.

    ``path`` has the reseller prefix removed; ``auth`` says which scheme authenticated it
    ("api-key", "jwt") or None; ``body`` is the parsed JSON body of a POST, if any. The
    Authorization header itself is never recorded.
    """

    method: str
    path: str
    query: str
    http_status: int
    code: int | None
    auth: str | None
    body: Any


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """One callback delivery attempt: where, about which status, and how it went."""

    url: str
    task_id: str
    task_status: str
    signed: bool
    http_status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.http_status is not None and self.http_status < 300


# --------------------------------------------------------------------------------------------
# Internals: tasks, faults, errors
# --------------------------------------------------------------------------------------------


class _ApiError(Exception):
    """An answer with Kling's error envelope: HTTP status, business code, message."""

    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


def _invalid(message: str) -> _ApiError:
    return _ApiError(400, 1201, message)


@dataclass(slots=True)
class _Task:
    task_id: str
    seq: int
    # Times in Unix milliseconds, as the protocol shows them: whole numbers keep the
    # transitions exactly submitted_seconds / processing_seconds apart.
    created_at: int
    processing_at: int
    final_at: int
    will_fail: bool
    parent_video: dict[str, str]
    callback_url: str | None
    status: TaskStatus = "submitted"
    status_msg: str = ""
    updated_at: int = 0
    result_video: dict[str, str] | None = None

    def to_object(self) -> dict[str, Any]:
        """The task object of the protocol (query data, list item, callback body)."""
        obj: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": self.status,
            "task_status_msg": self.status_msg,
            "task_info": {"parent_video": dict(self.parent_video)},
            "task_result": {"videos": [dict(self.result_video)] if self.result_video else []},
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.status == "succeed":
            obj["final_unit_deduction"] = DEMO_DEDUCTION
        return obj


@dataclass(slots=True)
class _Fault:
    method: str
    path_suffix: str
    times: int
    take_effect: bool
    # Exactly one of these describes the answer: Kling's error envelope, raw bytes, or none
    # at all (the connection is dropped).
    error: _ApiError | None = None
    raw: tuple[int, bytes, str] | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method == method and path.endswith(self.path_suffix)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str) or value != value.strip():
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _non_empty_str(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


class KlingSimulator:
    """An in-process Kling lip-sync API on a real HTTP socket.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. The inspection
    properties and fault-injection methods are thread-safe and meant for tests.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self._clock = self.config.now
        self._lock = threading.RLock()
        self._tasks: dict[str, _Task] = {}
        # Ids of result videos this simulator produced -> their video objects, so a later
        # create can reuse them as video_id with a faithful parent_video.
        self._videos: dict[str, dict[str, str]] = {}
        self._faults: list[_Fault] = []
        self._requests: deque[RecordedRequest] = deque(maxlen=self.config.request_log_size)
        self._callbacks: list[CallbackAttempt] = []
        self._seq = 0
        self._created_count = 0
        self._create_calls = 0
        self._query_count = 0
        self._list_count = 0
        self._max_running = 0
        self._outbox: queue.Queue[tuple[str, str, str, bytes] | None] = queue.Queue()
        self._server: _Server | None = None
        # Where result video URLs point; fixed at start() so it outlives stop().
        self._result_base = self.config.public_url or "http://127.0.0.1"
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # ---- lifecycle of the server -----------------------------------------------------------

    def start(self) -> KlingSimulator:
        """Bind the socket and serve from daemon threads. Returns self."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server_class = _Server6 if ":" in self.config.host else _Server
        server = server_class((self.config.host, self.config.port), _Handler)
        server.simulator = self
        self._server = server
        self._result_base = self.config.public_url or self.url
        self._stopping.clear()
        self._threads = [
            threading.Thread(
                # stop() waits for one poll interval: keep it short.
                target=server.serve_forever,
                kwargs={"poll_interval": self.config.tick_seconds},
                name="kling-sim-http",
                daemon=True,
            ),
            threading.Thread(target=self._tick_loop, name="kling-sim-clock", daemon=True),
            threading.Thread(target=self._deliver_loop, name="kling-sim-callbacks", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        logger.info("Kling simulator serving on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and end the background threads."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=self.config.callback_timeout + 2)
        self._threads = []
        self._server = None
        logger.info("Kling simulator stopped")

    def __enter__(self) -> KlingSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL of the running simulator, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        # A wildcard address is not somewhere to connect to; its loopback is.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        """The base URL a client should use, including the reseller prefix when set."""
        return self.url + self.config.prefix

    # ---- inspection for tests ----------------------------------------------------------------

    @property
    def created_count(self) -> int:
        """Tasks created (creates answered with an error are not counted)."""
        with self._lock:
            return self._created_count

    @property
    def create_calls(self) -> int:
        """Create calls received, whatever their answer (injected faults included)."""
        with self._lock:
            return self._create_calls

    @property
    def query_count(self) -> int:
        """Query calls received (``GET .../lip-sync/{id}``), whatever their answer."""
        with self._lock:
            return self._query_count

    @property
    def list_count(self) -> int:
        """List calls received (``GET .../lip-sync``), whatever their answer."""
        with self._lock:
            return self._list_count

    @property
    def max_running(self) -> int:
        """The highest number of simultaneously non-final tasks seen so far."""
        with self._lock:
            return self._max_running

    @property
    def running_count(self) -> int:
        """How many tasks are not final now (by the clock)."""
        with self._lock:
            return self._advance_all()

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """A snapshot of every task object (as a query would return it now), oldest first."""
        with self._lock:
            self._advance_all()
            return {task_id: task.to_object() for task_id, task in self._tasks.items()}

    @property
    def requests(self) -> list[RecordedRequest]:
        """The most recent requests answered (up to ``config.request_log_size``), in order."""
        with self._lock:
            return list(self._requests)

    @property
    def callbacks(self) -> list[CallbackAttempt]:
        """Every callback delivery attempt so far, in order."""
        with self._lock:
            return list(self._callbacks)

    # ---- fault injection -----------------------------------------------------------------------

    def inject(
        self,
        method: str,
        path_suffix: str,
        *,
        http_status: int,
        code: int,
        message: str,
        times: int = 1,
        take_effect: bool = False,
    ) -> None:
        """Answer the next ``times`` matching calls with a Kling error envelope.

        A call matches when its method equals ``method`` and its path (without query string
        and reseller prefix) ends with ``path_suffix``: ``("POST", "/lip-sync")`` is a create,
        ``("GET", "/lip-sync")`` a list, ``("GET", f"/{task_id}")`` a query. Faults apply
        before authentication. With ``take_effect`` the call is first handled normally (a
        create does create its task) and only its answer is replaced.
        """
        self._add_fault(
            _Fault(
                method.upper(),
                path_suffix,
                times,
                take_effect,
                error=_ApiError(http_status, code, message),
            )
        )

    def inject_raw(
        self,
        method: str,
        path_suffix: str,
        *,
        body: bytes,
        http_status: int,
        content_type: str = "text/html; charset=utf-8",
        times: int = 1,
        take_effect: bool = False,
    ) -> None:
        """Answer the next ``times`` matching calls with ``body`` as is (e.g. a gateway's HTML
        page or truncated JSON). Matching and ``take_effect`` work as in :meth:`inject`."""
        self._add_fault(
            _Fault(
                method.upper(),
                path_suffix,
                times,
                take_effect,
                raw=(http_status, body, content_type),
            )
        )

    def inject_disconnect(
        self, method: str, path_suffix: str, *, times: int = 1, take_effect: bool = False
    ) -> None:
        """Close the connection of the next ``times`` matching calls without answering.

        With ``take_effect`` a create does create its task first: the client cannot know,
        which is exactly the "outcome unknown" case the reference warns about.
        """
        self._add_fault(_Fault(method.upper(), path_suffix, times, take_effect))

    def clear_faults(self) -> None:
        """Forget every pending injected fault."""
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ---- authentication ------------------------------------------------------------------------

    def _authenticate(self, header: str | None) -> str:
        """Check an Authorization header like Kling; returns the scheme that accepted it."""
        if header is None or not header.strip():
            raise _ApiError(401, 1001, "Authorization header is empty")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            raise _ApiError(401, 1002, "Authorization is invalid: expected a Bearer token")
        if not token:
            raise _ApiError(401, 1001, "Authorization header is empty")
        api_key = self.config.api_key
        if api_key is not None and hmac.compare_digest(token.encode(), api_key.encode()):
            return "api-key"
        if self.config.access_key is not None and self.config.secret_key is not None:
            self._check_jwt(token, self.config.access_key, self.config.secret_key)
            return "jwt"
        raise _ApiError(401, 1002, "Authorization is invalid")

    def _check_jwt(self, token: str, access_key: str, secret_key: str) -> None:
        """Verify an HS256 JWT by hand, against the simulator's clock (not the wall clock)."""
        invalid = _ApiError(401, 1002, "Authorization is invalid")
        parts = token.split(".")
        if len(parts) != 3:
            raise invalid
        try:
            header = json.loads(_b64url_decode(parts[0]))
            payload = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError):
            raise invalid from None
        if not isinstance(header, dict) or not isinstance(payload, dict):
            raise invalid
        if header.get("alg") != "HS256":
            raise invalid
        expected = hmac.new(
            secret_key.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(signature, expected):
            raise invalid
        if payload.get("iss") != access_key:
            raise _ApiError(401, 1002, "Authorization is invalid: unknown access key")
        exp, nbf = payload.get("exp"), payload.get("nbf")
        if not _is_number(exp) or (nbf is not None and not _is_number(nbf)):
            raise invalid
        now = self._clock()
        if now >= exp:
            raise _ApiError(401, 1004, "Authorization has expired")
        if nbf is not None and now < nbf:
            raise _ApiError(401, 1003, "Authorization is not yet valid")

    # ---- the API ---------------------------------------------------------------------------------

    def _create(self, body: object) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _ApiError(400, 1200, "Invalid request: the body must be a JSON object")
        source, callback_url = _validate_create(body, self._videos_snapshot())
        with self._lock:
            running = self._advance_all()
            limit = self.config.concurrency_limit
            if limit is not None and running >= limit:
                raise _ApiError(
                    429,
                    1303,
                    f"Parallel task limit reached: {running} tasks running, limit {limit}",
                )
            task = self._new_task(source, callback_url)
            self._created_count += 1
            self._max_running = max(self._max_running, running + 1)
        logger.info("task %s submitted", task.task_id)
        return {
            "task_id": task.task_id,
            "task_status": task.status,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
        }

    def _new_task(self, source: tuple[str, str], callback_url: str | None) -> _Task:
        kind, value = source
        if kind == "video_id":
            known = self._videos.get(value)
            parent = dict(known) if known else self._video(value, f"video={value}")
        else:
            parent = {"id": self._new_id(), "url": value, "duration": DEMO_DURATION}
        now = _ms(self._clock())
        processing_at = now + _ms(self.config.submitted_seconds)
        self._seq += 1
        task = _Task(
            task_id=self._new_id(),
            seq=self._seq,
            created_at=now,
            processing_at=processing_at,
            final_at=processing_at + _ms(self.config.processing_seconds),
            will_fail=NO_FACE_MARKER in value.lower(),
            parent_video=parent,
            callback_url=callback_url,
            updated_at=now,
        )
        self._tasks[task.task_id] = task
        return task

    def _query(self, task_id: str) -> dict[str, Any]:
        with self._lock:
            self._advance_all()
            task = self._tasks.get(task_id)
            if task is None:
                raise _ApiError(404, 1203, f"Task not found: {task_id}")
            return task.to_object()

    def _list(self, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        page = _int_param(params, "pageNum", 1, 1, None)
        size = _int_param(params, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        with self._lock:
            self._advance_all()
            newest_first = sorted(
                self._tasks.values(), key=lambda task: (task.created_at, task.seq), reverse=True
            )
            start = (page - 1) * size
            return [task.to_object() for task in newest_first[start : start + size]]

    # ---- task progress -----------------------------------------------------------------------

    def _advance_all(self) -> int:
        """Bring every task up to the clock; returns how many are not final. Needs the lock."""
        now = _ms(self._clock())
        running = 0
        for task in self._tasks.values():
            self._advance(task, now)
            if task.status in ("submitted", "processing"):
                running += 1
        return running

    def _advance(self, task: _Task, now: int) -> None:
        # Step through each transition the clock has passed, so a callback goes out for each
        # one, in order, even when the clock jumped over several at once.
        if task.status == "submitted" and now >= task.processing_at:
            task.status = "processing"
            task.updated_at = task.processing_at
            self._announce(task)
        if task.status == "processing" and now >= task.final_at:
            task.updated_at = task.final_at
            if task.will_fail:
                task.status = "failed"
                task.status_msg = NO_FACE_MESSAGE
            else:
                task.status = "succeed"
                video_id = self._new_id()
                task.result_video = self._video(video_id, f"task={task.task_id}")
                self._videos[video_id] = dict(task.result_video)
            self._announce(task)

    def _announce(self, task: _Task) -> None:
        logger.info("task %s is now %s", task.task_id, task.status)
        if task.callback_url is not None:
            body = json.dumps(task.to_object(), ensure_ascii=False).encode()
            self._outbox.put((task.callback_url, task.task_id, task.status, body))

    def _tick_loop(self) -> None:
        # Status changes happen by the clock even when nobody asks, and callbacks must go out
        # then, so look regularly.
        while not self._stopping.wait(self.config.tick_seconds):
            with self._lock:
                self._advance_all()

    # ---- callbacks -------------------------------------------------------------------------------

    def _deliver_loop(self) -> None:
        # One delivery thread keeps the callbacks of a task in the order of its transitions.
        while True:
            item = self._outbox.get()
            if item is None or self._stopping.is_set():
                return
            url, task_id, status, body = item
            self._deliver(url, task_id, status, body)

    def _deliver(self, url: str, task_id: str, status: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        secret = self.config.webhook_secret
        if secret is not None:
            msg_id = f"msg_{uuid.uuid4().hex}"
            timestamp = int(self._clock())
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign_webhook(secret, msg_id, timestamp, body)
        # The scheme was checked to be http(s) when the task was created.
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        http_status: int | None = None
        error: str | None = None
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self.config.callback_timeout
            ) as response:
                http_status = response.status
        except urllib.error.HTTPError as exc:
            http_status = exc.code
            error = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            logger.info("callback for task %s (%s) -> HTTP %s", task_id, status, http_status)
        else:
            logger.warning("callback for task %s (%s) failed: %s", task_id, status, error)
        with self._lock:
            self._callbacks.append(
                CallbackAttempt(url, task_id, status, secret is not None, http_status, error)
            )

    # ---- helpers -------------------------------------------------------------------------------

    def _new_id(self) -> str:
        """An unused 18-digit numeric id, the shape of Kling's task and video ids."""
        with self._lock:
            while True:
                candidate = str(10**17 + secrets.randbelow(9 * 10**17))
                if candidate not in self._tasks and candidate not in self._videos:
                    return candidate

    def _video(self, video_id: str, query: str) -> dict[str, str]:
        return {
            "id": video_id,
            "url": f"{self._result_base}{ASSETS_PATH}{DEMO_RESULT_NAME}?{query}",
            "duration": DEMO_DURATION,
        }

    def _videos_snapshot(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._videos)

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def _count_call(self, route: str | None) -> None:
        with self._lock:
            if route == "create":
                self._create_calls += 1
            elif route == "query":
                self._query_count += 1
            elif route == "list":
                self._list_count += 1


# --------------------------------------------------------------------------------------------
# Validation of a create body, with Kling-like messages
# --------------------------------------------------------------------------------------------


def _validate_create(
    body: dict[str, Any], known_videos: frozenset[str]
) -> tuple[tuple[str, str], str | None]:
    """Check a create body; returns the source ("video_id"|"video_url", value) and callback."""
    callback_url = body.get("callback_url")
    if callback_url is not None and not _is_http_url(callback_url):
        raise _invalid("callback_url must be an http(s) URL")
    data = body.get("input")
    if not isinstance(data, dict):
        raise _invalid("input is required and must be an object")

    video_id, video_url = data.get("video_id"), data.get("video_url")
    has_id, has_url = video_id is not None, video_url is not None
    if not has_id and not has_url:
        raise _invalid("video_id or video_url is required")
    if has_id and has_url:
        raise _invalid("video_id and video_url cannot both be set; send only one")
    source: tuple[str, str]
    if has_id:
        if not isinstance(video_id, str) or not (
            video_id in known_videos or _VIDEO_ID_RE.fullmatch(video_id)
        ):
            raise _invalid("video_id is invalid")
        source = ("video_id", video_id)
    else:
        if not _is_http_url(video_url):
            raise _invalid("video_url must be an http(s) URL")
        source = ("video_url", str(video_url))
    task_id = data.get("task_id")
    if task_id is not None and not _non_empty_str(task_id):
        raise _invalid("task_id must be a non-empty string")

    mode = data.get("mode")
    if mode is None:
        raise _invalid("mode is required")
    if mode == "text2video":
        _validate_text_mode(data)
    elif mode == "audio2video":
        _validate_audio_mode(data)
    else:
        raise _invalid("mode must be text2video or audio2video")
    return source, callback_url


def _validate_text_mode(data: dict[str, Any]) -> None:
    text = data.get("text")
    if not _non_empty_str(text):
        raise _invalid("text is required for text2video")
    if len(text) > MAX_TEXT_CHARS:
        raise _invalid(f"text must be at most {MAX_TEXT_CHARS} characters")
    voice_id = data.get("voice_id")
    if not _non_empty_str(voice_id):
        raise _invalid("voice_id is required for text2video")
    voice = get_voice(voice_id)
    if voice is None:
        raise _invalid("Voice id not found")
    # The reference's sources disagree on the default language; clients always send it, and
    # the simulator assumes "en" when it is missing.
    language = data.get("voice_language", "en")
    if language not in ("zh", "en"):
        raise _invalid("voice_language must be zh or en")
    if not voice.speaks(language):
        raise _invalid(f"voice_language {language} is not supported by voice {voice_id}")
    speed = data.get("voice_speed", 1.0)
    if not _is_number(speed):
        raise _invalid("voice_speed must be a number")
    if not MIN_VOICE_SPEED <= speed <= MAX_VOICE_SPEED:
        raise _invalid(f"voice_speed must be between {MIN_VOICE_SPEED} and {MAX_VOICE_SPEED}")
    if abs(speed * 10 - round(speed * 10)) > 1e-6:
        raise _invalid("voice_speed must have at most one decimal place")


def _validate_audio_mode(data: dict[str, Any]) -> None:
    audio_type = data.get("audio_type")
    if audio_type is None:
        raise _invalid("audio_type is required for audio2video")
    if audio_type == "file":
        audio_file = data.get("audio_file")
        if not _non_empty_str(audio_file):
            raise _invalid("audio_file is required when audio_type is file")
        try:
            # validate=True refuses anything outside the alphabet, such as a data: prefix.
            audio = base64.b64decode(audio_file, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("audio_file must be base64 encoded") from None
        if not audio:
            raise _invalid("audio_file is empty")
        if len(audio) > MAX_AUDIO_BYTES:
            raise _invalid("audio_file must be at most 5 MB")
    elif audio_type == "url":
        if not _is_http_url(data.get("audio_url")):
            raise _invalid("audio_url must be an http(s) URL when audio_type is url")
    else:
        raise _invalid("audio_type must be file or url")


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _int_param(
    params: dict[str, list[str]], name: str, default: int, low: int, high: int | None
) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise _invalid(f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise _invalid(f"{name} must be {bounds}")
    return value


def _b64url_decode(segment: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's backlog of 5 turns a burst of new connections (a worker's threads all
    # starting at once) into connection resets no real API would give.
    request_queue_size = 128
    simulator: KlingSimulator

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up waiting (a read timeout, on purpose in tests) is not an error
        # of the simulator's; anything else still gets the standard traceback.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            logger.debug("client %s went away before the answer", client_address)
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        # Keep-alive connections would otherwise go on being served after stop().
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _DropConnection(Exception):
    """Raised inside a handler to close the connection without any answer."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "KlingSimulator/1.0"
    sys_version = ""
    # Idle keep-alive connections are closed after this long.
    timeout = 30
    # Buffer each answer and send it in one go (flushed after every request), with Nagle off:
    # headers and body in separate small segments meet delayed ACKs and cost ~40 ms a call.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, alive=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, alive=False)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only; headers (and so Authorization) are never logged.
        logger.debug("%s " + format, self.address_string(), *args)

    @property
    def sim(self) -> KlingSimulator:
        return self.server.simulator

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---- routing ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        request_id = str(uuid.uuid4())
        parts = urlsplit(self.path)
        path = parts.path
        prefix = self.sim.config.prefix
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            path = path[len(prefix) :]
        body: Any = None
        status, code, auth = 500, None, None
        try:
            raw_body = self._read_body()
            body = _loads_or_none(raw_body)  # for the request log only
            if self.sim.config.request_latency:
                time.sleep(self.sim.config.request_latency)
            if path.startswith(ASSETS_PATH) and method in ("GET", "HEAD"):
                status = self._serve_asset(path[len(ASSETS_PATH) :], method == "HEAD")
                return
            route = _route(method, path)
            self.sim._count_call(route)
            fault = self.sim._take_fault(method, path)
            if fault is not None and not fault.take_effect:
                status, code = self._answer_fault(fault, request_id)
                return
            if route is None:
                raise _ApiError(404, 1203, "Resource not found")
            if route == "wrong-method":
                raise _ApiError(404, 1202, f"Method {method} is not supported here")
            auth = self.sim._authenticate(self.headers.get("Authorization"))
            if route == "create":
                data: Any = self.sim._create(_parse_json(raw_body))
            elif route == "query":
                data = self.sim._query(unquote(path[len(API_PATH) + 1 :]))
            else:
                data = self.sim._list(parse_qs(parts.query))
            if fault is not None:
                status, code = self._answer_fault(fault, request_id)
                return
            if route == "create" and self.sim.config.create_latency:
                time.sleep(self.sim.config.create_latency)
            status, code = 200, 0
            envelope = {"code": 0, "message": "SUCCEED", "request_id": request_id, "data": data}
            self._send_json(200, envelope)
        except _ApiError as exc:
            status, code = exc.http_status, exc.code
            self._send_error(exc, request_id)
        except _DropConnection:
            status = 0
            self.close_connection = True
        except (ConnectionError, TimeoutError):
            status = 0
            self.close_connection = True
        except Exception:
            logger.exception("simulator failed on %s %s", method, path)
            status, code = 500, 5000
            self._send_error(_ApiError(500, 5000, "Internal server error"), request_id)
        finally:
            if not path.startswith(ASSETS_PATH):
                # Workers poll all the time: successful reads are only worth a debug line.
                level = logging.DEBUG if method == "GET" and status == 200 else logging.INFO
                logger.log(
                    level,
                    "%s %s -> %s code=%s request_id=%s",
                    method,
                    path,
                    status,
                    code,
                    request_id,
                )
            self.sim._record(RecordedRequest(method, path, parts.query, status, code, auth, body))

    def _answer_fault(self, fault: _Fault, request_id: str) -> tuple[int, int | None]:
        if fault.error is not None:
            self._send_error(fault.error, request_id)
            return fault.error.http_status, fault.error.code
        if fault.raw is not None:
            http_status, body, content_type = fault.raw
            self._send_bytes(http_status, body, content_type)
            return http_status, None
        raise _DropConnection

    # ---- reading and writing ---------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            raise _ApiError(400, 1200, "Invalid request: bad Content-Length") from None
        if length < 0:
            self.close_connection = True
            raise _ApiError(400, 1200, "Invalid request: bad Content-Length")
        if length > MAX_BODY_BYTES:
            # Read and drop it, so the client gets to see the answer and the connection
            # stays usable, without ever holding it in memory.
            while length > 0:
                chunk = self.rfile.read(min(length, 1024 * 1024))
                if not chunk:
                    break
                length -= len(chunk)
            raise _ApiError(413, 1200, "Invalid request: body too large")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self.close_connection = True
                raise _ApiError(400, 1200, "Invalid request: bad chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self.close_connection = True
                raise _ApiError(413, 1200, "Invalid request: body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send_error(self, error: _ApiError, request_id: str) -> None:
        # Kling's error envelope has no "data".
        self._send_json(
            error.http_status,
            {"code": error.code, "message": error.message, "request_id": request_id},
        )

    def _send_json(self, http_status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self._send_bytes(http_status, body, "application/json; charset=utf-8")

    def _send_bytes(self, http_status: int, body: bytes, content_type: str) -> None:
        self.send_response(http_status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # ---- the result video ------------------------------------------------------------------

    def _serve_asset(self, name: str, head_only: bool) -> int:
        """Serve a file of assets_dir with single-range support, so browsers can seek."""
        path = Path(self.sim.config.assets_dir) / name
        if not _ASSET_NAME_RE.fullmatch(name) or not path.is_file():
            self._send_bytes(404, b"Not found\n", "text/plain; charset=utf-8")
            return 404
        size = path.stat().st_size
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        start, end = 0, size - 1
        status = 200
        range_header = self.headers.get("Range")
        if range_header is not None:
            parsed = _parse_range(range_header, size)
            if parsed is None:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 416
            if parsed != "ignore":
                start, end = parsed
                status = 206
        length = max(end - start + 1, 0)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "public, max-age=3600")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head_only or length == 0:
            return status
        with path.open("rb") as file:
            file.seek(start)
            remaining = length
            while remaining > 0:
                chunk = file.read(min(64 * 1024, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)
        return status


_Route = Literal["create", "query", "list", "wrong-method"]


def _route(method: str, path: str) -> _Route | None:
    """Which API call ``method`` and ``path`` name; None when the path is not the API's."""
    if path == API_PATH:
        if method == "POST":
            return "create"
        return "list" if method == "GET" else "wrong-method"
    if path.startswith(API_PATH + "/"):
        task_id = path[len(API_PATH) + 1 :]
        if task_id and "/" not in task_id:
            return "query" if method == "GET" else "wrong-method"
    return None


def _loads_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _ApiError(400, 1200, "Invalid request: the body is not valid JSON") from None


def _parse_range(header: str, size: int) -> tuple[int, int] | Literal["ignore"] | None:
    """A single byte range, clamped to the file; "ignore" to send it all; None if unsatisfiable.

    Multi-range requests are answered with the whole file, which HTTP allows.
    """
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None:
        return "ignore"
    first, last = match.groups()
    if not first and not last:
        return "ignore"
    if not first:  # suffix range: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return None
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tasks_app.kling.simulator",
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


if __name__ == "__main__":
    sys.exit(main())
