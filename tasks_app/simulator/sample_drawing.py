"""Drawing and encoding the demo's sample videos (``samples``), with numpy and PyAV."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import av
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tasks_app.simulator.samples import Sample

Frame = npt.NDArray[np.uint8]


def sample_write(sample: Sample, path: Path, *, fps: int) -> None:
    """Encode ``sample`` as an H.264 MP4 at ``path``."""
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = sample.width
        stream.height = sample.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "28"}
        # Two pictures, the mouth shut and open, alternating four times a second.
        pictures = [_picture(sample, mouth_open=False), _picture(sample, mouth_open=True)]
        for index in range(sample.seconds * fps):
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
