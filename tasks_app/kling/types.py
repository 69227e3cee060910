"""What goes to Kling (a lip-sync request) and what comes back (tasks).

The request dataclasses validate *shape* only (types, exactly-one-of); Kling's own limits
(text length, speed range, file size) belong to the form that builds them.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from .errors import ErrorKind, KlingError


class Mode(StrEnum):
    TEXT = "text2video"
    AUDIO = "audio2video"


class TaskStatus(StrEnum):
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEED = "succeed"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """Whether the task has stopped changing (succeeded or failed)."""
        return self in (TaskStatus.SUCCEED, TaskStatus.FAILED)


def _optional_text(name: str, value: object) -> str | None:
    # Forms hand over "" for blank fields; treating blank as absent keeps "exactly one" honest.
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    return value.strip() or None


def _required_text(name: str, value: object) -> str:
    text = _optional_text(name, value)
    if text is None:
        raise ValueError(f"{name} is required")
    return text


@dataclass(frozen=True, slots=True)
class VideoSource:
    """The face video: a Kling-generated video's id, or a URL; exactly one."""

    video_id: str | None = None
    video_url: str | None = None

    def __post_init__(self) -> None:
        video_id = _optional_text("video_id", self.video_id)
        video_url = _optional_text("video_url", self.video_url)
        if (video_id is None) == (video_url is None):
            raise ValueError("give exactly one of video_id and video_url")
        object.__setattr__(self, "video_id", video_id)
        object.__setattr__(self, "video_url", video_url)


@dataclass(frozen=True, slots=True)
class TextSpeech:
    """Speech that Kling synthesises from ``text`` with one of its voices."""

    text: str
    voice_id: str
    voice_language: str
    voice_speed: Decimal = Decimal("1.0")

    def __post_init__(self) -> None:
        # Text is sent as typed (spaces may matter to the speech); only blank is refused.
        if not isinstance(self.text, str):
            raise ValueError(f"text must be a string, not {type(self.text).__name__}")
        if not self.text.strip():
            raise ValueError("text is required")
        object.__setattr__(self, "voice_id", _required_text("voice_id", self.voice_id))
        object.__setattr__(
            self, "voice_language", _required_text("voice_language", self.voice_language)
        )
        speed = self.voice_speed
        if isinstance(speed, bool) or not isinstance(speed, Decimal | int | float):
            raise ValueError("voice_speed must be a number")
        # str() first so a float like 1.1 becomes Decimal("1.1"), not its binary expansion.
        speed = speed if isinstance(speed, Decimal) else Decimal(str(speed))
        if not speed.is_finite():
            raise ValueError("voice_speed must be a finite number")
        object.__setattr__(self, "voice_speed", speed)


@dataclass(frozen=True, slots=True)
class AudioTrack:
    """Speech from an audio file: a URL Kling downloads, or the bytes themselves; exactly one."""

    audio_url: str | None = None
    audio_file: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        audio_url = _optional_text("audio_url", self.audio_url)
        audio_file = self.audio_file
        if isinstance(audio_file, bytearray | memoryview):
            audio_file = bytes(audio_file)
        if audio_file is not None and not isinstance(audio_file, bytes):
            raise ValueError(f"audio_file must be bytes, not {type(audio_file).__name__}")
        audio_file = audio_file or None
        if (audio_url is None) == (audio_file is None):
            raise ValueError("give exactly one of audio_url and audio_file")
        object.__setattr__(self, "audio_url", audio_url)
        object.__setattr__(self, "audio_file", audio_file)

    @property
    def audio_type(self) -> str:
        """Kling's ``audio_type``: "url" or "file"."""
        return "url" if self.audio_url is not None else "file"

    def __repr__(self) -> str:
        if self.audio_file is not None:
            return f"AudioTrack(audio_file=<{len(self.audio_file)} bytes>)"
        return f"AudioTrack(audio_url={self.audio_url!r})"


