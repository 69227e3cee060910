"""The studio's business logic: creating lip-sync jobs and moving them through their lifecycle.

Views and the background worker call these functions; nothing else changes a job's status.
Every status change goes through ``_set_status`` so that it is recorded as a ``JobEvent``.

How a job moves: ``job_create`` stores it and schedules ``job_advance``, which the worker runs.
``job_advance`` sends a waiting job to Kling, or asks Kling about a sent one, then schedules
itself again. Each scheduled run carries the time it was due; a run whose job has since been
rescheduled (by a callback, say) finds a different ``next_check_at`` and does nothing, so a
job never has two live schedules. ``job_sweep`` re-schedules a job whose run was lost, for
example when the worker was killed in the middle of it.
"""

from __future__ import annotations

import logging
import statistics
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.core.files.base import File
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext_noop

from tasks_app.kling import (
    AudioTrack,
    ErrorKind,
    KlingError,
    KlingTask,
    LipSyncRequest,
    TaskStatus,
    TextSpeech,
    VideoSource,
)
from tasks_app.kling_setup import kling_client
from tasks_app.models import Job, JobEvent, JobMode, JobStatus, JobTally, Team
from tasks_app.plain_words import error_message, failure_message
from tasks_app.wording import Message, at, render_english, say

logger = logging.getLogger(__name__)

RETRY_NAMESPACE = uuid.UUID("6f4b8a9e-6b1d-4f55-9a43-3d0b1f5e2c10")
# A sent create whose answer was lost, plus this, is when a job looks abandoned to the sweep.
SWEEP_GRACE = timedelta(seconds=90)


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
        )


# --- Creating, retrying, cancelling --------------------------------------------------------------


def job_create(
    *,
    team: Team,
    submitted_by: AbstractBaseUser,
    job_input: JobInput,
    submission_key: uuid.UUID,
    retry_of: Job | None = None,
) -> tuple[Job, bool]:
    """Store a job and schedule its sending; return it and whether it is new.

    The same ``submission_key`` from the same person returns the job it made the first time,
    so a double click or a resubmitted form never pays Kling twice.
    """
    existing = Job.objects.filter(submitted_by=submitted_by, submission_key=submission_key).first()
    if existing is not None:
        return existing, False

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
    )
    _tell(job, say(gettext_noop("Waiting for the studio's worker to send it to Kling.")))
    if not is_text and job_input.audio_upload is not None:
        job.audio_file.save(job_input.audio_upload.name, job_input.audio_upload, save=False)
    elif not is_text and job_input.audio_stored_name:
        job.audio_file.name = job_input.audio_stored_name

    try:
        with transaction.atomic():
            job.save()
            _set_status(job, JobStatus.PENDING, note=say(gettext_noop("Submitted")), old_status="")
            # Enqueued in the same transaction as the job row (the queue lives in the database),
            # so a stored job always has its first run scheduled.
            _schedule(job, at=timezone.now())
            job.save()
    except IntegrityError:
        # The same submission raced in from a second request; the first one won.
        existing = Job.objects.filter(submitted_by=submitted_by, submission_key=submission_key)
        return existing.get(), False
    return job, True


def job_exists(*, submitted_by: AbstractBaseUser, submission_key: uuid.UUID) -> bool:
    """Whether this submission already made a job (a resubmitted form is not a new job)."""
    return Job.objects.filter(submitted_by=submitted_by, submission_key=submission_key).exists()


def job_retry(*, job: Job, submitted_by: AbstractBaseUser) -> tuple[Job, bool]:
    """Start a new job with the same inputs as ``job``.

    Clicking "try again" twice on the same job gives one new job, not two.
    """
    key = uuid.uuid5(RETRY_NAMESPACE, f"retry-of-{job.pk}")
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
        _tell(locked, say(gettext_noop("Cancelled before it was sent. No credits were used.")))
        _set_status(locked, JobStatus.CANCELLED, note=say(gettext_noop("Cancelled by a person")))
        locked.save()
    job.refresh_from_db()
    return True


