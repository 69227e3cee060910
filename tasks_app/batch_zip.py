"""A batch's results as one ZIP, written while it is sent: constant memory whatever its size.

``zipfile`` writes to a stream it cannot seek in by putting each entry's sizes and checksum
after its data (a data descriptor), so the archive is built into a small write-only buffer
that is emptied after every chunk of every video. The videos are stored as they are (an MP4
is already compressed); the manifest, last, is deflated.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import partial
from pathlib import PurePosixPath

from django.utils import timezone, translation
from django.utils.text import slugify
from django.utils.translation import gettext as _

from tasks_app.models import Job, JobMode, JobStatus
from tasks_app.wording import render

CHUNK = 256 * 1024
MANIFEST_NAME = "manifest.csv"
# Column names stay untranslated: spreadsheets and scripts read the file by its header.
MANIFEST_COLUMNS = (
    "row",
    "status",
    "text",
    "voice",
    "language",
    "speed",
    "file_name",
    "kling_task_id",
    "credits",
    "failure_reason",
)
# A file name says which row it is and how the row starts: a few words, within this length.
NAME_WORDS = 6
NAME_CHARS = 40
# Past this an entry needs ZIP64 sizes, which must be chosen before its data is written.
LARGE_ENTRY = 1 << 30
# A cell starting with one of these runs as a formula in spreadsheet programs; a person's
# text must never do that on the machine of whoever opens the manifest.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: object) -> str:
    """``value`` as a CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def result_name(job: Job) -> str:
    """The row's file in the ZIP: ``<row>-<first words of the text>.mp4`` (an audio row is
    named after its audio)."""
    words = job.text if job.mode == JobMode.TEXT else PurePosixPath(job.summary).stem
    slug = slugify(" ".join(words.split()[:NAME_WORDS]), allow_unicode=True)
    slug = slug[:NAME_CHARS].strip("-_")
    return f"{job.batch_row}-{slug}.mp4" if slug else f"{job.batch_row}.mp4"


class _Pipe:
    """Where ``zipfile`` writes: kept until taken. It has no ``tell`` or ``seek``, so
    ``zipfile`` treats it as the stream it is."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> Iterator[bytes]:
        """What was written since last taken, as one piece (none when nothing was)."""
        if self._parts:
            data = b"".join(self._parts)
            self._parts.clear()
            yield data


def _entry(name: str, moment: datetime | None) -> zipfile.ZipInfo:
    local = timezone.localtime(moment or timezone.now())
    info = zipfile.ZipInfo(name, date_time=max(local.timetuple()[:6], (1980, 1, 1, 0, 0, 0)))
    info.external_attr = 0o644 << 16
    return info


def _why_left_out(job: Job) -> str:
    """Why the row's video is not in the ZIP (in the active language); "" when it is."""
    if job.status == JobStatus.SUCCEEDED:
        if job.stored_video:
            return ""
        if job.store_error:
            return render(job.store_message) or job.store_error
        return _("The studio has no copy of this video yet; try the download again later.")
    if job.is_active:
        return _("Not finished yet.")
    return render(job.status_message) or job.status_detail


def _manifest_line(job: Job, *, file_name: str, reason: str) -> list[str]:
    values = (
        job.batch_row,
        job.status,
        job.summary,
        job.voice_id,
        job.voice_language,
        job.voice_speed,
        file_name,
        job.kling_task_id,
        job.credits,
        reason,
    )
    return [spreadsheet_cell(value) for value in values]


def batch_zip_chunks(*, jobs: Iterable[Job], language: str) -> Iterator[bytes]:
    """The ZIP of ``jobs`` (a batch's rows), piece by piece: every row's stored result, then
    ``manifest.csv``, one line per row, saying in ``language`` why a row has no file."""
    pipe = _Pipe()
    lines: list[list[str]] = []
    with zipfile.ZipFile(pipe, mode="w") as archive:
        for job in jobs:
            with translation.override(language):
                reason = _why_left_out(job)
            file_name = ""
            if not reason:
                storage = job.stored_video.storage
                try:
                    source = storage.open(job.stored_video.name or "", "rb")
                except FileNotFoundError:
                    with translation.override(language):
                        reason = _("The studio's copy of this video is missing.")
                else:
                    file_name = result_name(job)
                    large = not job.stored_size or job.stored_size > LARGE_ENTRY
                    with (
                        source,
                        archive.open(
                            _entry(file_name, job.finished_at), mode="w", force_zip64=large
                        ) as entry,
                    ):
                        for chunk in iter(partial(source.read, CHUNK), b""):
                            entry.write(chunk)
                            yield from pipe.take()
            lines.append(_manifest_line(job, file_name=file_name, reason=reason))
            yield from pipe.take()
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(lines)
        archive.writestr(
            _entry(MANIFEST_NAME, None),
            # With a BOM, so spreadsheet programs read its Chinese as UTF-8.
            text.getvalue().encode("utf-8-sig"),
            compress_type=zipfile.ZIP_DEFLATED,
        )
    yield from pipe.take()