@dataclass(frozen=True, slots=True)
class LipSyncRequest:
    """One lip-sync job: a face video plus speech (text or audio)."""

    video: VideoSource
    speech: TextSpeech | AudioTrack
    task_id: str | None = None
    callback_url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.video, VideoSource):
            raise ValueError("video must be a VideoSource")
        if not isinstance(self.speech, TextSpeech | AudioTrack):
            raise ValueError("speech must be a TextSpeech or an AudioTrack")
        object.__setattr__(self, "task_id", _optional_text("task_id", self.task_id))
        object.__setattr__(self, "callback_url", _optional_text("callback_url", self.callback_url))

    @property
    def mode(self) -> Mode:
        """text2video for TextSpeech, audio2video for AudioTrack."""
        return Mode.TEXT if isinstance(self.speech, TextSpeech) else Mode.AUDIO

    def to_body(self) -> dict[str, Any]:
        """The exact JSON body of a create call."""
        inputs: dict[str, Any] = {}
        if self.video.video_id is not None:
            inputs["video_id"] = self.video.video_id
        else:
            inputs["video_url"] = self.video.video_url
        if self.task_id is not None:
            inputs["task_id"] = self.task_id
        inputs["mode"] = self.mode.value
        speech = self.speech
        if isinstance(speech, TextSpeech):
            inputs["text"] = speech.text
            inputs["voice_id"] = speech.voice_id
            inputs["voice_language"] = speech.voice_language
            inputs["voice_speed"] = float(round(speech.voice_speed, 1))
        else:
            inputs["audio_type"] = speech.audio_type
            if speech.audio_file is not None:
                inputs["audio_file"] = base64.b64encode(speech.audio_file).decode("ascii")
            else:
                inputs["audio_url"] = speech.audio_url
        body: dict[str, Any] = {"input": inputs}
        if self.callback_url is not None:
            body["callback_url"] = self.callback_url
        return body


@dataclass(frozen=True, slots=True)
class Video:
    """A video on Kling's side. ``id`` is what a later request can pass as ``video_id``."""

    id: str | None
    url: str
    duration: float | None

    @classmethod
    def from_data(cls, data: object) -> Video | None:
        """Parse ``{id, url, duration}``; None when there is no usable URL."""
        if not isinstance(data, dict):
            return None
        url = data.get("url")
        if not isinstance(url, str) or not url:
            return None
        return cls(id=_id_text(data.get("id")), url=url, duration=_seconds(data.get("duration")))


@dataclass(frozen=True, slots=True)
class KlingTask:
    """A lip-sync task as Kling reports it (create answer, query, list item or callback)."""

    task_id: str
    status: TaskStatus
    status_msg: str = ""
    parent_video: Video | None = None
    videos: tuple[Video, ...] = ()
    credits: Decimal | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    request_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_data(cls, data: object, request_id: str | None = None) -> KlingTask:
        """Parse a task object, tolerating missing optional parts and unknown extra fields.

        Raises KlingError(kind=BAD_RESPONSE) when ``task_id`` or a known ``task_status`` is
        missing, or when a result video has no URL: without those the task is unusable.
        """
        if not isinstance(data, dict):
            raise _bad(f"task object is {type(data).__name__}, not an object", request_id)
        task_id = _id_text(data.get("task_id"))
        if task_id is None:
            raise _bad("task object has no task_id", request_id)
        try:
            status = TaskStatus(data.get("task_status", ""))
        except ValueError:
            raise _bad(
                f"task {task_id} has unknown task_status {data.get('task_status')!r}", request_id
            ) from None

        info = data.get("task_info")
        parent_video = Video.from_data(info.get("parent_video")) if isinstance(info, dict) else None

        result = data.get("task_result")
        raw_videos = result.get("videos") if isinstance(result, dict) else None
        videos: list[Video] = []
        for item in raw_videos if isinstance(raw_videos, list) else ():
            video = Video.from_data(item)
            if video is None:
                raise _bad(f"task {task_id} has a result video without a url", request_id)
            videos.append(video)

        status_msg = data.get("task_status_msg")
        return cls(
            task_id=task_id,
            status=status,
            status_msg=status_msg if isinstance(status_msg, str) else "",
            parent_video=parent_video,
            videos=tuple(videos),
            credits=_decimal(data.get("final_unit_deduction")),
            created_at=_timestamp(data.get("created_at")),
            updated_at=_timestamp(data.get("updated_at")),
            request_id=request_id,
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of the list endpoint."""

    tasks: tuple[KlingTask, ...]
    request_id: str | None = None


def _bad(detail: str, request_id: str | None) -> KlingError:
    return KlingError(ErrorKind.BAD_RESPONSE, detail=detail, request_id=request_id)


def _id_text(value: object) -> str | None:
    # Kling's ids are 18-digit numbers in strings; accept a bare JSON number too.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _seconds(value: object) -> float | None:
    # Documented as a string ("5.1"); numbers and blanks are seen too.
    return _number(value)


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


# Below this a timestamp cannot be milliseconds of a plausible date (it would be 1973), so it
# is taken as seconds: a reseller answering in seconds then still gets the right date.
_MS_THRESHOLD = 100_000_000_000


def _timestamp(value: object) -> datetime | None:
    number = _number(value)
    if number is None or number <= 0:
        return None
    seconds = number / 1000 if number >= _MS_THRESHOLD else number
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
