"""The worker's side of a job: sending it to Kling, following it, and the schedule.

``submitting.job_create`` stores a job and schedules ``advance_job``, which the worker runs.
``job_advance`` sends a waiting job to Kling, or asks Kling about a sent one, then schedules
itself again. Each scheduled run carries the time it was due; a run whose job has since been
rescheduled (by a callback, say) finds a different ``next_check_at`` and does nothing, so a
job never has two live schedules. ``job_sweep`` re-schedules a job whose run was lost, for
example when the worker was killed in the middle of it.

Sending order, for batches and fairness (``_send_may_wait``):

- The rows of a batch are sent in row order: a row is not sent while an earlier row of its
  batch still waits to be sent (pending without a Kling task, not held for a person). When a
  row gets its Kling task, or ends without one, the next waiting row is scheduled at once
  (``job_wake_next_row``); so a batch has at most one row trying to reach Kling at a time.
- Fair to teammates: a submission is a batch, or a job on its own. When jobs wait for a free
  Kling slot (their last send was refused with 1303, too many tasks running), a job about to
  be sent whose submission already has more jobs at Kling than a waiting submission gives way:
  it is tried again shortly, without calling Kling and without counting a send attempt, and
  the waiting job is tried at once. So a single job submitted behind a long batch takes one
  of the next free slots instead of waiting for the whole batch.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import File
from django.db import models, transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_noop
from django_tasks import task

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
from tasks_app.models import KLING_ACCOUNT_FULL, Job, JobMode, JobStatus
from tasks_app.notices import email_job_finished
from tasks_app.plain_words import error_message, failure_message
from tasks_app.results import store_result
from tasks_app.services.status import job_status_change, job_tell
from tasks_app.source_links import SourceLinkUnavailable, source_link, source_link_is_for
from tasks_app.storage import storage_errors, storage_problem
from tasks_app.wording import Message, at, say

logger = logging.getLogger(__name__)

# A batch row waiting behind an earlier row is woken when that row is sent or ends; it also
# looks again after this, should a wake-up ever be lost.
BATCH_ROW_FALLBACK = timedelta(minutes=5)
# Statuses in which a job holds one of the account's Kling slots.
_AT_KLING = (JobStatus.SENT, JobStatus.PROCESSING)


@task()
def advance_job(job_id: int, due: str | None = None) -> None:
    job_advance(job_id=job_id, due=datetime.fromisoformat(due) if due else None)


@task()
def sweep_jobs() -> int:
    return job_sweep()


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
        if (
            job.status == JobStatus.PENDING
            and job.send_started_at is None
            and _send_may_wait(job=job, now=now)
        ):
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


def _send_may_wait(*, job: Job, now: datetime) -> bool:
    """Whether a job about to be sent waits instead (see the module's docstring); when it
    does, it is scheduled again here (the caller holds its lock and has not saved it).

    A few small queries: none for a job on its own while nobody waits for a slot.
    """
    if job.batch_id is not None:
        earlier = _waiting_to_send().filter(batch_id=job.batch_id, batch_row__lt=job.batch_row)
        if earlier.exists():
            job_schedule(job=job, at=now + BATCH_ROW_FALLBACK)
            job.save(update_fields=["next_check_at"])
            return True
        mine = Job.objects.filter(batch_id=job.batch_id, status__in=_AT_KLING).count()
        if mine == 0:
            return False
        rivals = (
            _waiting_to_send()
            .filter(error_code=KLING_ACCOUNT_FULL)
            .exclude(batch_id=job.batch_id)
            .order_by("next_check_at", "pk")
            .values_list("pk", "batch_id")[:50]
        )
        favoured = _less_served(rivals=list(rivals), mine=mine)
        if favoured is None:
            return False
        job_tell(
            job=job,
            message=say(
                gettext_noop(
                    "Waiting for a free slot: the Kling account is running as many jobs as it "
                    "may, and waiting jobs with fewer of theirs running go first."
                )
            ),
        )
        job_schedule(job=job, at=now + _give_way_wait())
        job.save(update_fields=["next_check_at", "status_message", "status_detail"])
        _wake(job_id=favoured, now=now)
        return True
    return False


def _less_served(*, rivals: list[tuple[int, int | None]], mine: int) -> int | None:
    """The first waiting job whose submission has fewer jobs at Kling than ``mine``."""
    for pk, batch_id in rivals:
        if batch_id is None:
            return pk  # a job on its own has none at Kling while it waits
    batch_ids = {batch_id for _pk, batch_id in rivals if batch_id is not None}
    at_kling = dict(
        Job.objects.filter(batch_id__in=batch_ids)
        .values("batch_id")
        .annotate(n=Count("pk", filter=Q(status__in=_AT_KLING)))
        .values_list("batch_id", "n")
    )
    for pk, batch_id in rivals:
        if batch_id is not None and at_kling.get(batch_id, 0) < mine:
            return pk
    return None


def _waiting_to_send() -> models.QuerySet[Job]:
    """Jobs that are still to reach Kling: pending, no task, not held for a person."""
    return Job.objects.filter(
        status=JobStatus.PENDING, kling_task_id__isnull=True, needs_person=False
    )


def _give_way_wait() -> timedelta:
    return timedelta(seconds=max(1, min(5, settings.KLING_POLL_FAST_SECONDS)))


def _wake(*, job_id: int, now: datetime) -> None:
    """Run a waiting job's send now, unless it is being sent or is already due.

    A job another run holds locked is running now anyway: it is skipped, never waited for, so
    two runs waking each other's jobs cannot deadlock.
    """
    with transaction.atomic():
        woken = Job.objects.select_for_update(skip_locked=True).filter(pk=job_id).first()
        if (
            woken is None
            or woken.status != JobStatus.PENDING
            or woken.send_started_at is not None
            or woken.needs_person
            or woken.next_check_at is None
            or woken.next_check_at <= now
        ):
            return
        job_schedule(job=woken, at=now)
        woken.save(update_fields=["next_check_at"])


def job_wake_next_row(*, job: Job) -> None:
    """``job`` (a batch row) got its Kling task or ended: schedule the next waiting row now."""
    if job.batch_id is None:
        return
    following = (
        _waiting_to_send()
        .filter(batch_id=job.batch_id, batch_row__gt=job.batch_row, send_started_at__isnull=True)
        .order_by("batch_row", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    if following is not None:
        _wake(job_id=following, now=timezone.now())


def job_sweep(*, now: datetime | None = None) -> int:
    """Re-schedule active jobs whose scheduled run never happened; return how many."""
    now = now or timezone.now()
    # A run's lease (``_lease``) plus this, and the run is taken as lost with its worker.
    overdue = now - timedelta(seconds=settings.WORKER_SWEEP_GRACE_SECONDS)
    lost = Job.objects.active().filter(next_check_at__lt=overdue)
    count = 0
    for job_id in lost.values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.is_terminal or not job.next_check_at or job.next_check_at >= overdue:
                continue
            logger.warning("Job %s missed its scheduled run; scheduling it again", job.pk)
            job_schedule(job=job, at=now)
            job.save(update_fields=["next_check_at"])
            count += 1
    return count


def job_request_check(*, job: Job) -> bool:
    """Have the worker ask Kling about a sent job now; return whether one was scheduled."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.is_terminal or locked.status == JobStatus.PENDING:
            return False
        job_schedule(job=locked, at=timezone.now())
        locked.save(update_fields=["next_check_at"])
    return True


def job_release(*, job: Job, send_again: bool) -> bool:
    """A person settled a job held after an ambiguous lost create (``needs_person``).

    ``send_again``: Kling has no task for it, so it is sent now; otherwise it ends failed
    (Kling has it under a task nobody can tell apart, or the person gave it up). Returns
    whether the job was held.
    """
    now = timezone.now()
    with transaction.atomic():
        held = Job.objects.select_for_update().get(pk=job.pk)
        if not held.needs_person or held.status != JobStatus.PENDING:
            return False
        held.needs_person = False
        held.send_started_at = None
        if send_again:
            job_tell(
                job=held,
                message=say(gettext_noop("A staff member checked with Kling: sending it again.")),
            )
            job_schedule(job=held, at=now)
        else:
            _fail(
                held,
                say(
                    gettext_noop(
                        "A staff member checked with Kling and stopped this job. Try again "
                        "if you still need it."
                    )
                ),
            )
        held.save()
    return True


def _send(job: Job) -> None:
    try:
        request = _kling_request(job)
    except SourceLinkUnavailable:
        _fail_unsendable(job)
        return
    except storage_errors() as err:
        _wait_for_storage(job, err)
        return
    try:
        task = kling_client().create_task(request)
    except KlingError as err:
        _after_send_error(job, err)
    else:
        _adopt(job, task, note=say(gettext_noop("Sent to Kling")))


def _fail_unsendable(job: Job) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        job.send_started_at = None
        _fail(
            job,
            say(
                gettext_noop(
                    "Kling cannot fetch the uploaded video: the studio has no public address "
                    "(SITE_URL). Ask whoever runs the studio to set it, then try again."
                )
            ),
        )
        job.save()


def _wait_for_storage(job: Job, err: Exception) -> None:
    """An uploaded file of the job could not be read (missing, or the storage did not answer):
    nothing was sent, so say so on the job and try again later, up to the send attempts."""
    logger.warning("Job %s: its stored file could not be read: %r", job.pk, err)
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        job.send_started_at = None
        job.error_detail = f"{type(err).__name__}: {err}"[:2000]
        reason = storage_problem(err)
        if job.send_attempts < settings.KLING_MAX_SEND_ATTEMPTS:
            retry_at = now + _backoff(job.send_attempts)
            job_tell(
                job=job,
                message=say(
                    gettext_noop("{reason} The studio will try again at {time}."),
                    reason=reason,
                    time=at(retry_at),
                ),
            )
            job_schedule(job=job, at=retry_at)
        else:
            _fail(
                job,
                say(
                    gettext_noop("Gave up after {n} tries. {reason} Nothing was sent to Kling."),
                    n=job.send_attempts,
                    reason=reason,
                ),
            )
        job.save()


def _after_send_error(job: Job, err: KlingError) -> None:
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        job.error_code = err.code
        job.error_detail = str(err)
        job.kling_request_id = err.request_id or job.kling_request_id
        if err.outcome_unknown:
            # The request may have reached Kling: never send again before finding out.
            job_tell(
                job=job,
                message=say(
                    gettext_noop(
                        "The studio lost Kling's answer and is checking whether the job arrived."
                    )
                ),
            )
            job_schedule(job=job, at=now + timedelta(seconds=_reconcile_wait()))
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
                job_tell(job=job, message=say(waiting, time=at(retry_at)))
            else:
                waiting = gettext_noop("Waiting - Kling is busy, will retry at {time}. ({reason})")
                job_tell(
                    job=job, message=say(waiting, time=at(retry_at), reason=error_message(err))
                )
            job_schedule(job=job, at=retry_at)
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
    # ``job_advance`` reconciles only a job whose send has started.
    assert job.send_started_at is not None
    try:
        candidates = _recent_kling_tasks(since=job.send_started_at - timedelta(minutes=2))
    except KlingError as err:
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job.pk)
            job.error_detail = str(err)
            job_schedule(job=job, at=now + _backoff(job.poll_errors + 1))
            job.poll_errors += 1
            job.save()
        return

    claim = _claim(job, candidates)
    if claim.task is not None:
        _adopt(job, claim.task, note=say(gettext_noop("Found on Kling after a lost answer")))
        return
    if claim.ambiguous:
        _hold_for_a_person([job.pk, *claim.rivals])
        return

    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        assert job.send_started_at is not None  # still leased to this run
        settle_at = job.send_started_at + timedelta(seconds=settings.KLING_RECONCILE_GRACE_SECONDS)
        if now < settle_at:
            # Kling may not list a task the moment it exists; look again before concluding.
            job_schedule(job=job, at=min(settle_at, now + timedelta(seconds=_reconcile_wait())))
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
            job_tell(
                job=job,
                message=say(gettext_noop("Kling never received the job; sending it again.")),
            )
            # Answers lost again and again (a flaky proxy, say) back off like other failures.
            job_schedule(job=job, at=now + _backoff(job.send_attempts))
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