def job_archive(*, job: Job, archived: bool) -> None:
    """Hide a job from the default history view, or bring it back. Nothing is deleted.

    Archiving an archived job changes nothing (a double click, two people at once)."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if (locked.archived_at is not None) != archived:
            locked.archived_at = timezone.now() if archived else None
            locked.save(update_fields=["archived_at"])
    job.archived_at = locked.archived_at


def job_tallies_rebuild(*, team: Team) -> None:
    """Count the team's jobs per status again, from the jobs themselves.

    ``Job.save`` keeps the tallies; this is for jobs written around it (a bulk import, raw
    SQL), and ``manage.py recount_jobs`` runs it for every team. Run it while none of the
    team's jobs change: a change made during the count may be missed until the next rebuild.
    """
    archived = ExpressionWrapper(Q(archived_at__isnull=False), output_field=BooleanField())
    rows = (
        Job.objects.filter(team=team)
        .annotate(is_archived=archived)
        .order_by()
        .values_list("status", "is_archived")
        .annotate(n=Count("pk"))
    )
    with transaction.atomic():
        JobTally.objects.filter(team=team).delete()
        JobTally.objects.bulk_create(
            JobTally(team=team, status=status, archived=bool(is_archived), count=n)
            for status, is_archived, n in rows
        )


# --- Callbacks -------------------------------------------------------------------------------


def job_callback_token(*, job: Job) -> str:
    """The unguessable token in a job's callback URL (derived, so it is never stored)."""
    return salted_hmac("tasks_app.callback", str(job.pk)).hexdigest()


def job_callback_token_is_valid(*, job: Job, token: str) -> bool:
    return constant_time_compare(job_callback_token(job=job), token)


def job_handle_callback(*, job: Job) -> None:
    """Kling says the job changed: ask Kling now rather than wait for the next scheduled check.

    The callback's body is not trusted for state; only Kling's answer to our own query is.
    """
    job_request_check(job=job)


