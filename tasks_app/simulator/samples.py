"""Sample source videos for demo mode, made by the simulator itself (plain Python, no Django).

The studio's form offers them as "Try a sample video", so that ``make run`` shows every check
the studio makes of a source video without the internet or a file of one's own. Each is
written with PyAV the first time it is asked for (``sample_drawing``) and then kept in memory
(a few hundred KB in all); nothing is downloaded.

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

SAMPLES_PATH: Final = "/samples/"
SAMPLE_CONTENT_TYPE: Final = "video/mp4"


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
    # The drawing needs numpy (16 MB a process): loaded by the first sample asked for, so the
    # studio's pages, which only list the samples, never load it.
    from tasks_app.simulator.sample_drawing import sample_write

    # faststart puts the index first, as a well-made web video has it: the studio's check can
    # then read a few KB with a range request instead of the whole file. FFmpeg moves the
    # index by reopening the file by name, so it is written to a real file, not to memory.
    with tempfile.TemporaryDirectory(prefix="kling-sample-") as directory:
        path = Path(directory) / sample.name
        sample_write(sample, path, fps=FPS)
        return path.read_bytes()