@dataclass(frozen=True)
class _Claim:
    """What Kling's list says about a job whose create's answer was lost."""

    task: KlingTask | None = None
    # Other jobs whose lost creates could have made the same task(s).
    rivals: tuple[int, ...] = ()
    ambiguous: bool = False


def _claim(job: Job, tasks: list[KlingTask]) -> _Claim:
    """The task this job's lost create made, if Kling's list shows it beyond doubt.

    Kling echoes no reference of ours: a listed task shows only its source video and when it
    was made (the list was read from just before the send). So a task is this job's when it
    is the one unowned task from the job's source, and no other job, of any team, lost a
    create from the same source meanwhile. Anything less certain is ambiguous: adopting
    another's task would show one team another's video, sending again could pay twice.
    """
    owned = Job.objects.filter(kling_task_id__in=[t.task_id for t in tasks])
    taken = set(owned.values_list("kling_task_id", flat=True))
    same_source, unknown_source = [], []
    for listed in tasks:
        if listed.task_id in taken:
            continue
        parent = listed.parent_video
        if parent is None or not (parent.id or parent.url):
            unknown_source.append(listed)
        elif (
            (job.video_id and parent.id == job.video_id)
            or (job.video_url and parent.url == job.video_url)
            or (job.video_file and parent.url and source_link_is_for(url=parent.url, job=job))
        ):
            same_source.append(listed)
    if not same_source and not unknown_source:
        return _Claim()
    if job.video_file:
        # An uploaded video's link names its job, so no other job's create can have made it.
        rival_ids: tuple[int, ...] = ()
    else:
        source = {"video_id": job.video_id} if job.video_id else {"video_url": job.video_url}
        rivals = Job.objects.filter(
            status=JobStatus.PENDING, send_started_at__isnull=False, kling_task_id__isnull=True
        ).filter(**source)
        rival_ids = tuple(rivals.exclude(pk=job.pk).values_list("pk", flat=True))
    if len(same_source) == 1 and not unknown_source and not rival_ids:
        return _Claim(task=same_source[0])
    return _Claim(rivals=rival_ids, ambiguous=True)


