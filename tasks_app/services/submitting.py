"""What a person asks for: new jobs, retries, cancelling and archiving, with the rules every
submission obeys (one job per submission key, a per-minute limit, what may be retried)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from tasks_app.models import Job, JobMode, JobStatus, Team
from tasks_app.services.lifecycle import job_schedule
from tasks_app.services.status import job_status_change, job_tell
from tasks_app.wording import say

if TYPE_CHECKING:
    from django.contrib.auth.models import User

RETRY_NAMESPACE = uuid.UUID("6f4b8a9e-6b1d-4f55-9a43-3d0b1f5e2c10")
RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


class SubmissionRefused(Exception):
    """A submission the rules turn down; the message is shown to the person as it is."""


@dataclass(frozen=True, kw_only=True)
class JobInput:
    """What a person asked for, already checked against Kling's limits by the form."""

    mode: str
    video_id: str = ""
    video_url: str = ""
    parent_task_id: str = ""
    text: str = ""
    voice_id: str = ""
    voice_language: str = ""
    voice_speed: Decimal | None = None
    audio_url: str = ""
    audio_upload: UploadedFile | None = None
    # A retry reuses the stored file of the job it repeats rather than a new upload.
    audio_stored_name: str = ""
    audio_name: str = ""
    # A video from the person's computer: already in storage (the form keeps a checked
    # upload there so a page shown again needs no second upload, and a retry reuses it),
    # or a file to store now.
    video_stored_name: str = ""
    video_upload: File | None = None
    video_name: str = ""
    # What the studio measured of the sources before saving (tasks_app.probe); None where
    # nothing was measured (a Kling video ID, a script that skipped the check).
    video_duration: float | None = None
    video_width: int | None = None
    video_height: int | None = None
    video_bytes: int | None = None
    face_found: bool | None = None
    confirmed_no_face: bool = False
    poster_jpeg: bytes | None = None
    poster_stored_name: str = ""
    audio_duration: float | None = None

    @classmethod
    def from_job(cls, job: Job) -> JobInput:
        return cls(
            mode=job.mode,
            video_id=job.video_id,
            video_url=job.video_url,
            parent_task_id=job.parent_task_id,
            text=job.text,
            voice_id=job.voice_id,
            voice_language=job.voice_language,
            voice_speed=job.voice_speed,
            audio_url=job.audio_url,
            audio_stored_name=job.audio_file.name or "",
            audio_name=job.audio_name,
            video_stored_name=job.video_file.name or "",
            video_name=job.video_name,
            video_duration=job.video_duration,
            video_width=job.video_width,
            video_height=job.video_height,
            video_bytes=job.video_bytes,
            face_found=job.face_found,
            confirmed_no_face=job.confirmed_no_face,
            poster_stored_name=job.poster.name or "",
            audio_duration=job.audio_duration,
        )


