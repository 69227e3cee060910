"""A small synchronous client for Kling's lip-sync endpoint.

Every failure surfaces as :class:`~tasks_app.kling.errors.KlingError`, never as a raw httpx
exception, and nothing secret (keys, tokens, request bodies) reaches the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from .auth import KlingAuth
from .errors import ErrorKind, KlingError, business_code
from .types import KlingTask, LipSyncRequest, TaskPage

logger = logging.getLogger("kling")

DEFAULT_USER_AGENT = "LipSyncStudio/0.1 (+kling-client)"
LIP_SYNC_PATH = "v1/videos/lip-sync"


@dataclass(frozen=True, slots=True)
class _Answer:
    data: Any
    request_id: str | None
    http_status: int


class KlingClient:
    """Create, query and list Kling lip-sync tasks.

    ``base_url`` is Kling's host (e.g. ``https://api-singapore.klingai.com``) or a reseller's
    base including its path prefix (e.g. ``https://reseller.example/kling``). One client holds
    one connection pool; close it, or use it as a context manager.
    """

    def __init__(
        self,
        *,
        base_url: str,
        auth: httpx.Auth,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        self._base_url = _normalise_base_url(base_url)
        self._path_prefix = httpx.URL(self._base_url).path.rstrip("/")
        self._auth = auth
        self._redact: Callable[[str], str] = (
            auth.redact if isinstance(auth, KlingAuth) else (lambda text: text)
        )
        self._http = httpx.Client(
            # The trailing slash makes httpx append our paths to the prefix instead of
            # replacing its last segment.
            base_url=self._base_url + "/",
            auth=auth,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
            transport=transport,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            # A redirected POST would turn into a GET; a redirect means a wrong base URL.
            follow_redirects=False,
        )

    @property
    def base_url(self) -> str:
        """The normalised base URL, without a trailing slash."""
        return self._base_url

    @property
    def auth_mode(self) -> str:
        """The auth scheme in use: "api-key", "access-key" (or "custom")."""
        return str(getattr(self._auth, "mode", "custom"))

    def create_task(self, request: LipSyncRequest) -> KlingTask:
        """Submit a lip-sync job. Kling answers at once with a ``submitted`` task.

        A KlingError with ``outcome_unknown`` means the task may exist anyway: reconcile
        (e.g. with :meth:`list_tasks`) before creating it again.
        """
        if not isinstance(request, LipSyncRequest):
            raise ValueError("create_task needs a LipSyncRequest")
        answer = self._call("POST", LIP_SYNC_PATH, creating=True, json=request.to_body())
        return self._task(answer, creating=True)

    def get_task(self, task_id: str) -> KlingTask:
        """Query one task by the ``task_id`` Kling gave at creation."""
        if not isinstance(task_id, str) or not task_id.strip():
            raise ValueError("task_id is required")
        # Reseller ids are base64-like and may contain "/", "+" or "=".
        path = f"{LIP_SYNC_PATH}/{quote(task_id.strip(), safe='')}"
        return self._task(self._call("GET", path))

    def list_tasks(self, *, page: int = 1, page_size: int = 30) -> TaskPage:
        """One page of this account's lip-sync tasks, newest first as Kling orders them."""
        for name, value in (("page", page), ("page_size", page_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        answer = self._call("GET", LIP_SYNC_PATH, params={"pageNum": page, "pageSize": page_size})
        if answer.data is None:
            return TaskPage(tasks=(), request_id=answer.request_id)
        if not isinstance(answer.data, list):
            raise KlingError(
                ErrorKind.BAD_RESPONSE,
                http_status=answer.http_status,
                request_id=answer.request_id,
                detail=f"list data is {type(answer.data).__name__}, not an array",
            )
        tasks = tuple(
            self._task(_Answer(item, answer.request_id, answer.http_status)) for item in answer.data
        )
        return TaskPage(tasks=tasks, request_id=answer.request_id)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KlingClient(base_url={self._base_url!r}, auth={self._auth!r})"

    def _call(self, method: str, path: str, *, creating: bool = False, **kwargs: Any) -> _Answer:
        log_path = f"{self._path_prefix}/{path}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            logger.debug("%s %s failed: %s", method, log_path, type(exc).__name__)
            # "from None": httpx exceptions carry the request, Authorization header included.
            raise self._transport_error(exc, creating) from None

        payload = _json_or_none(response.content)
        envelope = payload if isinstance(payload, dict) else {}
        code = business_code(envelope.get("code"))
        request_id = _text(envelope.get("request_id"))
        logger.debug(
            "%s %s -> HTTP %s code=%s request_id=%s",
            method,
            log_path,
            response.status_code,
            code,
            request_id,
        )
        if code == 0 and response.is_success:
            return _Answer(envelope.get("data"), request_id, response.status_code)

        detail = None
        if code == 0:
            # "Success" on an error status is not a Kling error answer either.
            code, detail = None, "code 0 on an error status"
        elif code is None:
            # Not a Kling error answer: the HTTP status has to speak for it.
            detail = _describe_foreign_body(response, payload)
        message = _message(envelope)
        raise KlingError.from_answer(
            http_status=response.status_code,
            code=code,
            message=self._redact(message) if message else None,
            request_id=request_id,
            creating=creating,
            detail=detail,
        )

    def _task(self, answer: _Answer, *, creating: bool = False) -> KlingTask:
        try:
            return KlingTask.from_data(answer.data, request_id=answer.request_id)
        except KlingError as err:
            # Kling said "success" (code 0) but the task is unreadable: after a create the
            # task very likely exists.
            raise KlingError(
                ErrorKind.BAD_RESPONSE,
                http_status=answer.http_status,
                request_id=answer.request_id,
                outcome_unknown=creating,
                detail=err.detail,
            ) from None

    def _transport_error(self, exc: httpx.HTTPError, creating: bool) -> KlingError:
        detail = type(exc).__name__
        if text := self._redact(str(exc)).strip():
            detail = f"{detail}: {text}"
        # These fail before a single byte reaches Kling, so even a create is known not to exist.
        nothing_sent = isinstance(
            exc,
            httpx.ConnectError
            | httpx.ConnectTimeout
            | httpx.PoolTimeout
            | httpx.ProxyError
            | httpx.UnsupportedProtocol,
        )
        if isinstance(exc, httpx.TimeoutException):
            kind = ErrorKind.TIMEOUT
        elif isinstance(exc, httpx.DecodingError):
            kind = ErrorKind.BAD_RESPONSE
        else:
            kind = ErrorKind.NETWORK
        return KlingError(
            kind,
            retryable=True,
            outcome_unknown=creating and not nothing_sent,
            detail=detail,
        )


def _normalise_base_url(base_url: str) -> str:
    if not isinstance(base_url, str) or not base_url.strip():
        raise ValueError("base_url is required")
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL as exc:
        raise ValueError(f"base_url is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an http(s) URL with a host")
    if url.userinfo:
        raise ValueError("base_url must not carry credentials; pass them as auth")
    if url.query or url.fragment:
        raise ValueError("base_url must not have a query or fragment")
    return str(url).rstrip("/")


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _message(envelope: dict[str, Any]) -> str | None:
    # Kling says "message"; some proxies say "msg" or an OpenAI-style {"error": {"message"}}.
    error = envelope.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    for candidate in (envelope.get("message"), envelope.get("msg"), error):
        if text := _text(candidate):
            return text.strip()
    return None


def _describe_foreign_body(response: httpx.Response, payload: Any) -> str:
    content_type = response.headers.get("content-type", "no content type").split(";")[0]
    if not response.content:
        return "empty answer"
    if payload is None:
        return f"answer is not JSON ({content_type}, {len(response.content)} bytes)"
    return "answer is JSON but not a Kling envelope"