def job_request_check(*, job: Job) -> bool:
    """Have the worker ask Kling about a sent job now; return whether one was scheduled."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.is_terminal or locked.status == JobStatus.PENDING:
            return False
        _schedule(locked, at=timezone.now())
        locked.save(update_fields=["next_check_at"])
    return True


# --- The worker's side -----------------------------------------------------------------------


def job_advance(*, job_id: int, due: datetime | None) -> None:
    """Take the next step for a job: send it, find out whether a lost send arrived, or check it.

    Runs in the background worker. ``due`` is the time this run was scheduled for; when the
    job has been rescheduled since, this run is stale and does nothing.
    """
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_terminal:
            return
        if due is not None and job.next_check_at != due:
            return
        # Hold the job for as long as the call to Kling may take; if this run dies, the sweep
        # picks the job up once this lease has passed.
        job.next_check_at = now + _lease()
        if job.status != JobStatus.PENDING:
            step = _check
        elif job.send_started_at is not None:
            step = _reconcile
        else:
            job.send_started_at = now
            job.send_attempts += 1
            step = _send
        job.save()
    step(job)


def job_sweep(*, now: datetime | None = None) -> int:
    """Re-schedule active jobs whose scheduled run never happened; return how many."""
    now = now or timezone.now()
    lost = Job.objects.active().filter(next_check_at__lt=now - SWEEP_GRACE)
    count = 0
    for job_id in lost.values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.is_terminal or not job.next_check_at or job.next_check_at >= now - SWEEP_GRACE:
                continue
            logger.warning("Job %s missed its scheduled run; scheduling it again", job.pk)
            _schedule(job, at=now)
            job.save(update_fields=["next_check_at"])
            count += 1
    return count


def _send(job: Job) -> None:
    try:
        task = kling_client().create_task(_kling_request(job))
    except KlingError as err:
        _after_send_error(job, err)
    else:
        _adopt(job, task, note=say(gettext_noop("Sent to Kling")))


def _after_send_error(job: Job, err: KlingError) -> None:
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        job.error_code = err.code
        job.error_detail = str(err)
        job.kling_request_id = err.request_id or job.kling_request_id
        if err.outcome_unknown:
            # The request may have reached Kling: never send again before finding out.
            _tell(
                job,
                say(
                    gettext_noop(
                        "The studio lost Kling's answer and is checking whether the job arrived."
                    )
                ),
            )
            _schedule(job, at=now + timedelta(seconds=_reconcile_wait()))
        elif err.retryable and (
            # A full account frees a slot whenever one of its tasks ends: worth waiting for
            # however long it takes, unlike a service that keeps failing.
            err.kind == ErrorKind.CONCURRENCY
            or job.send_attempts < settings.KLING_MAX_SEND_ATTEMPTS
        ):
            job.send_started_at = None
            wait = _backoff(job.send_attempts)
            if err.kind == ErrorKind.CONCURRENCY:
                # Slots free up as the account's tasks end, typically within minutes.
                wait = min(wait, timedelta(seconds=settings.KLING_POLL_MAX_SECONDS))
            retry_at = now + wait
            if err.kind == ErrorKind.CONCURRENCY:
                waiting = gettext_noop(
                    "Waiting for a free slot: the Kling account is running as many jobs as it "
                    "may. Will try again at {time}."
                )
                _tell(job, say(waiting, time=at(retry_at)))
            else:
                waiting = gettext_noop("Waiting - Kling is busy, will retry at {time}. ({reason})")
                _tell(job, say(waiting, time=at(retry_at), reason=error_message(err)))
            _schedule(job, at=retry_at)
        else:
            job.send_started_at = None
            message = error_message(err)
            if err.retryable:
                message = say(
                    gettext_noop("Gave up after {n} tries. {reason}"),
                    n=job.send_attempts,
                    reason=message,
                )
            _fail(job, message, note=say(gettext_noop("Kling refused the job")))
        job.save()


def _reconcile(job: Job) -> None:
    """Find out whether a create whose answer was lost made a task on Kling."""
    now = timezone.now()
    try:
        candidates = _recent_kling_tasks(since=job.send_started_at - timedelta(minutes=2))
    except KlingError as err:
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job.pk)
            job.error_detail = str(err)
            _schedule(job, at=now + _backoff(job.poll_errors + 1))
            job.poll_errors += 1
            job.save()
        return

    match = _find_own_task(job, candidates)
    if match is not None:
        _adopt(job, match, note=say(gettext_noop("Found on Kling after a lost answer")))
        return

    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        settle_at = job.send_started_at + timedelta(seconds=settings.KLING_RECONCILE_GRACE_SECONDS)
        if now < settle_at:
            # Kling may not list a task the moment it exists; look again before concluding.
            _schedule(job, at=min(settle_at, now + timedelta(seconds=_reconcile_wait())))
        elif job.send_attempts >= settings.KLING_MAX_SEND_ATTEMPTS:
            job.send_started_at = None
            _fail(
                job,
                say(
                    gettext_noop(
                        "Gave up after {n} tries: Kling's answers kept getting lost on the way. "
                        "Nothing was charged. Try again later."
                    ),
                    n=job.send_attempts,
                ),
                note=say(gettext_noop("Kling never received the job")),
            )
        else:
            job.send_started_at = None
            _tell(job, say(gettext_noop("Kling never received the job; sending it again.")))
            # Answers lost again and again (a flaky proxy, say) back off like other failures.
            _schedule(job, at=now + _backoff(job.send_attempts))
        job.save()


def _recent_kling_tasks(*, since: datetime, pages: int = 3) -> list[KlingTask]:
    tasks: list[KlingTask] = []
    for page in range(1, pages + 1):
        batch = kling_client().list_tasks(page=page, page_size=50).tasks
        tasks.extend(batch)
        # Newest first: once a page reaches back past the send, older pages cannot hold it.
        if len(batch) < 50 or any(t.created_at and t.created_at < since for t in batch):
            break
    return [t for t in tasks if t.created_at is None or t.created_at >= since]


def _find_own_task(job: Job, tasks: list[KlingTask]) -> KlingTask | None:
    """The task this job's lost create made, if Kling lists one.

    Kling echoes no reference of ours, so a task is ours when it started from the same video
    after the send began and no other job owns it; among several, the earliest.
    """
    taken = set(
        Job.objects.filter(kling_task_id__in=[t.task_id for t in tasks]).values_list(
            "kling_task_id", flat=True
        )
    )
    mine = []
    for task in tasks:
        if task.task_id in taken:
            continue
        parent = task.parent_video
        if parent is not None and (parent.id or parent.url):
            same = (job.video_id and parent.id == job.video_id) or (
                job.video_url and parent.url == job.video_url
            )
            if not same:
                continue
        mine.append(task)
    mine.sort(key=lambda t: t.created_at or timezone.now())
    return mine[0] if mine else None


def _adopt(job: Job, task: KlingTask, *, note: Message) -> None:
    """Record that Kling holds ``task`` for this job, then check it on schedule."""
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        job.kling_task_id = task.task_id
        job.kling_request_id = task.request_id or job.kling_request_id
        job.send_started_at = None
        job.sent_at = now
        job.error_code = None
        job.error_detail = ""
        _tell(job, say(gettext_noop("Kling has the job and will start on it shortly.")))
        _set_status(job, JobStatus.SENT, note=note)
        _apply_kling_task(job, task)
        if job.is_active:
            _schedule(job, at=now + _poll_interval(job, now))
        job.save()


def _check(job: Job) -> None:
    now = timezone.now()
    try:
        task = kling_client().get_task(job.kling_task_id)
    except KlingError as err:
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job.pk)
            job.poll_errors += 1
            job.last_checked_at = now
            job.error_code = err.code
            job.error_detail = str(err)
            if err.kind == ErrorKind.NOT_FOUND and job.poll_errors >= 10:
                _fail(
                    job,
                    say(gettext_noop("Kling no longer knows this job.")),
                    note=say(gettext_noop("Lost on Kling")),
                )
            else:
                wait = min(_backoff(job.poll_errors), _poll_interval(job, now) * 4)
                _schedule(job, at=now + wait)
            job.save()
        return

    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.is_terminal:
            return
        job.poll_errors = 0
        job.error_code = None
        job.error_detail = ""
        _apply_kling_task(job, task)
        if job.is_active:
            _schedule(job, at=now + _poll_interval(job, now))
        job.save()


def _apply_kling_task(job: Job, task: KlingTask) -> None:
    """Bring the job in line with what Kling says about its task (the caller saves)."""
    now = timezone.now()
    job.last_checked_at = now
    job.kling_status = task.status.value
    job.kling_status_msg = task.status_msg or ""
    if task.credits is not None:
        job.credits = task.credits

    if task.status == TaskStatus.PROCESSING and job.status == JobStatus.SENT:
        job.processing_at = now
        _tell(job, say(gettext_noop("Kling is making the video.")))
        _set_status(job, JobStatus.PROCESSING, note=say(gettext_noop("Kling started processing")))
    elif task.status == TaskStatus.SUCCEED:
        video = task.videos[0] if task.videos else None
        if video is None:
            _fail(
                job, say(gettext_noop("Kling said the job succeeded but sent no video. Try again."))
            )
            return
        job.result_video_id = video.id or ""
        job.result_video_url = video.url
        job.result_duration = video.duration
        job.processing_at = job.processing_at or now
        job.finished_at = now
        job.next_check_at = None
        _tell(job, say(gettext_noop("Your lip-synced video is ready.")))
        _set_status(job, JobStatus.SUCCEEDED, note=say(gettext_noop("Kling finished the video")))
        _after_finish(job)
    elif task.status == TaskStatus.FAILED:
        _fail(
            job,
            failure_message(task.status_msg or ""),
            note=say(gettext_noop("Kling reported a failure")),
        )


def _fail(job: Job, message: Message, *, note: Message | None = None) -> None:
    job.finished_at = timezone.now()
    job.next_check_at = None
    _tell(job, message)
    _set_status(job, JobStatus.FAILED, note=note or message)
    _after_finish(job)


def _after_finish(job: Job) -> None:
    """Follow-up work for a finished job, queued in the same transaction as its status."""
    from tasks_app.tasks import email_job_finished, store_result

    if job.status == JobStatus.SUCCEEDED:
        store_result.enqueue(job.pk)
    email_job_finished.enqueue(job.pk)


def _set_status(
    job: Job, status: JobStatus, *, note: Message, old_status: str | None = None
) -> None:
    """Change the status and record the change (the caller saves the job)."""
    previous = job.status if old_status is None else old_status
    if previous == status and old_status is None:
        return
    job.status = status
    JobEvent.objects.create(
        job=job,
        old_status=previous,
        new_status=status,
        note=render_english(note)[:500],
        note_message=note,
    )


def _tell(job: Job, message: Message) -> None:
    """Set what the job's page says under its status (the caller saves the job)."""
    job.status_message = message
    job.status_detail = render_english(message)[:500]


