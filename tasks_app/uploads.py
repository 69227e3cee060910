"""An upload handler that stops reading an audio upload once it passes Kling's size limit."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest


class AudioSizeLimitHandler(FileUploadHandler):
    """Refuses the rest of an upload beyond ``KLING_MAX_AUDIO_BYTES``.

    It goes first in the chain, so the bytes past the limit never reach memory or disk; the
    view then tells the person the file is too big. Fields that came before the file in the
    form are kept, which is why the form puts the file last.
    """

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = settings.KLING_MAX_AUDIO_BYTES
        self.received = 0

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            if self.request is not None:
                self.request.upload_too_big = True  # type: ignore[attr-defined]
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
