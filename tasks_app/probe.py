"""Reading a source video or audio track before anything is sent to Kling.

PyAV (FFmpeg's bindings) opens and decodes the media: the studio never parses a container by
hand. A video's facts (container, codec, duration, sides, size), a poster frame and a face
check are measured once; the refusals and warnings are then plain comparisons with Kling's
limits, so the form, the jobs and the bench judge the same facts the same way.

The pictures (turned upright, the poster, the face check with OpenCV) are ``pictures``'.

The functions take their limits as arguments; the ``*_by_settings`` helpers read the studio's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import av
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from django.conf import settings
from django.utils.translation import gettext_noop

from tasks_app.wording import Message, say

if TYPE_CHECKING:
    import numpy as np


class SeekableFile(Protocol):
    """What PyAV needs of a file object: a binary file, a Django ``File``, a ``RemoteFile``."""

    def read(self, size: int = ..., /) -> Any: ...
    def seek(self, offset: int, whence: int = ..., /) -> int: ...
    def tell(self) -> int: ...


MediaSource = str | Path | SeekableFile

# PyAV's name for FFmpeg's ISO base media demuxer: MP4 and MOV (and M4A, 3GP) all read as it.
ISO_MEDIA = "mov,mp4,m4a,3gp,3g2,mj2"
# Frames looked at for a face, spread across the clip; the middle one first (it is the poster).
FACE_FRAMES = 5
POSTER_SIDE = 480
THUMB_SIDE = 160
# Frames decoded past a keyframe to reach a moment: a clip with keyframes far apart is looked
# at near its keyframes rather than decoded whole.
MAX_DECODE_PER_FRAME = 30
MB = 1024 * 1024
AUDIO_FORMATS: dict[str, Literal["mp3", "wav", "m4a", "aac"]] = {
    "mp3": "mp3",
    "wav": "wav",
    "aac": "aac",
    ISO_MEDIA: "m4a",
}


class MediaReason(StrEnum):
    NOT_MEDIA = "not_media"
    NOT_MP4 = "not_mp4"
    NO_VIDEO = "no_video"
    NO_AUDIO = "no_audio"
    TOO_SLOW = "too_slow"


class MediaError(Exception):
    """Media the studio could not read, or will not take; ``message`` is a ``say`` message."""

    def __init__(self, reason: MediaReason, message: Message) -> None:
        super().__init__(message["msg"].format(**message["args"]))
        self.reason = reason
        self.message = message


@dataclass(frozen=True, kw_only=True)
class VideoFacts:
    container: str  # PyAV's format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    extension: Literal["mp4", "mov"]  # by the file's brand: QuickTime's is "mov"
    video_codec: str  # e.g. "h264", "hevc"
    duration: float  # seconds
    width: int  # as shown: a phone's portrait clip, stored turned, is taller than wide
    height: int
    size: int | None  # bytes, when known
    face_found: bool | None  # None: not checked
    frames_checked: int
    frame_times: tuple[float, ...]  # seconds into the clip of each frame looked at, in order
    frame_thumbs: tuple[bytes, ...]  # a JPEG of each of those frames, longest side THUMB_SIDE
    poster_jpeg: bytes | None  # the middle frame, longest side at most POSTER_SIDE
    has_audio: bool


@dataclass(frozen=True, kw_only=True)
class AudioFacts:
    format: Literal["mp3", "wav", "m4a", "aac"]
    codec: str
    duration: float  # seconds
    size: int | None


def video_probe(
    *,
    source: MediaSource,
    size: int | None = None,
    deadline: float,
    face_check: bool = True,
) -> VideoFacts:
    """What ``source`` (a path, or a seekable binary file such as ``fetch.RemoteFile``) holds.

    ``size`` is the file's size in bytes when the caller knows it (else it is measured).
    ``deadline`` is a ``time.monotonic()`` moment, checked between the steps. Raises
    :class:`MediaError`; a ``RemoteFile``'s ``FetchError`` passes through as it is.
    """
    # OpenCV and numpy (30 MB a process) load with the first video checked, not with the
    # studio: a web worker that only serves pages never holds them.
    from tasks_app import pictures

    _in_time(deadline)
    if size is None:
        size = _size_of(source)
    not_video = MediaError(
        MediaReason.NOT_MEDIA,
        say(gettext_noop("This file is not a video the studio can read.")),
    )
    with _opened(source, unreadable=not_video) as container:
        if container.format.name != ISO_MEDIA:
            raise MediaError(
                MediaReason.NOT_MP4,
                say(
                    gettext_noop("Only MP4 and MOV videos are taken; this file is {format}."),
                    format=container.format.long_name or container.format.name,
                ),
            )
        stream = _video_stream(container)
        if stream is None:
            raise MediaError(
                MediaReason.NO_VIDEO,
                say(gettext_noop("This file has no video in it (only sound, or nothing).")),
            )
        _in_time(deadline)
        duration = _duration(container, stream)
        # Slice threads, not frame threads: those hold frames back, reading packets ahead.
        stream.thread_type = "SLICE"
        targets = [duration * (index + 0.5) / FACE_FRAMES for index in range(FACE_FRAMES)]
        middle = targets.pop(FACE_FRAMES // 2)
        looked: dict[int | None, tuple[float, np.ndarray]] = {}
        poster_jpeg: bytes | None = None
        rotation = 0
        face_found: bool | None = None
        for target in [middle, *targets] if face_check else [middle]:
            _in_time(deadline)
            frame = _frame_at(container, stream, target, deadline)
            if frame is None or frame.pts in looked:
                continue
            rotation = frame.rotation
            picture = pictures.picture_turned(frame.to_ndarray(format="bgr24"), rotation)
            if poster_jpeg is None:
                poster_jpeg = _jpeg(picture, POSTER_SIDE)
            looked[frame.pts] = (_frame_time(frame, stream), picture)
            if face_check:
                face_found = pictures.picture_has_face(picture)
                if face_found:
                    break
        if poster_jpeg is None:
            raise MediaError(
                MediaReason.NOT_MEDIA,
                say(gettext_noop("The video's pictures could not be decoded.")),
            )
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation % 180:
            width, height = height, width
        seen = sorted(looked.values(), key=lambda pair: pair[0])
        return VideoFacts(
            container=container.format.name,
            extension="mov" if _brand(container) == "qt" else "mp4",
            video_codec=stream.codec_context.name,
            duration=duration,
            width=width,
            height=height,
            size=size,
            face_found=face_found,
            frames_checked=len(seen) if face_check else 0,
            frame_times=tuple(moment for moment, _ in seen) if face_check else (),
            frame_thumbs=tuple(_jpeg(picture, THUMB_SIDE) for _, picture in seen)
            if face_check
            else (),
            poster_jpeg=poster_jpeg,
            has_audio=bool(container.streams.audio),
        )


def audio_probe(*, source: MediaSource, size: int | None = None) -> AudioFacts:
    """The format and length of an audio track (MP3, WAV, M4A or AAC). Raises MediaError."""
    if size is None:
        size = _size_of(source)
    with _opened(source, unreadable=_not_audio()) as container:
        kind = AUDIO_FORMATS.get(container.format.name)
        stream = container.streams.audio[0] if container.streams.audio else None
        if kind is None or stream is None:
            raise _not_audio()
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        samples = 0
        try:
            for frame in container.decode(stream):
                samples += frame.samples
                # One frame shows it decodes; without a stated length, count them all.
                if duration is not None:
                    break
        except av.FFmpegError:
            raise _not_audio() from None
        if not samples:
            raise _not_audio()
        if duration is None:
            duration = samples / (stream.codec_context.sample_rate or 1)
        return AudioFacts(
            format=kind, codec=stream.codec_context.name, duration=duration, size=size
        )


def video_refusals(
    *,
    facts: VideoFacts,
    min_seconds: float,
    max_seconds: float,
    min_side: int,
    max_side: int,
    max_bytes: int,
) -> list[Message]:
    """Why Kling would refuse this video, each with the measured value and the limit."""
    refusals = []
    if not min_seconds <= facts.duration <= max_seconds:
        refusals.append(
            say(
                gettext_noop("This video is {seconds} s long; Kling takes {min} to {max} s."),
                seconds=_seconds(facts.duration, min_seconds, max_seconds),
                min=f"{min_seconds:g}",
                max=f"{max_seconds:g}",
            )
        )
    if not all(min_side <= side <= max_side for side in (facts.width, facts.height)):
        refusals.append(
            say(
                gettext_noop(
                    "This video is {width} × {height} pixels; Kling takes sides of {min} to "  # noqa: RUF001
                    "{max} pixels."
                ),
                width=facts.width,
                height=facts.height,
                min=min_side,
                max=max_side,
            )
        )
    if facts.size is not None and facts.size > max_bytes:
        refusals.append(
            say(
                gettext_noop("This video is {size} MB; the studio takes videos up to {max} MB."),
                size=f"{facts.size / MB:.1f}",
                max=f"{max_bytes / MB:g}",
            )
        )
    return refusals


def audio_refusals(*, facts: AudioFacts, min_seconds: float, max_seconds: float) -> list[Message]:
    """Why Kling would refuse this audio track, with the measured length and the limits."""
    if min_seconds <= facts.duration <= max_seconds:
        return []
    return [
        say(
            gettext_noop("This audio is {seconds} s long; Kling takes {min} to {max} s."),
            seconds=_seconds(facts.duration, min_seconds, max_seconds),
            min=f"{min_seconds:g}",
            max=f"{max_seconds:g}",
        )
    ]


def audio_warnings(*, audio_seconds: float, video_seconds: float | None) -> list[Message]:
    """What to tell the person without refusing: audio longer than the video (what Kling
    does with the rest is not documented)."""
    # A twentieth of a second is encoders' rounding, not a longer track.
    if video_seconds is None or audio_seconds <= video_seconds + 0.05:
        return []
    return [
        say(
            gettext_noop(
                "The audio ({audio} s) is longer than the video ({video} s); Kling does not "
                "say what it does with the rest."
            ),
            audio=f"{audio_seconds:.1f}",
            video=f"{video_seconds:.1f}",
        )
    ]


def check_deadline() -> float:
    """The monotonic moment one check must end by (``MEDIA_CHECK_SECONDS`` from now)."""
    return time.monotonic() + settings.MEDIA_CHECK_SECONDS


def video_refusals_by_settings(*, facts: VideoFacts) -> list[Message]:
    return video_refusals(
        facts=facts,
        min_seconds=settings.KLING_VIDEO_MIN_SECONDS,
        max_seconds=settings.KLING_VIDEO_MAX_SECONDS,
        min_side=settings.KLING_VIDEO_MIN_SIDE,
        max_side=settings.KLING_VIDEO_MAX_SIDE,
        max_bytes=settings.KLING_VIDEO_MAX_BYTES,
    )


def audio_refusals_by_settings(*, facts: AudioFacts) -> list[Message]:
    return audio_refusals(
        facts=facts,
        min_seconds=settings.KLING_AUDIO_MIN_SECONDS,
        max_seconds=settings.KLING_AUDIO_MAX_SECONDS,
    )


@contextmanager
def _opened(source: MediaSource, *, unreadable: MediaError) -> Iterator[InputContainer]:
    if not isinstance(source, (str, Path)):
        source.seek(0)
    try:
        container = av.open(
            os.fspath(source) if isinstance(source, (str, Path)) else source,
            mode="r",
            metadata_errors="ignore",
        )
    except (av.FFmpegError, UnicodeDecodeError):
        raise unreadable from None
    with container:
        yield container


def _video_stream(container: InputContainer) -> VideoStream | None:
    for stream in container.streams.video:
        # An audio file's cover picture is a video stream of one still: not a video.
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        if stream.codec_context.width and stream.codec_context.height:
            return stream
    return None


def _duration(container: InputContainer, stream: VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _brand(container: InputContainer) -> str:
    return str(container.metadata.get("major_brand", "")).strip()


def _frame_at(
    container: InputContainer, stream: VideoStream, moment: float, deadline: float
) -> VideoFrame | None:
    """The frame shown at ``moment`` seconds into the clip, or the nearest one reached after
    ``MAX_DECODE_PER_FRAME`` frames from the keyframe before it."""
    assert stream.time_base is not None
    start = stream.start_time or 0
    try:
        container.seek(start + int(moment / stream.time_base), stream=stream, backward=True)
        chosen: VideoFrame | None = None
        for decoded, frame in enumerate(container.decode(stream)):
            chosen = frame
            if decoded >= MAX_DECODE_PER_FRAME or _frame_time(frame, stream) >= moment:
                break
            _in_time(deadline)
        return chosen
    except av.FFmpegError:
        return None


def _frame_time(frame: VideoFrame, stream: VideoStream) -> float:
    if frame.pts is None or stream.time_base is None:
        return 0.0
    return float((frame.pts - (stream.start_time or 0)) * stream.time_base)


def _jpeg(picture: np.ndarray, side: int) -> bytes:
    from tasks_app.pictures import picture_jpeg

    encoded = picture_jpeg(picture, side)
    if encoded is None:
        raise MediaError(
            MediaReason.NOT_MEDIA, say(gettext_noop("The video's pictures could not be decoded."))
        )
    return encoded


def _size_of(source: MediaSource) -> int | None:
    if isinstance(source, (str, Path)):
        return os.path.getsize(source)
    known = getattr(source, "size", None)
    if isinstance(known, int):
        return known
    try:
        end = source.seek(0, os.SEEK_END)
        source.seek(0)
        return end
    except (OSError, ValueError):
        return None


def _seconds(value: float, *limits: float) -> str:
    # 10.04 s must not read "10.0 s" in a refusal that says the limit is 10 s.
    shown = f"{value:.1f}"
    if any(float(shown) == limit for limit in limits):
        shown = f"{value:.2f}"
    return shown


def _in_time(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise MediaError(
            MediaReason.TOO_SLOW, say(gettext_noop("The studio could not read the video in time."))
        )


def _not_audio() -> MediaError:
    return MediaError(
        MediaReason.NOT_MEDIA,
        say(gettext_noop("This is not a sound file the studio can read (MP3, WAV, M4A or AAC).")),
    )
