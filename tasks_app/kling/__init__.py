"""A plain-Python client for Kling's lip-sync API (deliberately free of Django).

The public names are re-exported here so the app imports from ``tasks_app.kling`` only.
"""

from .auth import ApiKeyAuth, JwtAuth
from .client import KlingClient
from .errors import ErrorKind, KlingError
from .types import (
    AudioTrack,
    KlingTask,
    LipSyncRequest,
    Mode,
    TaskPage,
    TaskStatus,
    TextSpeech,
    Video,
    VideoSource,
)

__all__ = [
    "ApiKeyAuth",
    "AudioTrack",
    "ErrorKind",
    "JwtAuth",
    "KlingClient",
    "KlingError",
    "KlingTask",
    "LipSyncRequest",
    "Mode",
    "TaskPage",
    "TaskStatus",
    "TextSpeech",
    "Video",
    "VideoSource",
]