def _hold_for_a_person(job_ids: list[int]) -> None:
    """Stop following jobs whose lost create Kling's list cannot settle, and say so.

    Neither adopting a task nor sending again is safe for them: a person compares them with
    Kling's console and then sends them again or fails them (admin actions).
    """
    message = say(
        gettext_noop(
            "Kling's answer was lost and its task list cannot tell which task is this job's. "
            "The studio stopped here so that nothing is paid twice; a staff member will check "
            "it with Kling."
        )
    )
    for job_id in sorted(job_ids):  # in one order, so two holds at once never deadlock
        with transaction.atomic():
            held = Job.objects.select_for_update().get(pk=job_id)
            if held.kling_task_id or held.status != JobStatus.PENDING or held.needs_person:
                continue
            logger.warning("Job %s is held for a person: its lost create is ambiguous", job_id)
            held.needs_person = True
            held.next_check_at = None
            job_tell(job=held, message=message)
            held.save()
            job_wake_next_row(job=held)


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
        job_tell(
            job=job, message=say(gettext_noop("Kling has the job and will start on it shortly."))
        )
        job_status_change(job=job, status=JobStatus.SENT, note=note)
        _apply_kling_task(job, task)
        if job.is_active:
            job_schedule(job=job, at=_next_check(job, now, _poll_interval(job, now)))
        job.save()
        job_wake_next_row(job=job)


