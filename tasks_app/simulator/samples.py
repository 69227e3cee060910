"""Sample source videos for demo mode, made by the simulator itself (plain Python, no Django).

The studio's form offers them as "Try a sample video", so that ``make run`` shows every check
the studio makes of a source video without the internet or a file of one's own. Each is
written with PyAV the first time it is asked for and then kept in memory (a few hundred KB in
all); nothing is downloaded.

* ``sample-ok.mp4``: 720 x 1280, 4 s: passes every check. Its face is a drawing (an oval, two
  eyes, brows, a nose and a mouth that moves), which OpenCV's bundled Haar cascade takes for a
  face; a drawing is all a machine without a camera or a photograph can offer.
* ``sample-noface.mp4``: the same frame and length with no face in it: the studio warns, and if
  sent anyway the simulator fails it as Kling does (its link contains ``noface``).
* ``sample-too-long.mp4``: the face, 12 s: longer than Kling takes.
* ``sample-too-small.mp4``: the face, 320 x 240: smaller than Kling takes.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import av
import numpy as np
import numpy.typing as npt

SAMPLES_PATH: Final = "/samples/"
SAMPLE_CONTENT_TYPE: Final = "video/mp4"

Frame = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample clip: its file name, size in pixels, length and whether it shows a face."""

    name: str
    width: int
    height: int
    seconds: int
    face: bool


FPS: Final = 12
SAMPLES: Final = (
    Sample("sample-ok.mp4", 720, 1280, 4, face=True),
    Sample("sample-noface.mp4", 720, 1280, 4, face=False),
    Sample("sample-too-long.mp4", 720, 1280, 12, face=True),
    Sample("sample-too-small.mp4", 320, 240, 4, face=True),
)
SAMPLE_NAMES: Final = tuple(sample.name for sample in SAMPLES)

_made: dict[str, bytes] = {}
_lock = threading.Lock()


def sample_bytes(name: str) -> bytes | None:
    """The MP4 file ``name`` (one of ``SAMPLE_NAMES``), made on first use; None for any other."""
    sample = next((sample for sample in SAMPLES if sample.name == name), None)
    if sample is None:
        return None
    # One lock for all: a page asking for every sample at once makes each once.
    with _lock:
        if name not in _made:
            _made[name] = _encode(sample)
        return _made[name]


def _encode(sample: Sample) -> bytes:
    # faststart puts the index first, as a well-made web video has it: the studio's check can
    # then read a few KB with a range request instead of the whole file. FFmpeg moves the
    # index by reopening the file by name, so it is written to a real file, not to memory.
    with tempfile.TemporaryDirectory(prefix="kling-sample-") as directory:
        path = Path(directory) / sample.name
        _write(sample, path)
        return path.read_bytes()


def _write(sample: Sample, path: Path) -> None:
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = sample.width
        stream.height = sample.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "28"}
        # Two pictures, the mouth shut and open, alternating four times a second.
        pictures = [_picture(sample, mouth_open=False), _picture(sample, mouth_open=True)]
        for index in range(sample.seconds * FPS):
            picture = pictures[(index // 3) % 2]
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


# Colours (RGB).
_BACKGROUND: Final = (140, 90, 60)
_SKIN: Final = (225, 185, 150)
_HAIR: Final = (60, 40, 30)
_WHITE: Final = (240, 240, 240)
_IRIS: Final = (20, 30, 40)
_NOSE: Final = (200, 155, 120)
_LIPS: Final = (160, 70, 70)


def _picture(sample: Sample, *, mouth_open: bool) -> Frame:
    """One frame: a plain background and, for a sample with a face, a face drawn on it."""
    height, width = sample.height, sample.width
    picture = np.empty((height, width, 3), dtype=np.uint8)
    picture[:] = _BACKGROUND
    # Soft vertical shading, so the frame is not one flat colour.
    shade = np.linspace(0, 30, height, dtype=np.float32)[:, None, None]
    picture[:] = np.clip(picture.astype(np.float32) - shade, 0, 255).astype(np.uint8)
    if not sample.face:
        _ellipse(picture, (0.5, 0.75), (0.2, 0.08), _SKIN)  # a shape that is no face
        return picture
    # Sizes are fractions of the shorter side, centred a little above the middle, so the
    # same face fits a portrait and a landscape frame.
    unit = min(width, height)
    cx, cy = width / 2, height * 0.44

    def at(dx: float, dy: float) -> tuple[float, float]:
        return (cx + dx * unit) / width, (cy + dy * unit) / height

    def size(rx: float, ry: float) -> tuple[float, float]:
        return rx * unit / width, ry * unit / height

    _ellipse(picture, at(0, 0), size(0.26, 0.35), _SKIN)
    _ellipse(picture, at(0, -0.21), size(0.28, 0.18), _HAIR, upper_half=True)
    for side in (-1, 1):
        _ellipse(picture, at(side * 0.11, -0.105), size(0.07, 0.02), _HAIR, upper_half=True)
        _ellipse(picture, at(side * 0.11, -0.04), size(0.058, 0.028), _WHITE)
        _ellipse(picture, at(side * 0.11, -0.04), size(0.022, 0.022), _IRIS)
    _ellipse(picture, at(0, 0.07), size(0.03, 0.055), _NOSE)
    _ellipse(picture, at(0, 0.12), size(0.05, 0.017), _NOSE)
    _ellipse(picture, at(0, 0.21), size(0.1, 0.045 if mouth_open else 0.03), _LIPS)
    return picture


def _ellipse(
    picture: Frame,
    centre: tuple[float, float],
    radii: tuple[float, float],
    colour: tuple[int, int, int],
    *,
    upper_half: bool = False,
) -> None:
    """Fill an ellipse given in fractions of the frame's width and height."""
    height, width = picture.shape[:2]
    cx, cy = centre[0] * width, centre[1] * height
    rx, ry = max(radii[0] * width, 1.0), max(radii[1] * height, 1.0)
    ys, xs = np.ogrid[:height, :width]
    inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
    if upper_half:
        inside &= ys <= cy
    picture[inside] = colour
