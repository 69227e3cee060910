"""Real media files for the tests, written with PyAV (never hand-made bytes).

- ``make_video``: an MP4 or MOV clip, showing scikit-image's ``astronaut`` photograph (a real
  face) or a synthetic pattern of gradients and shapes (no face); optionally with sound, turned
  (a phone's portrait clip), or with film grain so that it is large (a bench's 100 MB clip);
- ``make_audio``: a tone as WAV, MP3, M4A or AAC (ADTS);
- ``make_audio_only_mp4``: an MP4 with sound and no video stream;
- ``make_not_media``: a file that is no media at all.

Each writes ``path`` and returns it; ``*_bytes`` variants return the file's bytes. Frame
rates are low (5 fps by default) so that the files are small and quick to make.
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from skimage import data

AudioFormat = Literal["wav", "mp3", "m4a", "aac"]
SAMPLE_RATE = 22050
# (muxer, codec) for each audio format; "adts" is raw AAC, "ipod" FFmpeg's M4A muxer.
AUDIO_WRITERS: dict[str, tuple[str, str]] = {
    "wav": ("wav", "pcm_s16le"),
    "mp3": ("mp3", "libmp3lame"),
    "m4a": ("ipod", "aac"),
    "aac": ("adts", "aac"),
}


def make_video(
    path: Path,
    *,
    seconds: float,
    width: int,
    height: int,
    container: Literal["mp4", "mov", "matroska"] = "mp4",
    face: bool = True,
    audio: bool = False,
    fps: int = 5,
    rotation: int = 0,
    grain: int = 0,
    keyframe_seconds: float = 1.0,
    faststart: bool = False,
) -> Path:
    """A clip of ``seconds`` at ``width`` x ``height`` (H.264, a keyframe every second).

    ``rotation`` (degrees counter-clockwise, a multiple of 90) is how a phone stores a clip:
    the pictures turned the other way, and a display rotation that turns them back, so that the
    clip still shows ``width`` x ``height`` upright.
    ``grain`` (0 to 255) adds that much noise, the same on every frame, at a high bitrate:
    keyframes (one every ``keyframe_seconds``) are then large and the frames between them
    small, as in a camera's high-bitrate clip (at 64, a keyframe is about ``width * height *
    1.3`` bytes). ``faststart`` puts the MP4 index first.
    """
    picture = _face_picture(width, height) if face else None
    options = {"movflags": "faststart"} if faststart else {}
    # The same grain on every frame: keyframes are large, the frames between them small, as
    # in a camera's high-bitrate clip.
    noise = np.random.default_rng(7).integers(0, grain + 1, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), mode="w", format=container, options=options) as output:
        turns = -round(rotation / 90) % 4
        stored_width, stored_height = (height, width) if turns % 2 else (width, height)
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = stored_width, stored_height, "yuv420p"
        stream.codec_context.gop_size = max(1, round(fps * keyframe_seconds))
        if grain:
            # Noise does not compress: a constant low quantiser keeps every bit of it.
            stream.codec_context.options = {"qp": "4", "preset": "ultrafast"}
        else:
            stream.codec_context.options = {"preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        sound = output.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio else None
        frames = max(1, round(seconds * fps))
        for index in range(frames):
            image = picture if picture is not None else _pattern(width, height, index)
            if grain:
                image = cv2.add(image, noise)
            if turns:
                image = np.ascontiguousarray(np.rot90(image, turns))
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
        if sound is not None:
            _write_tone(output, sound, seconds)
    return path


def make_audio(path: Path, *, seconds: float, format: AudioFormat = "wav") -> Path:
    """A 440 Hz tone of ``seconds`` in ``format``."""
    muxer, codec = AUDIO_WRITERS[format]
    with av.open(str(path), mode="w", format=muxer) as output:
        _write_tone(output, output.add_stream(codec, rate=SAMPLE_RATE, layout="mono"), seconds)
    return path


def make_audio_only_mp4(path: Path, *, seconds: float) -> Path:
    """An MP4 (the video container) holding sound only."""
    with av.open(str(path), mode="w", format="mp4") as output:
        _write_tone(output, output.add_stream("aac", rate=SAMPLE_RATE, layout="mono"), seconds)
    return path


def make_not_media(path: Path) -> Path:
    """A file that no demuxer takes for media (text, as a sign-in page would be)."""
    path.write_bytes(b"<html><body>Sign in to continue</body></html>\n" * 200)
    return path


def video_bytes(**options: object) -> bytes:
    """``make_video``'s file as bytes (the options are ``make_video``'s)."""
    suffix = {"matroska": ".mkv"}.get(
        str(options.get("container")), f".{options.get('container', 'mp4')}"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = make_video(Path(folder) / f"clip{suffix}", **options)  # type: ignore[arg-type]
        return path.read_bytes()


def audio_bytes(*, seconds: float, format: AudioFormat = "wav") -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return make_audio(
            Path(folder) / f"tone.{format}", seconds=seconds, format=format
        ).read_bytes()


@cache
def _astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut())


def _face_picture(width: int, height: int) -> np.ndarray:
    """The astronaut photograph scaled to fit ``width`` x ``height``, padded in grey."""
    photo = _astronaut()
    scale = min(width / photo.shape[1], height / photo.shape[0])
    size = (max(1, int(photo.shape[1] * scale)), max(1, int(photo.shape[0] * scale)))
    scaled = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 128, dtype=np.uint8)
    top, left = (height - size[1]) // 2, (width - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = scaled
    return canvas


def _pattern(width: int, height: int, index: int) -> np.ndarray:
    """Colour gradients with a moving rectangle and circle: plenty of edges, no face."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = x[None, :].astype(np.uint8)
    image[..., 1] = y[:, None].astype(np.uint8)
    image[..., 2] = (index * 17) % 256
    side = max(4, min(width, height) // 4)
    left = (index * side // 3) % max(1, width - side)
    cv2.rectangle(image, (left, side // 2), (left + side, side // 2 + side), (250, 40, 40), -1)
    cv2.circle(image, (width // 2, height * 2 // 3), side // 2, (30, 30, 220), -1)
    return image


def _write_tone(
    output: av.container.OutputContainer, stream: av.stream.Stream, seconds: float
) -> None:
    assert isinstance(stream, av.AudioStream)
    codec = stream.codec_context
    layout = "mono"
    sample_format = codec.format.name if codec.format else "s16"
    # Encoders take fixed-size frames (AAC 1024 samples); PCM takes any.
    per_frame = codec.frame_size or 1024
    total = round(seconds * SAMPLE_RATE)
    t = np.arange(total, dtype=np.float64) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    for start in range(0, total, per_frame):
        piece = tone[start : start + per_frame]
        frame = _audio_frame(piece, sample_format, layout)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        frame.time_base = Fraction(1, SAMPLE_RATE)
        output.mux(stream.encode(frame))
    output.mux(stream.encode())


def _audio_frame(piece: np.ndarray, sample_format: str, layout: str) -> av.AudioFrame:
    samples: np.ndarray
    if sample_format in ("fltp", "flt"):
        samples = piece.astype(np.float32)[None, :]
    elif sample_format in ("s16p", "s16"):
        samples = (piece * 32767).astype(np.int16)[None, :]
    elif sample_format in ("s32p", "s32"):
        samples = (piece * 2147483647).astype(np.int32)[None, :]
    else:
        raise ValueError(f"no test writer for sample format {sample_format}")
    return av.AudioFrame.from_ndarray(samples, format=sample_format, layout=layout)
