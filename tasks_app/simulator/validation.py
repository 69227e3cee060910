"""What the simulator accepts from a request, by the rules of ``shared/kling-api.md``.

The simulator checks requests on its own: it shares the client's names for wire values (the
modes, the languages, the voice table) but none of the client's building or parsing code,
so a client that sends something Kling would refuse is refused here too. Its own tests send
the reference's literal values, so a wrong shared name would fail them as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from typing import Any, Final, TypeGuard
from urllib.parse import urlsplit

from tasks_app.kling.types import Mode
from tasks_app.kling.voices import LANGUAGES, get_voice

from .config import SimulatorConfig

# Kling's documented limits.
MAX_TEXT_CHARS: Final = 120
MAX_AUDIO_BYTES: Final = 5 * 1024 * 1024
MIN_VOICE_SPEED: Final = 0.8
MAX_VOICE_SPEED: Final = 2.0
DEFAULT_PAGE_SIZE: Final = 30
MAX_PAGE_SIZE: Final = 500

_VIDEO_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_BASE64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")

VideoSource = tuple[str, str]
"""Where a task's face video comes from: ("video_id" or "video_url", the value)."""


class ApiError(Exception):
    """An answer with Kling's error envelope: HTTP status, business code, message.

    The reference pairs each code with one HTTP status; the constructors below are the rows
    of its table that the simulator answers with.
    """

    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


def auth_empty() -> ApiError:
    return ApiError(401, 1001, "Authorization header is empty")


def auth_invalid(detail: str = "") -> ApiError:
    return ApiError(401, 1002, f"Authorization is invalid{': ' + detail if detail else ''}")


def token_not_yet_valid() -> ApiError:
    return ApiError(401, 1003, "Authorization is not yet valid")


def token_expired() -> ApiError:
    return ApiError(401, 1004, "Authorization has expired")


def invalid_request(detail: str, http_status: int = 400) -> ApiError:
    return ApiError(http_status, 1200, f"Invalid request: {detail}")


def invalid_parameter(message: str) -> ApiError:
    return ApiError(400, 1201, message)


def wrong_method(method: str) -> ApiError:
    return ApiError(404, 1202, f"Method {method} is not supported here")


def not_found(message: str = "Resource not found") -> ApiError:
    return ApiError(404, 1203, message)


def too_many_running(running: int, limit: int) -> ApiError:
    return ApiError(
        429, 1303, f"Parallel task limit reached: {running} tasks running, limit {limit}"
    )


def server_error() -> ApiError:
    return ApiError(500, 5000, "Internal server error")


# ---- authentication --------------------------------------------------------------------------


def authenticate(header: str | None, config: SimulatorConfig, now: float) -> str:
    """Check an Authorization header like Kling; returns the scheme that accepted it
    ("api-key" or "jwt")."""
    if header is None or not header.strip():
        raise auth_empty()
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise auth_invalid("expected a Bearer token")
    if not token:
        raise auth_empty()
    api_key = config.api_key
    if api_key is not None and hmac.compare_digest(token.encode(), api_key.encode()):
        return "api-key"
    if config.access_key is not None and config.secret_key is not None:
        _check_jwt(token, config.access_key, config.secret_key, now)
        return "jwt"
    raise auth_invalid()


