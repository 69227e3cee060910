"""Keeping each result video in the studio's own storage (the disk or the bucket, through the
storage API alone), and serving it back with ranges."""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

import av
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.utils import timezone
from django.utils.translation import gettext_noop
from django_tasks import task

from tasks_app.fetch import FetchError, FetchReason, fetch, policy_from_settings
from tasks_app.models import Job, JobStatus
from tasks_app.storage import storage_errors
from tasks_app.wording import Message, at, render_english, say

if TYPE_CHECKING:
    from _hashlib import HASH

logger = logging.getLogger(__name__)

VIDEO_TYPES = ("video/", "application/octet-stream", "binary/octet-stream")
CHUNK = 256 * 1024
TOO_BIG = say(gettext_noop("The result video is larger than allowed."))


class ResultDownloadError(Exception):
    """The result could not be copied; the message is shown to people as it is.

    ``permanent`` marks a failure that trying again cannot fix (a link that is not a web link).
    """

    def __init__(self, message: Message, *, permanent: bool = False) -> None:
        super().__init__(render_english(message))
        self.message = message
        self.permanent = permanent


@task()
def store_result(job_id: int) -> None:
    job_store_result(job_id=job_id)


def job_store_result(*, job_id: int) -> None:
    """Copy a finished job's video from Kling into the studio's storage.

    A failure is recorded and retried with back-off; it never changes the job's status,
    since the video exists on Kling whatever happens to our copy.
    """
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.status != JobStatus.SUCCEEDED or job.stored_video:
        return
    Job.objects.filter(pk=job.pk).update(store_attempts=job.store_attempts + 1)
    attempts = job.store_attempts + 1
    try:
        name, size, digest = _download(job)
    except ResultDownloadError as err:
        logger.warning(
            "Copying the result of job %s failed: %s", job.pk, render_english(err.message)
        )
        with transaction.atomic():
            if attempts < settings.RESULT_STORE_ATTEMPTS and not err.permanent:
                retry_at = timezone.now() + timedelta(seconds=min(30 * 2 ** (attempts - 1), 3600))
                message = say(
                    gettext_noop("{reason} The studio will try again at {time}."),
                    reason=err.message,
                    time=at(retry_at),
                )
                store_result.using(run_after=retry_at).enqueue(job.pk)
            else:
                message = say(
                    gettext_noop(
                        "{reason} The studio gave up; Kling's link still works for 30 days."
                    ),
                    reason=err.message,
                )
            Job.objects.filter(pk=job.pk).update(
                store_error=render_english(message)[:500], store_message=message
            )
        return
    Job.objects.filter(pk=job.pk).update(
        stored_video=name, stored_size=size, stored_sha256=digest, store_error="", store_message={}
    )


SWEEP_BATCH = 50