def job_create(
    *,
    team: Team,
    submitted_by: User,
    job_input: JobInput,
    submission_key: uuid.UUID,
    retry_of: Job | None = None,
) -> tuple[Job, bool]:
    """Store a job and schedule its sending; return it and whether it is new.

    The same ``submission_key`` from the same person returns the job it made the first time,
    so a double click or a resubmitted form never pays Kling twice. A new job must fit the
    per-minute limit (``SubmissionRefused`` otherwise).
    """
    existing = Job.objects.filter(submitted_by=submitted_by, submission_key=submission_key).first()
    if existing is not None:
        return existing, False
    _check_submission_rate(submitted_by=submitted_by)

    is_text = job_input.mode == JobMode.TEXT
    job = Job(
        team=team,
        submitted_by=submitted_by,
        submission_key=submission_key,
        retry_of=retry_of,
        mode=job_input.mode,
        video_id=job_input.video_id,
        video_url=job_input.video_url,
        parent_task_id=job_input.parent_task_id,
        text=job_input.text if is_text else "",
        voice_id=job_input.voice_id if is_text else "",
        voice_language=job_input.voice_language if is_text else "",
        voice_speed=job_input.voice_speed if is_text else None,
        audio_url="" if is_text else job_input.audio_url,
        audio_name="" if is_text else job_input.audio_name,
        video_name=job_input.video_name,
        video_duration=job_input.video_duration,
        video_width=job_input.video_width,
        video_height=job_input.video_height,
        video_bytes=job_input.video_bytes,
        face_found=job_input.face_found,
        confirmed_no_face=job_input.confirmed_no_face,
        audio_duration=None if is_text else job_input.audio_duration,
    )
    job_tell(
        job=job, message=say(gettext_noop("Waiting for the studio's worker to send it to Kling."))
    )
    if not is_text and job_input.audio_upload is not None:
        job.audio_file.save(job_input.audio_upload.name or "", job_input.audio_upload, save=False)
    elif not is_text and job_input.audio_stored_name:
        job.audio_file.name = job_input.audio_stored_name
    if job_input.video_upload is not None:
        # The name only carries the extension; upload_to makes the stored name.
        extension = PurePosixPath(job_input.video_upload.name or "").suffix.lower()
        job.video_file.save(f"source{extension}", job_input.video_upload, save=False)
    elif job_input.video_stored_name:
        job.video_file.name = job_input.video_stored_name
    if job_input.poster_jpeg:
        job.poster.save("poster.jpg", ContentFile(job_input.poster_jpeg), save=False)
    elif job_input.poster_stored_name:
        job.poster.name = job_input.poster_stored_name

    try:
        with transaction.atomic():
            job.save()
            job_status_change(
                job=job,
                status=JobStatus.PENDING,
                note=say(gettext_noop("Submitted")),
                old_status="",
            )
            # Enqueued in the same transaction as the job row (the queue lives in the database),
            # so a stored job always has its first run scheduled.
            job_schedule(job=job, at=timezone.now())
            job.save()
    except IntegrityError:
        # The same submission raced in from a second request; the first one won.
        return Job.objects.get(submitted_by=submitted_by, submission_key=submission_key), False
    return job, True


def _check_submission_rate(*, submitted_by: User) -> None:
    """At most ``SUBMISSIONS_PER_MINUTE`` new jobs a minute per person."""
    since = timezone.now() - timedelta(minutes=1)
    recent = Job.objects.filter(submitted_by=submitted_by, created_at__gte=since).count()
    if recent >= settings.SUBMISSIONS_PER_MINUTE:
        raise SubmissionRefused(
            _(
                "You have started {n} lip-syncs in the last minute, the most the studio "
                "allows. Wait a minute and submit again; your entries are kept below."
            ).format(n=settings.SUBMISSIONS_PER_MINUTE)
        )


def job_retry(*, job: Job, submitted_by: User) -> tuple[Job, bool]:
    """Start a new job with the same inputs as a failed or cancelled ``job``.

    Clicking "try again" twice on the same job gives one new job, not two; a retry obeys the
    same rules as any new submission.
    """
    key = uuid.uuid5(RETRY_NAMESPACE, f"retry-of-{job.pk}")
    already = Job.objects.filter(submitted_by=submitted_by, submission_key=key).first()
    if already is not None:
        return already, False
    if job.status not in RETRYABLE_STATUSES:
        raise SubmissionRefused(_("Only a failed or cancelled job can be tried again."))
    return job_create(
        team=job.team,
        submitted_by=submitted_by,
        job_input=JobInput.from_job(job),
        submission_key=key,
        retry_of=job,
    )


def job_cancel(*, job: Job) -> bool:
    """Cancel a job that has not been sent to Kling yet; return whether it was cancelled."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if not locked.can_cancel:
            return False
        locked.finished_at = timezone.now()
        locked.next_check_at = None
        job_tell(
            job=locked,
            message=say(gettext_noop("Cancelled before it was sent. No credits were used.")),
        )
        job_status_change(
            job=locked,
            status=JobStatus.CANCELLED,
            note=say(gettext_noop("Cancelled by a person")),
        )
        locked.save()
    job.refresh_from_db()
    return True


def job_archive(*, job: Job, archived: bool) -> None:
    """Hide a job from the default history view, or bring it back. Nothing is deleted.

    Archiving an archived job changes nothing (a double click, two people at once); only
    this field is written, so an archive never overwrites what the worker stored meanwhile.
    """
    rows = Job.objects.filter(pk=job.pk, archived_at__isnull=archived)
    rows.update(archived_at=timezone.now() if archived else None)
    job.archived_at = Job.objects.values_list("archived_at", flat=True).get(pk=job.pk)