def _check(job: Job) -> None:
    now = timezone.now()
    # A job past pending was sent, and sending stored the task's ID.
    assert job.kling_task_id is not None
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
            elif _past_deadline(job, now):
                _fail_overdue(job)
            else:
                wait = min(_backoff(job.poll_errors), _poll_interval(job, now) * 4)
                job_schedule(job=job, at=_next_check(job, now, wait))
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
        if job.is_active and _past_deadline(job, now):
            _fail_overdue(job)
        elif job.is_active:
            job_schedule(job=job, at=_next_check(job, now, _poll_interval(job, now)))
        job.save()


def _deadline(job: Job) -> datetime | None:
    """When a job Kling has had since ``sent_at`` has its last check (``None``: not sent)."""
    if job.sent_at is None:
        return None
    return job.sent_at + timedelta(minutes=settings.KLING_JOB_DEADLINE_MINUTES)


def _past_deadline(job: Job, now: datetime) -> bool:
    deadline = _deadline(job)
    return deadline is not None and now >= deadline


def _next_check(job: Job, now: datetime, wait: timedelta) -> datetime:
    """``now + wait``, but never past the job's deadline: its last check falls on it."""
    deadline = _deadline(job)
    return min(now + wait, deadline) if deadline is not None and deadline > now else now + wait