def results_sweep(*, now: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
    """Copy again the results whose copy was lost with its worker (killed in the middle);
    return how many were started again.

    A copy under way takes at most its download's deadline; a finished job still without a
    copy, a problem or a retry planned well after that has lost its run. It is marked (so
    the next sweep leaves it alone) and queued again; the page says so meanwhile.
    """
    now = now or timezone.now()
    grace = settings.RESULT_FETCH_DEADLINE_SECONDS + settings.WORKER_SWEEP_GRACE_SECONDS
    lost = Job.objects.filter(
        status=JobStatus.SUCCEEDED,
        stored_video="",
        store_error="",
        store_attempts__lt=settings.RESULT_STORE_ATTEMPTS,
        # Only while Kling still has the video to copy from.
        finished_at__lt=now - timedelta(seconds=grace),
        finished_at__gte=now - timedelta(days=settings.KLING_RESULT_LIFETIME_DAYS),
    ).exclude(result_video_url="")
    # A few per sweep (``limit``), newest first: the sweep runs every minute.
    lost = lost.order_by("-finished_at")[:limit]
    message = say(
        gettext_noop("The studio's copy of this video was interrupted; it is copying it again.")
    )
    started = 0
    for job_id in lost.values_list("pk", flat=True):
        with transaction.atomic():
            # Only if still lost: another worker's sweep may have taken it meanwhile.
            taken = Job.objects.filter(pk=job_id, stored_video="", store_error="").update(
                store_error=render_english(message)[:500], store_message=message
            )
            if taken:
                logger.warning("The result copy of job %s was lost; copying it again", job_id)
                store_result.enqueue(job_id)
                started += 1
    return started


def _download(job: Job) -> tuple[str, int, str]:
    url = job.result_video_url
    if urlsplit(url).scheme not in ("http", "https"):
        raise ResultDownloadError(
            say(gettext_noop("The result link is not a web link.")), permanent=True
        )
    policy = policy_from_settings(
        max_bytes=settings.RESULT_MAX_BYTES,
        deadline_seconds=settings.RESULT_FETCH_DEADLINE_SECONDS,
    )
    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryFile() as spool:
        try:
            with fetch(url, policy=policy) as response:
                if response.status_code != 200:
                    raise ResultDownloadError(
                        say(
                            gettext_noop("Kling's file server answered {status}."),
                            status=response.status_code,
                        )
                    )
                content_type = response.headers.get("content-type", "").lower()
                if not content_type.startswith(VIDEO_TYPES):
                    raise ResultDownloadError(
                        say(
                            gettext_noop("The result link did not return a video ({type})."),
                            type=content_type or "?",
                        )
                    )
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    digest.update(chunk)
                    spool.write(chunk)
        except FetchError as err:
            raise ResultDownloadError(_fetch_problem(err), permanent=err.permanent) from None
        if size == 0:
            raise ResultDownloadError(say(gettext_noop("The result video was empty.")))
        size, digest = _labelled(spool, job_id=job.pk, size=size, digest=digest)
        spool.seek(0)
        try:
            name = default_storage.save(f"results/{job.team_id}/job-{job.pk}.mp4", File(spool))
        except storage_errors():
            logger.exception("Writing the result of job %s to the storage failed", job.pk)
            raise ResultDownloadError(
                say(gettext_noop("The studio could not write the copy to its file storage."))
            ) from None
    return name, size, digest.hexdigest()


def _labelled(spool: BinaryIO, *, job_id: int, size: int, digest: HASH) -> tuple[int, HASH]:
    """Replace the downloaded result in ``spool`` by its copy labelled "AI-generated"; return
    the size and SHA-256 of what ``spool`` then holds (the download's own when labelling
    failed, and ``spool`` is left as it came)."""
    with tempfile.TemporaryDirectory(prefix="studio-result-") as folder:
        labelled = Path(folder) / "labelled.mp4"
        if not label_as_ai_generated(source=spool, target=labelled, job_id=job_id):
            return size, digest
        spool.seek(0)
        spool.truncate()
        size, digest = 0, hashlib.sha256()
        with labelled.open("rb") as copy:
            while chunk := copy.read(CHUNK):
                size += len(chunk)
                digest.update(chunk)
                spool.write(chunk)
    return size, digest


# What the studio's copy of every result says of itself, in the MP4's own metadata (the
# "comment" and "description" tags, which players and `ffprobe` show).
AI_LABEL = "AI-generated"


def label_as_ai_generated(*, source: BinaryIO, target: Path, job_id: int) -> bool:
    """Write ``source`` (an MP4) to the file ``target`` labelled "AI-generated" in its
    metadata, without re-encoding: the same packets in a new container. Return whether it
    worked.

    A result that cannot be read or written so is kept as it came (the caller stores
    ``source``) and the failure logged: the label must never cost a result.
    """
    try:
        source.seek(0)
        with (
            av.open(source, mode="r") as original,
            # A path, not a file object: "faststart" reopens the file to move the index first.
            av.open(str(target), mode="w", format="mp4", options={"movflags": "faststart"}) as copy,
        ):
            copy.metadata.update(
                {key: value for key, value in original.metadata.items() if key != "encoder"}
            )
            copy.metadata["comment"] = AI_LABEL
            copy.metadata["description"] = AI_LABEL
            streams = {
                stream.index: copy.add_stream_from_template(stream)
                for stream in original.streams
                if stream.type in ("video", "audio")
            }
            if not any(stream.type == "video" for stream in original.streams):
                raise ValueError("no video stream")
            for packet in original.demux(*(original.streams[i] for i in streams)):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = streams[packet.stream.index]
                copy.mux(packet)
    except Exception as err:  # whatever PyAV raises, the result is kept
        logger.warning(
            "Labelling the result of job %s as AI-generated failed; it is stored as it came: %s",
            job_id,
            err,
        )
        return False
    return True


def _fetch_problem(err: FetchError) -> Message:
    if err.reason is FetchReason.TOO_BIG:
        return TOO_BIG
    if err.reason in (FetchReason.REFUSED, FetchReason.FAILED):
        # The wording result copies have always used (and translators have translated).
        return say(
            gettext_noop("The result video could not be downloaded ({kind})."), kind=err.detail
        )
    return err.message


# One range only, ASCII digits only: anything else is ignored and the whole file is served,
# as RFC 9110 allows.
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def ranged_file_response(
    request: HttpRequest,
    file: File,
    *,
    size: int,
    content_type: str,
    filename: str,
    as_attachment: bool,
) -> HttpResponseBase:
    """Serve ``file``, honouring a single byte range so that a video player can seek."""
    match = _RANGE.fullmatch(request.headers.get("Range", "").strip())
    if match and (match[1] or match[2]):
        if match[1]:
            start = _position(match[1], size)
            end = min(_position(match[2], size) if match[2] else size - 1, size - 1)
        else:
            start, end = size - _position(match[2], size), size - 1
        if start >= size or start > end:
            file.close()
            response: HttpResponseBase = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        file.seek(start)
        response = StreamingHttpResponse(
            _read(file, end - start + 1), status=206, content_type=content_type
        )
        response["Content-Length"] = str(end - start + 1)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    else:
        response = FileResponse(
            file, content_type=content_type, as_attachment=as_attachment, filename=filename
        )
        response["Content-Length"] = str(size)
    if as_attachment:
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _position(digits: str, size: int) -> int:
    """The number ``digits`` spell, or ``size`` if it is larger.

    Past the end, every position means the same; and int() refuses more than 4300 digits, so a
    Range header of thousands of them must not reach it.
    """
    digits = digits.lstrip("0") or "0"
    return size if len(digits) > len(str(size)) else min(int(digits), size)


def _read(file: File, length: int) -> Iterator[bytes]:
    try:
        while length > 0:
            chunk = file.read(min(CHUNK, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        file.close()