def _check_jwt(token: str, access_key: str, secret_key: str, now: float) -> None:
    # By hand rather than with PyJWT, which the client signs with: a shared library would
    # agree with the client on its own mistakes. Checked against the simulator's clock.
    parts = token.split(".")
    if len(parts) != 3:
        raise auth_invalid()
    try:
        header = json.loads(_b64url_decode(parts[0]))
        payload = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise auth_invalid() from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise auth_invalid()
    if header.get("alg") != "HS256":
        raise auth_invalid()
    expected = hmac.new(
        secret_key.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(signature, expected):
        raise auth_invalid()
    if payload.get("iss") != access_key:
        raise auth_invalid("unknown access key")
    exp, nbf = _number_or_none(payload.get("exp")), _number_or_none(payload.get("nbf"))
    if exp is None or (nbf is None and payload.get("nbf") is not None):
        raise auth_invalid()
    if now >= exp:
        raise token_expired()
    if nbf is not None and now < nbf:
        raise token_not_yet_valid()


def _b64url_decode(segment: str) -> bytes:
    if not _BASE64URL_RE.fullmatch(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# ---- bodies and parameters -------------------------------------------------------------------


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_request("the body is not valid JSON") from None


def validate_create(body: object, known_videos: frozenset[str]) -> tuple[VideoSource, str | None]:
    """Check a create body; returns the video source and the callback URL (or None).

    ``known_videos`` are ids of result videos the simulator made, which a later create may
    name as ``video_id`` whatever their shape.
    """
    if not isinstance(body, dict):
        raise invalid_request("the body must be a JSON object")
    callback_url = body.get("callback_url")
    if callback_url is not None and not _is_http_url(callback_url):
        raise invalid_parameter("callback_url must be an http(s) URL")
    data = body.get("input")
    if not isinstance(data, dict):
        raise invalid_parameter("input is required and must be an object")

    video_id, video_url = data.get("video_id"), data.get("video_url")
    has_id, has_url = video_id is not None, video_url is not None
    if not has_id and not has_url:
        raise invalid_parameter("video_id or video_url is required")
    if has_id and has_url:
        raise invalid_parameter("video_id and video_url cannot both be set; send only one")
    source: VideoSource
    if has_id:
        if not isinstance(video_id, str) or not (
            video_id in known_videos or _VIDEO_ID_RE.fullmatch(video_id)
        ):
            raise invalid_parameter("video_id is invalid")
        source = ("video_id", video_id)
    else:
        if not _is_http_url(video_url):
            raise invalid_parameter("video_url must be an http(s) URL")
        source = ("video_url", str(video_url))
    task_id = data.get("task_id")
    if task_id is not None and not _non_empty_str(task_id):
        raise invalid_parameter("task_id must be a non-empty string")

    mode = data.get("mode")
    if mode is None:
        raise invalid_parameter("mode is required")
    if mode == Mode.TEXT:
        _validate_text_mode(data)
    elif mode == Mode.AUDIO:
        _validate_audio_mode(data)
    else:
        raise invalid_parameter(f"mode must be {Mode.TEXT} or {Mode.AUDIO}")
    return source, callback_url


def _validate_text_mode(data: dict[str, Any]) -> None:
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise invalid_parameter(f"text is required for {Mode.TEXT}")
    if len(text) > MAX_TEXT_CHARS:
        raise invalid_parameter(f"text must be at most {MAX_TEXT_CHARS} characters")
    voice_id = data.get("voice_id")
    if not isinstance(voice_id, str) or not voice_id.strip():
        raise invalid_parameter(f"voice_id is required for {Mode.TEXT}")
    voice = get_voice(voice_id)
    if voice is None:
        raise invalid_parameter("Voice id not found")
    # The reference's sources disagree on the default language; clients always send it, and
    # the simulator assumes "en" when it is missing.
    language = data.get("voice_language", "en")
    if language not in LANGUAGES:
        raise invalid_parameter(f"voice_language must be one of {', '.join(LANGUAGES)}")
    if not voice.speaks(language):
        raise invalid_parameter(f"voice_language {language} is not supported by voice {voice_id}")
    speed = data.get("voice_speed", 1.0)
    if not is_number(speed):
        raise invalid_parameter("voice_speed must be a number")
    if not MIN_VOICE_SPEED <= speed <= MAX_VOICE_SPEED:
        raise invalid_parameter(
            f"voice_speed must be between {MIN_VOICE_SPEED} and {MAX_VOICE_SPEED}"
        )
    if abs(speed * 10 - round(speed * 10)) > 1e-6:
        raise invalid_parameter("voice_speed must have at most one decimal place")


def _validate_audio_mode(data: dict[str, Any]) -> None:
    audio_type = data.get("audio_type")
    if audio_type is None:
        raise invalid_parameter(f"audio_type is required for {Mode.AUDIO}")
    if audio_type == "file":
        audio_file = data.get("audio_file")
        if not isinstance(audio_file, str) or not audio_file.strip():
            raise invalid_parameter("audio_file is required when audio_type is file")
        try:
            # validate=True refuses anything outside the alphabet, such as a data: prefix.
            audio = base64.b64decode(audio_file, validate=True)
        except (binascii.Error, ValueError):
            raise invalid_parameter("audio_file must be base64 encoded") from None
        if not audio:
            raise invalid_parameter("audio_file is empty")
        if len(audio) > MAX_AUDIO_BYTES:
            raise invalid_parameter("audio_file must be at most 5 MB")
    elif audio_type == "url":
        if not _is_http_url(data.get("audio_url")):
            raise invalid_parameter("audio_url must be an http(s) URL when audio_type is url")
    else:
        raise invalid_parameter("audio_type must be file or url")


def page_param(params: dict[str, list[str]], name: str, default: int, high: int | None) -> int:
    """A list call's ``pageNum`` / ``pageSize``: an integer from 1 to ``high``."""
    values = params.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise invalid_parameter(f"{name} must be an integer") from None
    if value < 1 or (high is not None and value > high):
        bounds = ">= 1" if high is None else f"between 1 and {high}"
        raise invalid_parameter(f"{name} must be {bounds}")
    return value


def is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number (not a boolean, not NaN or infinite)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _number_or_none(value: object) -> float | None:
    return float(value) if is_number(value) else None


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str) or value != value.strip():
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _non_empty_str(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""
