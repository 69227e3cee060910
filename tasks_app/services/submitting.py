"""What a person asks for: new jobs, batches of them, retries, cancelling and archiving, with
the rules every submission obeys (one job or batch per submission key, a per-minute limit, what
may be retried)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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

from tasks_app.models import Batch, Job, JobMode, JobStatus, Team
from tasks_app.services.budgets import BudgetReached, team_check_budget
from tasks_app.services.lifecycle import BATCH_ROW_FALLBACK, job_schedule, job_wake_next_row
from tasks_app.services.status import job_status_change, job_tell
from tasks_app.wording import say

if TYPE_CHECKING:
    from django.contrib.auth.models import User

RETRY_NAMESPACE = uuid.UUID("6f4b8a9e-6b1d-4f55-9a43-3d0b1f5e2c10")
# A batch row's submission key derives from its batch's, so rows stay unique per person.
BATCH_ROW_NAMESPACE = uuid.UUID("0c7d2f4e-93a1-4b8e-8f61-2a5e7b9c1d34")
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
    # The submitter confirmed that the person in the video agreed to it being lip-synced
    # (the form's "consent" box); the job records who and when.
    consent: bool = False

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
            # A retry re-affirms the consent its job was given (see ``job_retry``).
            consent=job.consent_at is not None,
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
    per-minute limit and the team's monthly budget (``SubmissionRefused`` otherwise). A retry
    of a batch row stays in its batch, as the row's next attempt.
    """
    existing = Job.objects.filter(submitted_by=submitted_by, submission_key=submission_key).first()
    if existing is not None:
        return existing, False
    _check_submission_rate(submitted_by=submitted_by)
    _check_budget(team=team, jobs=1)
    job = _job_build(
        team=team,
        submitted_by=submitted_by,
        job_input=job_input,
        submission_key=submission_key,
        stored=_StoredFiles(),
    )
    if retry_of is not None:
        job.retry_of = retry_of
        job.batch_id, job.batch_row = retry_of.batch_id, retry_of.batch_row
    try:
        with transaction.atomic():
            _check_budget(team=team, jobs=1, locked=True)
            _job_store(job=job, first_run=timezone.now())
    except IntegrityError:
        # The same submission raced in from a second request; the first one won.
        return Job.objects.get(submitted_by=submitted_by, submission_key=submission_key), False
    return job, True


def batch_create(
    *,
    team: Team,
    created_by: User,
    rows: list[JobInput],
    submission_key: uuid.UUID,
) -> tuple[Batch, bool]:
    """Store a batch and one job per row (rows numbered from 1); return it and whether it is new.

    One submission: the same ``submission_key`` from the same person returns the batch it made
    the first time, and the batch counts once for the per-minute limit. At most
    ``BATCH_MAX_ROWS`` rows. Every row is stored as ``job_create`` stores a job, in one
    transaction, so a batch is saved whole or not at all. A file shared by several rows (one
    uploaded video, its poster) is stored once. Row 1 is scheduled at once and the others
    behind it: rows are sent in row order (``lifecycle.job_advance``).
    """
    existing = Batch.objects.filter(created_by=created_by, submission_key=submission_key).first()
    if existing is not None:
        return existing, False
    if not rows:
        raise SubmissionRefused(_("A batch needs at least one row."))
    if len(rows) > settings.BATCH_MAX_ROWS:
        raise SubmissionRefused(
            _("A batch may have at most {max} rows; this one has {n}.").format(
                max=settings.BATCH_MAX_ROWS, n=len(rows)
            )
        )
    _check_submission_rate(submitted_by=created_by)
    _check_budget(team=team, jobs=len(rows))
    stored = _StoredFiles()
    jobs = [
        _job_build(
            team=team,
            submitted_by=created_by,
            job_input=job_input,
            submission_key=uuid.uuid5(BATCH_ROW_NAMESPACE, f"{submission_key}-{row}"),
            stored=stored,
        )
        for row, job_input in enumerate(rows, start=1)
    ]
    now = timezone.now()
    try:
        with transaction.atomic():
            _check_budget(team=team, jobs=len(rows), locked=True)
            batch = Batch.objects.create(
                team=team, created_by=created_by, submission_key=submission_key, created_at=now
            )
            for row, job in enumerate(jobs, start=1):
                job.batch, job.batch_row = batch, row
                # Rows after the first are woken as the row before them is sent; the later
                # time is only a fallback should that wake-up be lost.
                _job_store(job=job, first_run=now if row == 1 else now + BATCH_ROW_FALLBACK)
    except IntegrityError:
        return Batch.objects.get(created_by=created_by, submission_key=submission_key), False
    return batch, True


