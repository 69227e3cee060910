"""What the simulator's tests (tests/simulator/) share: requests in Kling's literal wire
format, Kling's error envelope, and a server that receives callbacks.

It sits next to ``factories.py`` so that both pytest and mypy find it as a top-level module.
"""

from __future__ import annotations

import base64
import json
import queue
import ssl
import threading
import time
from collections.abc import Callable
from copy import deepcopy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt

from tasks_app.simulator import KlingSimulator

MakeSimulator = Callable[..., KlingSimulator]

API = "/v1/videos/lip-sync"
ACCESS_KEY = "ak-test-0123456789"
SECRET_KEY = "sk-test-0123456789abcdef0123456789abcdef"  # >= 32 bytes: no PyJWT key warning
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"simulator-webhook-secret-32bytes").decode()
# Loading CA certificates costs ~30 ms per httpx.Client; the simulator speaks plain HTTP, so
# share one context.
SSL_CONTEXT = ssl.create_default_context()


def client_for(sim: KlingSimulator, bearer: str | None = "demo-key") -> httpx.Client:
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    return httpx.Client(base_url=sim.url, headers=headers, timeout=10, verify=SSL_CONTEXT)


def text_body(**input_overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input": {
            "video_url": "https://cdn.example.com/talking-head.mp4",
            "mode": "text2video",
            "text": "Hello from the studio.",
            "voice_id": "genshin_vindi2",
            "voice_language": "en",
            "voice_speed": 1.0,
        }
    }
    body["input"].update(input_overrides)
    return body


def audio_body(**input_overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input": {
            "video_url": "https://cdn.example.com/talking-head.mp4",
            "mode": "audio2video",
            "audio_type": "file",
            "audio_file": base64.b64encode(b"ID3\x04fake mp3 bytes").decode(),
        }
    }
    body["input"].update(input_overrides)
    return body


def without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    body = deepcopy(body)
    for key in keys:
        del body["input"][key]
    return body


def create(client: httpx.Client, body: dict[str, Any] | None = None) -> str:
    response = client.post(API, json=body or text_body())
    assert response.status_code == 200, response.text
    return response.json()["data"]["task_id"]


def query(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def assert_error(response: httpx.Response, http_status: int, code: int) -> dict[str, Any]:
    """Kling's error envelope: the HTTP status and code go together, and there is no data."""
    assert response.status_code == http_status, response.text
    envelope = response.json()
    assert envelope["code"] == code
    assert envelope["message"]
    assert envelope["request_id"]
    assert "data" not in envelope
    return envelope


def mint_jwt(now: float, *, secret: str = SECRET_KEY, **claims: Any) -> str:
    payload = {"iss": ACCESS_KEY, "exp": int(now) + 1800, "nbf": int(now) - 5, **claims}
    return jwt.encode(payload, secret, algorithm="HS256", headers={"typ": "JWT"})


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class CallbackReceiver:
    """A tiny HTTP server on 127.0.0.1 that records the callbacks it receives."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.put(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/kling"

    def next(self, timeout: float = 5.0) -> tuple[dict[str, str], dict[str, Any], bytes]:
        headers, body = self.received.get(timeout=timeout)
        return headers, json.loads(body), body

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