def _schedule(job: Job, *, at: datetime) -> None:
    """Make ``at`` the job's one next run (the caller saves the job)."""
    from tasks_app.tasks import advance_job

    job.next_check_at = at
    advance_job.using(run_after=at).enqueue(job.pk, at.isoformat())


def _kling_request(job: Job) -> LipSyncRequest:
    video = VideoSource(video_id=job.video_id or None, video_url=job.video_url or None)
    if job.mode == JobMode.TEXT:
        speech: TextSpeech | AudioTrack = TextSpeech(
            text=job.text,
            voice_id=job.voice_id,
            voice_language=job.voice_language,
            voice_speed=job.voice_speed or Decimal("1.0"),
        )
    elif job.audio_file:
        with job.audio_file.open("rb") as audio:
            speech = AudioTrack(audio_file=File(audio).read())
    else:
        speech = AudioTrack(audio_url=job.audio_url)
    callback_url = None
    if settings.SITE_URL:
        from django.urls import reverse

        path = reverse(
            "kling_callback", kwargs={"job_id": job.pk, "token": job_callback_token(job=job)}
        )
        callback_url = settings.SITE_URL + path
    return LipSyncRequest(
        video=video,
        speech=speech,
        task_id=job.parent_task_id or None,
        callback_url=callback_url,
    )


