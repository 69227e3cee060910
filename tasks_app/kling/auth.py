"""The two ways to sign in to Kling, as ``httpx.Auth`` classes.

Neither class ever shows its key, secret or token in ``str()``/``repr()`` or in log records.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator

import httpx
import jwt

from .errors import business_code

logger = logging.getLogger("kling")

_HIDDEN = "<hidden>"
_REDACTED = "<redacted>"

# Kling's "token expired" code: the one answer JwtAuth handles itself.
TOKEN_EXPIRED_CODE = 1004


class KlingAuth(httpx.Auth):
    """Common ground of the Kling auth schemes: a ``mode`` name and secret redaction."""

    mode: str = "custom"

    def _secrets(self) -> tuple[str, ...]:
        return ()

    def redact(self, text: str) -> str:
        """``text`` with every key, secret and token this auth knows replaced."""
        for secret in self._secrets():
            if secret:
                text = text.replace(secret, _REDACTED)
        return text

    def _bearer(self, request: httpx.Request, token: str) -> None:
        request.headers["Authorization"] = f"Bearer {token}"


class ApiKeyAuth(KlingAuth):
    """``Authorization: Bearer <api key>`` (resellers, and Kling since mid-2026)."""

    mode = "api-key"

    def __init__(self, api_key: str) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key is required")
        self._api_key = api_key.strip()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._bearer(request, self._api_key)
        yield request

    def _secrets(self) -> tuple[str, ...]:
        return (self._api_key,)

    def __repr__(self) -> str:
        return f"ApiKeyAuth({_HIDDEN})"


class JwtAuth(KlingAuth):
    """Kling's access key + secret key scheme: a short-lived HS256 JWT as the bearer token.

    The token is cached and re-minted when less than five minutes of life remain. When Kling
    still answers 401 with code 1004 (token expired, e.g. after a clock jump), the request is
    retried once with a fresh token; a second 1004 reaches the caller.
    """

    mode = "access-key"
    requires_response_body = True  # the 1004 check reads Kling's JSON error body

    REFRESH_MARGIN = 300
    NBF_LEEWAY = 5  # Kling's spec: nbf = now - 5, to absorb small clock differences

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        ttl: int = 1800,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(access_key, str) or not access_key.strip():
            raise ValueError("access_key is required")
        if not isinstance(secret_key, str) or not secret_key.strip():
            raise ValueError("secret_key is required")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        self._access_key = access_key.strip()
        self._secret_key = secret_key.strip()
        self._ttl = ttl
        # With a very short ttl a fixed five-minute margin would re-mint on every request.
        self._refresh_margin = min(self.REFRESH_MARGIN, ttl // 2)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        # Recent tokens, so a Kling message that echoes one can still be redacted.
        self._issued: deque[str] = deque(maxlen=4)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._valid_token()
        self._bearer(request, token)
        response = yield request
        if response.status_code == 401 and _kling_code(response) == TOKEN_EXPIRED_CODE:
            logger.debug("Kling token rejected as expired (1004); retrying once with a new one")
            self._bearer(request, self._replace(token))
            yield request

    def _valid_token(self) -> str:
        with self._lock:
            if self._token is None or self._expires_at - self._clock() < self._refresh_margin:
                return self._mint()
            return self._token

    def _replace(self, rejected: str) -> str:
        with self._lock:
            # Another thread may already have replaced it; don't mint twice for one expiry.
            if self._token is None or self._token == rejected:
                return self._mint()
            return self._token

    def _mint(self) -> str:
        now = int(self._clock())
        claims = {"iss": self._access_key, "exp": now + self._ttl, "nbf": now - self.NBF_LEEWAY}
        token = jwt.encode(claims, self._secret_key, algorithm="HS256")
        self._token, self._expires_at = token, float(now + self._ttl)
        self._issued.append(token)
        logger.debug("minted a Kling token valid for %d s", self._ttl)
        return token

    def _secrets(self) -> tuple[str, ...]:
        return (self._secret_key, self._access_key, *self._issued)

    def __repr__(self) -> str:
        return f"JwtAuth({_HIDDEN}, ttl={self._ttl})"


def _kling_code(response: httpx.Response) -> int | None:
    try:
        payload = json.loads(response.content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    return business_code(payload.get("code")) if isinstance(payload, dict) else None
