"""The simulator's HTTP side: the server, and a handler that routes Kling's three calls, reads
bodies, sends Kling's envelopes and serves the demo result video and the sample source videos
with range support."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import mimetypes
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from .config import ASSETS_PATH
from .samples import SAMPLE_CONTENT_TYPE, SAMPLES_PATH, sample_bytes
from .validation import (
    ApiError,
    invalid_request,
    not_found,
    parse_json,
    server_error,
    wrong_method,
)

if TYPE_CHECKING:
    from .state import KlingSimulator

logger = logging.getLogger("kling.simulator")

API_PATH: Final = "/v1/videos/lip-sync"

# A base64 audio file of 5 MB is about 6.7 MB of JSON: leave room, refuse anything far larger
# before reading it into memory.
MAX_BODY_BYTES: Final = 12 * 1024 * 1024

_ASSET_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RANGE_RE: Final = re.compile(r"bytes=(\d*)-(\d*)")

Route = Literal["create", "query", "list", "wrong-method"]


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
class Override:
    """Another answer for one API request (see ``KlingSimulator.override_answer``).

    ``error`` sends Kling's error envelope; ``raw`` sends (HTTP status, body, content type)
    as is, such as a gateway's HTML page or truncated JSON; with neither, the connection is
    closed without an answer. With ``after_handling`` the request is first handled as usual
    (a create does create its task) and only its answer is replaced: the case where the
    client cannot know what happened.
    """

    error: ApiError | None = None
    raw: tuple[int, bytes, str] | None = None
    after_handling: bool = False

    def __post_init__(self) -> None:
        if self.error is not None and self.raw is not None:
            raise ValueError("an override is an error envelope or a raw answer, not both")


class SimulatorServer:
    """The listening socket and the thread serving it."""

    def __init__(self, simulator: KlingSimulator, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), _Handler)
        self._server.simulator = simulator
        self._thread: threading.Thread | None = None

    def start(self, poll_interval: float) -> None:
        self._thread = threading.Thread(
            # stop() waits for one poll interval: keep it short.
            target=self._server.serve_forever,
            kwargs={"poll_interval": poll_interval},
            name="kling-sim-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    @property
    def url(self) -> str:
        address, port = self._server.server_address[:2]
        host = address.decode() if isinstance(address, bytes | bytearray) else address
        # A wildcard address is not somewhere to connect to; its loopback is.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"


def route(method: str, path: str) -> Route | None:
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
        if isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
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
        config = self.sim.config
        if config.prefix and (path == config.prefix or path.startswith(config.prefix + "/")):
            path = path[len(config.prefix) :]
        body: Any = None
        status, code, auth = 500, None, None
        try:
            raw_body = self._read_body()
            body = _loads_or_none(raw_body)  # for the request log only
            if config.request_latency:
                time.sleep(config.request_latency)
            if path.startswith(ASSETS_PATH) and method in ("GET", "HEAD"):
                status = self._serve_asset(path[len(ASSETS_PATH) :], method == "HEAD")
                return
            if path.startswith(SAMPLES_PATH) and method in ("GET", "HEAD"):
                status = self._serve_sample(path[len(SAMPLES_PATH) :], method == "HEAD")
                return
            api_call = route(method, path)
            self.sim.note_call(api_call)
            override = self.sim.override_answer(method, path)
            if override is not None and not override.after_handling:
                status, code = self._send_override(override, request_id)
                return
            if api_call is None:
                raise not_found()
            if api_call == "wrong-method":
                raise wrong_method(method)
            auth = self.sim.authenticate(self.headers.get("Authorization"))
            if api_call == "create":
                data: Any = self.sim.handle_create(parse_json(raw_body))
            elif api_call == "query":
                data = self.sim.handle_query(unquote(path[len(API_PATH) + 1 :]))
            else:
                data = self.sim.handle_list(parse_qs(parts.query))
            if override is not None:
                status, code = self._send_override(override, request_id)
                return
            if api_call == "create" and config.create_latency:
                time.sleep(config.create_latency)
            status, code = 200, 0
            envelope = {"code": 0, "message": "SUCCEED", "request_id": request_id, "data": data}
            self._send_json(200, envelope)
        except ApiError as exc:
            status, code = exc.http_status, exc.code
            self._send_error(exc, request_id)
        except (_DropConnection, ConnectionError, TimeoutError):
            status = 0
            self.close_connection = True
        except Exception:
            logger.exception("simulator failed on %s %s", method, path)
            error = server_error()
            status, code = error.http_status, error.code
            self._send_error(error, request_id)
        finally:
            if not path.startswith((ASSETS_PATH, SAMPLES_PATH)):
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
            self.sim.record(RecordedRequest(method, path, parts.query, status, code, auth, body))

    def _send_override(self, override: Override, request_id: str) -> tuple[int, int | None]:
        if override.error is not None:
            self._send_error(override.error, request_id)
            return override.error.http_status, override.error.code
        if override.raw is not None:
            http_status, body, content_type = override.raw
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
            raise invalid_request("bad Content-Length") from None
        if length < 0:
            self.close_connection = True
            raise invalid_request("bad Content-Length")
        if length > MAX_BODY_BYTES:
            # Read and drop it, so the client gets to see the answer and the connection
            # stays usable, without ever holding it in memory.
            while length > 0:
                chunk = self.rfile.read(min(length, 1024 * 1024))
                if not chunk:
                    break
                length -= len(chunk)
            raise invalid_request("body too large", http_status=413)
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
                raise invalid_request("bad chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self.close_connection = True
                raise invalid_request("body too large", http_status=413)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send_error(self, error: ApiError, request_id: str) -> None:
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
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        with path.open("rb") as file:
            return self._send_file(file, path.stat().st_size, content_type, head_only)

    def _serve_sample(self, name: str, head_only: bool) -> int:
        """Serve one of the demo's sample source videos (see ``.samples``), like an asset."""
        data = sample_bytes(name)
        if data is None:
            self._send_bytes(404, b"Not found\n", "text/plain; charset=utf-8")
            return 404
        return self._send_file(io.BytesIO(data), len(data), SAMPLE_CONTENT_TYPE, head_only)

    def _send_file(self, file: BinaryIO, size: int, content_type: str, head_only: bool) -> int:
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
        file.seek(start)
        remaining = length
        while remaining > 0:
            chunk = file.read(min(64 * 1024, remaining))
            if not chunk:
                break
            self.wfile.write(chunk)
            remaining -= len(chunk)
        return status


def _loads_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


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
