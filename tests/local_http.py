"""A configurable HTTP server on 127.0.0.1 for the tests that fetch over real HTTP.

``serving(body)`` starts a ``LocalServer`` in a thread and stops it when the block ends.
The server records every request in ``requests`` (path with query, and headers) and answers
it with one of the ``ANSWERS`` below, serving ``body`` wherever a video is due:

- a path whose first segment names an answer picks that answer (``/video``, ``/slow``,
  ``/redirect?to=<url>``, ``/chain/<n>``, ``/ranged``, ...), as tests that choose the link like;
- any other path gets the server's ``mode``, which a test may change while it runs, as
  tests whose links are made elsewhere (Kling's ``/assets/...``) need.

It binds only 127.0.0.1. When it stops, ``stopping`` is set, so that slow, trickling and
endless answers end at once. ``LoopbackOnly`` is the transport that keeps a test's traffic on
this machine.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx

Mode = Literal[
    "video",
    "missing",
    "error",
    "html",
    "huge",
    "unsized",
    "trickle",
    "endless",
    "slow",
    "redirect",
    "sets-a-cookie",
    "ranged",
]


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, body: bytes, *, mode: Mode = "video") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.body = body
        # How a path that names no answer is answered.
        self.mode: Mode = mode
        # Where "redirect" sends the client when the link has no ``?to=``.
        self.redirect_to = ""
        self.stopping = threading.Event()
        self.requests: list[tuple[str, dict[str, str]]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hits(self) -> int:
        return len(self.requests)

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


@contextmanager
def serving(body: bytes, *, mode: Mode = "video") -> Iterator[LocalServer]:
    """A ``LocalServer`` answering in a thread for the length of the block."""
    server = LocalServer(body, mode=mode)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield server
    finally:
        server.stop()


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, dict(self.headers.items())))
        path, _, self.query = self.path.partition("?")
        name, _, self.rest = path.removeprefix("/").partition("/")
        answer = ANSWERS.get(name) or ANSWERS[self.server.mode]
        with suppress(BrokenPipeError, ConnectionResetError):
            answer(self)

    def video(self) -> None:
        self._send(200, self.server.body, "video/mp4")

    def missing(self) -> None:
        self._send(404, b"not here", "text/plain")

    def error(self) -> None:
        self._send(500, b"Internal Server Error", "text/plain")

    def html(self) -> None:
        """A sign-in page where the video should be."""
        self._send(200, b"<html><body>Sign in to continue</body></html>", "text/html")

    def huge(self) -> None:
        """Declares 50 GiB, sends a little, and waits."""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(50 * 1024**3))
        self.end_headers()
        self.wfile.write(self.server.body[:1024])

    def unsized(self) -> None:
        """No Content-Length: only counting the bytes as they arrive can stop it."""
        self._start_unsized()
        self.wfile.write(self.server.body)

    def trickle(self) -> None:
        """Never stalls long enough for a read timeout, yet takes 3 s."""
        self._start_unsized()
        for piece in range(60):
            if self.server.stopping.wait(0.05):
                break
            self.wfile.write(self.server.body[piece * 100 : (piece + 1) * 100])
            self.wfile.flush()

    def endless(self) -> None:
        self._start_unsized()
        while not self.server.stopping.is_set():
            self.wfile.write(self.server.body * 8)

    def slow(self) -> None:
        """Answers after 5 s (or when the server stops)."""
        self.server.stopping.wait(5)
        self.video()

    def redirect(self) -> None:
        """302 to ``?to=<url>`` as written, or else to the server's ``redirect_to``."""
        if self.query.startswith("to="):
            self._redirect(self.query.removeprefix("to="))
        else:
            self._redirect(self.server.redirect_to)

    def chain(self) -> None:
        """``/chain/<n>``: n redirects, each relative as many servers write them, then video."""
        left = int(self.rest)
        if left:
            self._redirect(f"{left - 1}")
        else:
            self.video()

    def sets_a_cookie(self) -> None:
        self._redirect("/video", cookie="session=s3cret; Path=/")

    def ranged(self) -> None:
        """The video, answering one ``Range: bytes=a-b`` with 206 as file servers do."""
        body = self.server.body
        match = re.fullmatch(r"bytes=([0-9]+)-([0-9]*)", self.headers.get("Range", ""))
        if not match:
            self._send(200, body, "video/mp4", ranges=True)
            return
        first = int(match[1])
        last = min(int(match[2] or len(body) - 1), len(body) - 1)
        if first >= len(body):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(body)}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        self.wfile.write(body[first : last + 1])

    def _send(self, status: int, body: bytes, content_type: str, *, ranges: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str, *, cookie: str = "") -> None:
        self.send_response(302)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _start_unsized(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Connection", "close")
        self.end_headers()


ANSWERS: dict[str, Callable[[_Handler], None]] = {
    "video": _Handler.video,
    "missing": _Handler.missing,
    "error": _Handler.error,
    "html": _Handler.html,
    "huge": _Handler.huge,
    "unsized": _Handler.unsized,
    "trickle": _Handler.trickle,
    "endless": _Handler.endless,
    "slow": _Handler.slow,
    "redirect": _Handler.redirect,
    "chain": _Handler.chain,
    "sets-a-cookie": _Handler.sets_a_cookie,
    "ranged": _Handler.ranged,
}


class LoopbackOnly(httpx.BaseTransport):
    """Real HTTP to 127.0.0.1 and ::1; anything else is recorded and never connected to."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.elsewhere: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in ("127.0.0.1", "::1"):
            return self.real.handle_request(request)
        self.elsewhere.append(str(request.url))
        raise httpx.ConnectError("the test refused a connection off this machine")

    def close(self) -> None:
        self.real.close()
