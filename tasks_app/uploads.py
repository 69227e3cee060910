"""Audio uploads: reading them within Kling's size limit, and the names they are stored under.

Stored files are only ever served by the studio's own views (``job_audio``, ``job_video``),
which pick the content type; their names are generated so that nothing a person chose (a
``.html`` or ``.svg`` extension, say) reaches the storage.
"""

from __future__ import annotations

import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files import File
from django.core.files.uploadhandler import (
    FileUploadHandler,
    SkipFile,
    StopUpload,
    TemporaryFileUploadHandler,
)
from django.db import models
from django.db.models.fields.files import FieldFile
from django.http import HttpRequest
from django.utils import timezone

from tasks_app.kling.media import sniff_audio_format

# The job form's field for a source video file: its bytes count against the video's limit.
VIDEO_UPLOAD_FIELD = "video_file"


class AudioSizeLimitHandler(FileUploadHandler):
    """Refuses the rest of an upload beyond ``KLING_MAX_AUDIO_BYTES``.

    It goes first in the chain, so the bytes past the limit never reach memory or disk; the
    view then tells the person the file is too big. Fields that came before the file in the
    form are kept, which is why the form puts the file last. The source video has its own
    limit (``VideoSizeLimitHandler``), so its bytes do not count here.
    """

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = settings.KLING_MAX_AUDIO_BYTES
        self.received = 0

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if self.field_name == VIDEO_UPLOAD_FIELD:
            return raw_data
        self.received += len(raw_data)
        if self.received > self.limit:
            if self.request is not None:
                self.request.upload_too_big = True  # type: ignore[attr-defined]
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


class VideoSizeLimitHandler(FileUploadHandler):
    """Drops a source video upload once it passes ``KLING_VIDEO_MAX_BYTES``.

    It goes first in the chain, so the bytes past the limit never reach the disk. Unlike the
    audio limit it skips only this file (``SkipFile``): the video comes first in the form, and
    every field after it (the text, the audio) is still read, so the page shown again keeps
    them. ``request.video_upload_too_big`` tells the form why the file is missing.
    """

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = settings.KLING_VIDEO_MAX_BYTES
        self.received = 0

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if self.field_name != VIDEO_UPLOAD_FIELD:
            return raw_data
        self.received += len(raw_data)
        if self.received > self.limit:
            if self.request is not None:
                self.request.video_upload_too_big = True  # type: ignore[attr-defined]
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def media_upload_handlers(request: HttpRequest) -> list[FileUploadHandler]:
    """The job form's upload chain: the two size limits, then straight to a temporary file.

    Django would keep a small request's files in memory; these go to disk whatever their
    size, so the probe reads a file by its path and a large video never sits in memory.
    """
    return [
        VideoSizeLimitHandler(request),
        AudioSizeLimitHandler(request),
        TemporaryFileUploadHandler(request),
    ]


# --- Stored names ------------------------------------------------------------------------------

# The only types the studio serves an audio file as; anything it cannot recognise is served
# as opaque bytes, so a browser never renders a stored file as a page or an image.
AUDIO_CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
}
UNKNOWN_AUDIO_EXTENSION = "bin"
UNKNOWN_CONTENT_TYPE = "application/octet-stream"
# Enough to look past an ID3 tag at the frames that tell AAC from MP3.
SNIFF_BYTES = 4096


def audio_format_of(*, file: File) -> str | None:
    """The audio format of ``file`` judged by its bytes ("mp3", "wav", "m4a", "aac" or None).

    The position in the file is kept, so the caller can read or store it afterwards.
    """
    position = file.tell()
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    file.seek(position)
    return sniff_audio_format(head if isinstance(head, bytes) else head.encode())


def stored_audio_name(instance: models.Model, filename: str) -> str:
    """``Job.audio_file``'s ``upload_to``: a fresh name under the month, never the person's.

    The person's name (``voice.html``) is kept in ``Job.audio_name`` for display only. The
    extension is the one ``SniffedAudioFieldFile`` found in the bytes; any other is dropped.
    """
    extension = PurePosixPath(filename).suffix.lower().removeprefix(".")
    if extension not in AUDIO_CONTENT_TYPES:
        extension = UNKNOWN_AUDIO_EXTENSION
    return f"audio/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.{extension}"


def stored_source_name(instance: models.Model, filename: str) -> str:
    """``Job.video_file``'s ``upload_to``: a fresh name; the extension (mp4 or mov) is the one
    the probe found in the bytes, passed in ``filename`` by the code that stores it."""
    extension = PurePosixPath(filename).suffix.lower().removeprefix(".")
    if extension not in ("mp4", "mov"):
        extension = "mp4"
    return f"sources/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.{extension}"


def stored_poster_name(instance: models.Model, filename: str) -> str:
    """``Job.poster``'s ``upload_to``: a JPEG frame of the source video."""
    return f"posters/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.jpg"


def stored_video_name(instance: models.Model, filename: str) -> str:
    """``Job.stored_video``'s ``upload_to``: results are always MP4 (see tasks_app.results)."""
    return f"results/{timezone.now():%Y/%m}/{uuid.uuid4().hex}.mp4"


class SniffedAudioFieldFile(FieldFile):
    """Stores an audio file under an extension taken from its bytes, not from its name.

    ``upload_to`` only sees a name, so this is where the bytes are read: every way of
    storing a file on the field (``save()``, or assigning an upload and saving the job)
    passes through here.
    """

    def save(self, name: str, content: File, save: bool = True) -> None:
        extension = audio_format_of(file=content) or UNKNOWN_AUDIO_EXTENSION
        super().save(f"audio.{extension}", content, save)


class SniffedAudioField(models.FileField):
    attr_class = SniffedAudioFieldFile
