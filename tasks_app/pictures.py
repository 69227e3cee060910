"""The pictures of a source video, with numpy and OpenCV: turned upright, as JPEG, a face.

Kept apart from ``probe`` so that only a process that checks a video loads OpenCV and numpy
(some 30 MB): ``probe.video_probe`` imports this module when it first runs.

The face check uses OpenCV's frontal-face Haar cascade, which ships inside the
opencv-python-headless wheel (nothing is downloaded at run time). Frames are scaled down to
about 512 px first: the cascade then takes some 60 ms a frame, and faces a person would film
for lip-sync are large.
"""

from __future__ import annotations

import os
import threading
from functools import cache

import cv2
import cv2.data
import numpy as np

FACE_SIDE = 512
JPEG_QUALITY = 85


def picture_turned(picture: np.ndarray, rotation: int) -> np.ndarray:
    """``picture`` turned by FFmpeg's ``rotation`` (counter-clockwise degrees), upright."""
    # np.rot90 turns counter-clockwise too.
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(picture, turns)) if turns else picture


def picture_jpeg(picture: np.ndarray, side: int) -> bytes | None:
    """``picture`` as a JPEG at most ``side`` pixels across; None if OpenCV cannot encode it."""
    ok, encoded = cv2.imencode(
        ".jpg", _scaled(picture, side), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    return encoded.tobytes() if ok else None


def picture_has_face(picture: np.ndarray) -> bool:
    gray = cv2.cvtColor(_scaled(picture, FACE_SIDE), cv2.COLOR_BGR2GRAY)
    gray = cv2.equalizeHist(gray)
    # One classifier for the process; OpenCV does not promise one may detect in two threads.
    with _classifier_lock:
        faces = _face_classifier().detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40)
        )
    return len(faces) > 0


def _scaled(picture: np.ndarray, side: int) -> np.ndarray:
    height, width = picture.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return picture
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)


_classifier_lock = threading.Lock()


@cache
def _face_classifier() -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():
        raise RuntimeError(f"OpenCV's face cascade is missing: {path}")
    return classifier
