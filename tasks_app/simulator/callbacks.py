"""Callbacks: Kling POSTs the task object to ``callback_url`` when its status changes.

Signed callbacks follow the Standard Webhooks scheme, signed with the ``standardwebhooks``
library: the same library the studio verifies them with (``tasks_app/webhooks.py``), so the
two read every secret the same way instead of each by its own hand-written rule.
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

if TYPE_CHECKING:
    from .config import SimulatorConfig

logger = logging.getLogger("kling.simulator")

_USER_AGENT: Final = "KlingSimulator/1.0"


def webhook_signer(secret: str) -> Webhook:
    """The ``standardwebhooks`` signer for ``secret``; ValueError when the library refuses it.

    The library's rule: a ``whsec_`` prefix is dropped and the rest is base64-decoded
    leniently (characters outside the base64 alphabet are skipped, missing padding is
    added); the bytes are the HMAC-SHA256 key. So ``whsec_<b64>``, the bare ``<b64>`` and
    unpadded base64 are one key; a text that is not base64, such as ``hunter2``, is still a
    key (the bytes its letters spell as base64, not its UTF-8 bytes); a text that decodes to
    nothing (``whsec_%%%``) or to an impossible length (``my-plain-secret``) is refused.
    """
    try:
        return Webhook(secret)
    except (ValueError, EmptyWebhookSecretError) as exc:
        # The library's message never quotes the secret; ours must not either.
        raise ValueError(
            "webhook secret is not a Standard Webhooks secret (whsec_ followed by base64)"
        ) from exc


def sign_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header Kling sends with a callback: ``"v1,<base64>"``.

    ``body`` must be UTF-8 (the library signs text; callback bodies are JSON). Raises
    ValueError for a secret the library refuses (see :func:`webhook_signer`).
    """
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return webhook_signer(secret).sign(msg_id, when, body.decode())


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


@dataclass(frozen=True, slots=True)
class _Callback:
    url: str
    task_id: str
    task_status: str
    body: bytes


class CallbackSender:
    """Delivers callbacks from one thread, which keeps a task's callbacks in the order of its
    transitions. Failures are logged and recorded, never retried: the protocol leaves retries
    undocumented, and the studio must not depend on them."""

    def __init__(self, config: Callable[[], SimulatorConfig]) -> None:
        # A callable, not a config: the simulator's config may be replaced while it runs.
        self._config = config
        self._outbox: queue.Queue[_Callback | None] = queue.Queue()
        self._lock = threading.Lock()
        self._attempts: list[CallbackAttempt] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="kling-sim-callbacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the delivery in progress, if any; callbacks still queued are dropped."""
        self._stopping.set()
        self._outbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout=self._config().callback_timeout + 2)
            self._thread = None

    def send(self, url: str, task_id: str, task_status: str, body: bytes) -> None:
        self._outbox.put(_Callback(url, task_id, task_status, body))

    @property
    def attempts(self) -> list[CallbackAttempt]:
        with self._lock:
            return list(self._attempts)

    def _loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None or self._stopping.is_set():
                return
            self._deliver(item)

    def _deliver(self, callback: _Callback) -> None:
        config = self._config()
        headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        secret = config.webhook_secret
        if secret is not None:
            msg_id = f"msg_{uuid.uuid4().hex}"
            timestamp = int(config.now())
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign_webhook(secret, msg_id, timestamp, callback.body)
        # The scheme was checked to be http(s) when the task was created.
        request = urllib.request.Request(  # noqa: S310
            callback.url, data=callback.body, headers=headers, method="POST"
        )
        http_status: int | None = None
        error: str | None = None
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=config.callback_timeout
            ) as response:
                http_status = response.status
        except urllib.error.HTTPError as exc:
            http_status = exc.code
            error = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        task_id, status = callback.task_id, callback.task_status
        if error is None:
            logger.info("callback for task %s (%s) -> HTTP %s", task_id, status, http_status)
        else:
            logger.warning("callback for task %s (%s) failed: %s", task_id, status, error)
        with self._lock:
            self._attempts.append(
                CallbackAttempt(
                    callback.url, task_id, status, secret is not None, http_status, error
                )
            )