def _poll_interval(job: Job, now: datetime) -> timedelta:
    """Often at first, when most status changes happen, then less and less up to a cap."""
    fast, cap = settings.KLING_POLL_FAST_SECONDS, settings.KLING_POLL_MAX_SECONDS
    age = (now - (job.sent_at or now)).total_seconds()
    if age < 60:
        seconds = fast
    elif age < 300:
        seconds = 3 * fast
    elif age < 900:
        seconds = 6 * fast
    else:
        seconds = cap
    return timedelta(seconds=min(seconds, cap))


def _backoff(attempt: int) -> timedelta:
    base, cap = settings.KLING_RETRY_BASE_SECONDS, settings.KLING_RETRY_MAX_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempt - 1, 0), cap))


def _reconcile_wait() -> int:
    return max(1, min(5, settings.KLING_RECONCILE_GRACE_SECONDS))


def _lease() -> timedelta:
    return timedelta(seconds=settings.KLING_CONNECT_TIMEOUT + settings.KLING_READ_TIMEOUT + 30)


# --- Reading ---------------------------------------------------------------------------------


def job_typical_seconds() -> float | None:
    """The median time recent jobs took from submission to a ready video (cached)."""

    def compute() -> float | None:
        rows = Job.objects.filter(status=JobStatus.SUCCEEDED, finished_at__isnull=False)
        pairs = rows.order_by("-finished_at").values_list("created_at", "finished_at")[:50]
        seconds = [(end - start).total_seconds() for start, end in pairs]
        return statistics.median(seconds) if len(seconds) >= 3 else None

    return cache.get_or_set("tasks_app.typical_seconds", compute, timeout=300)