@dataclass
class _StoredFiles:
    """Files already saved for the rows of one submission: an upload or a poster shared by
    several rows is stored once and named by all of them."""

    by_upload: dict[int, str] = field(default_factory=dict)
    by_poster: dict[bytes, str] = field(default_factory=dict)


def _job_build(
    *,
    team: Team,
    submitted_by: User,
    job_input: JobInput,
    submission_key: uuid.UUID,
    stored: _StoredFiles,
) -> Job:
    """A new job for ``job_input``, its files stored, not saved yet (see ``_job_store``)."""
    is_text = job_input.mode == JobMode.TEXT
    job = Job(
        team=team,
        submitted_by=submitted_by,
        submission_key=submission_key,
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
    if job_input.consent:
        job.consent_by, job.consent_at = submitted_by, timezone.now()
    job_tell(
        job=job, message=say(gettext_noop("Waiting for the studio's worker to send it to Kling."))
    )
    audio = job_input.audio_upload
    if not is_text and audio is not None:
        if id(audio) in stored.by_upload:
            job.audio_file.name = stored.by_upload[id(audio)]
        else:
            job.audio_file.save(audio.name or "", audio, save=False)
            stored.by_upload[id(audio)] = job.audio_file.name or ""
    elif not is_text and job_input.audio_stored_name:
        job.audio_file.name = job_input.audio_stored_name
    video = job_input.video_upload
    if video is not None:
        if id(video) in stored.by_upload:
            job.video_file.name = stored.by_upload[id(video)]
        else:
            # The name only carries the extension; upload_to makes the stored name.
            extension = PurePosixPath(video.name or "").suffix.lower()
            job.video_file.save(f"source{extension}", video, save=False)
            stored.by_upload[id(video)] = job.video_file.name or ""
    elif job_input.video_stored_name:
        job.video_file.name = job_input.video_stored_name
    if job_input.poster_jpeg:
        if job_input.poster_jpeg in stored.by_poster:
            job.poster.name = stored.by_poster[job_input.poster_jpeg]
        else:
            job.poster.save("poster.jpg", ContentFile(job_input.poster_jpeg), save=False)
            stored.by_poster[job_input.poster_jpeg] = job.poster.name or ""
    elif job_input.poster_stored_name:
        job.poster.name = job_input.poster_stored_name
    return job


def _job_store(*, job: Job, first_run: datetime) -> None:
    """Save a built job as submitted, with its first run scheduled (inside a transaction)."""
    job.save()
    job_status_change(
        job=job,
        status=JobStatus.PENDING,
        note=say(gettext_noop("Submitted")),
        old_status="",
    )
    # Enqueued in the same transaction as the job row (the queue lives in the database), so a
    # stored job always has its first run scheduled.
    job_schedule(job=job, at=first_run)
    job.save()


def _check_budget(*, team: Team, jobs: int, locked: bool = False) -> None:
    """Refuse ``jobs`` new jobs the team's monthly credit budget has no room for
    (``budgets.team_check_budget``: every row of a batch counts).

    Checked before the jobs' files are stored, and again with the team's row ``locked``, in
    the transaction that stores them, so two submissions at once cannot both pass a budget
    with room for one.
    """
    try:
        team_check_budget(team=team, jobs=jobs, locked=locked)
    except BudgetReached as reached:
        raise SubmissionRefused(str(reached)) from None


def _check_submission_rate(*, submitted_by: User) -> None:
    """At most ``SUBMISSIONS_PER_MINUTE`` submissions a minute per person: a job on its own
    counts one (a retry of it too), and so does a batch, however many rows it has. Retries of
    a batch's rows run again what its batch already counted: they must fit the limit but do
    not add to it, so "try the failed rows again" retries them all."""
    since = timezone.now() - timedelta(minutes=1)
    singles = Job.objects.filter(
        submitted_by=submitted_by, created_at__gte=since, batch__isnull=True
    ).count()
    batches = Batch.objects.filter(created_by=submitted_by, created_at__gte=since).count()
    recent = singles + batches
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

    Consent: when ``job`` was submitted with the consent box ticked, the new job records
    ``submitted_by`` and the time of the retry as who confirmed it and when, since asking for
    the same video again re-affirms it (a job made without it, before the box existed, gets
    none). A staff retry on the submitter's behalf records the submitter, whose job it is.
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
        # The next row of its batch no longer waits behind it.
        job_wake_next_row(job=locked)
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