def _fail_overdue(job: Job) -> None:
    """The last check found Kling still working past the deadline: stop following the job."""
    _fail(
        job,
        say(
            gettext_noop(
                "Kling had not finished the video {minutes} minutes after it got it, so the "
                "studio stopped waiting. Try again; if it happens again, Kling may be having "
                "trouble."
            ),
            minutes=settings.KLING_JOB_DEADLINE_MINUTES,
        ),
        note=say(gettext_noop("Kling took too long")),
    )


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
        job_tell(job=job, message=say(gettext_noop("Kling is making the video.")))
        job_status_change(
            job=job, status=JobStatus.PROCESSING, note=say(gettext_noop("Kling started processing"))
        )
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
        job_tell(job=job, message=say(gettext_noop("Your lip-synced video is ready.")))
        job_status_change(
            job=job, status=JobStatus.SUCCEEDED, note=say(gettext_noop("Kling finished the video"))
        )
        _after_finish(job)
    elif task.status == TaskStatus.FAILED:
        _fail(
            job,
            failure_message(task.status_msg or ""),
            note=say(gettext_noop("Kling reported a failure")),
        )


def _fail(job: Job, message: Message, *, note: Message | None = None) -> None:
    was_waiting = job.kling_task_id is None
    job.finished_at = timezone.now()
    job.next_check_at = None
    job_tell(job=job, message=message)
    job_status_change(job=job, status=JobStatus.FAILED, note=note or message)
    _after_finish(job)
    if was_waiting:
        # Failed before Kling had it: the next row of its batch no longer waits behind it.
        job_wake_next_row(job=job)


def _after_finish(job: Job) -> None:
    """Follow-up work for a finished job, queued in the same transaction as its status."""
    if job.status == JobStatus.SUCCEEDED:
        store_result.enqueue(job.pk)
    email_job_finished.enqueue(job.pk)


def job_schedule(*, job: Job, at: datetime) -> None:
    """Make ``at`` the job's one next run (the caller saves the job)."""
    job.next_check_at = at
    advance_job.using(run_after=at).enqueue(job.pk, at.isoformat())


def _kling_request(job: Job) -> LipSyncRequest:
    if job.video_file:
        # Kling only takes links: a freshly signed one to the stored upload, each send.
        video = VideoSource(video_url=source_link(job=job))
    else:
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
        path = reverse("kling_callback", kwargs={"job_id": job.pk, "token": job.callback_token})
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


def job_typical_seconds() -> float | None:
    """The median time recent jobs took from submission to a ready video (cached)."""

    def compute() -> float | None:
        rows = Job.objects.filter(status=JobStatus.SUCCEEDED, finished_at__isnull=False)
        pairs = rows.order_by("-finished_at").values_list("created_at", "finished_at")[:50]
        seconds = [(end - start).total_seconds() for start, end in pairs if end is not None]
        return statistics.median(seconds) if len(seconds) >= 3 else None

    return cache.get_or_set("tasks_app.typical_seconds", compute, timeout=300)
