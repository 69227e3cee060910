"""Following a batch: its rows (the newest attempt of each), their counts, and what a person
does with them all at once (try the failed ones again, cancel the waiting ones, archive).

Each action goes row by row through the single job's own service (``submitting``), so a
batch obeys exactly the rules a job does: a retry is idempotent and must fit the per-minute
limit, only a job not yet sent can be cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db.models import Exists, OuterRef
from django.utils import timezone
from django_stubs_ext import StrOrPromise

from tasks_app import teams
from tasks_app.models import Batch, Job, JobStatus, Profile
from tasks_app.services import submitting

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import User


@dataclass(frozen=True)
class StatusCount:
    status: str
    label: StrOrPromise  # translated when shown
    count: int


@dataclass(frozen=True)
class BatchRows:
    """A batch's rows as they stand: the newest attempt of each row, in row order."""

    jobs: list[Job]
    counts: list[StatusCount] = field(init=False)

    def __post_init__(self) -> None:
        found = {status: 0 for status in JobStatus.values}
        for job in self.jobs:
            found[job.status] += 1
        counts = [
            StatusCount(status=value, label=label, count=found[value])
            for value, label in JobStatus.choices
            if found[value]
        ]
        object.__setattr__(self, "counts", counts)

    @property
    def is_active(self) -> bool:
        """Some row has not ended yet: the page keeps refreshing."""
        return any(job.is_active for job in self.jobs)

    @property
    def failed(self) -> int:
        return sum(job.status == JobStatus.FAILED for job in self.jobs)

    @property
    def waiting(self) -> int:
        """Rows not yet sent to Kling, which can still be cancelled."""
        return sum(job.can_cancel for job in self.jobs)

    @property
    def succeeded(self) -> int:
        return sum(job.status == JobStatus.SUCCEEDED for job in self.jobs)

    @property
    def saving(self) -> int:
        """Ready rows whose video the studio is still copying: not in the download yet."""
        return sum(
            job.status == JobStatus.SUCCEEDED and not job.stored_video and not job.store_error
            for job in self.jobs
        )


def batch_rows(*, batch: Batch) -> BatchRows:
    """The newest attempt of each of the batch's rows, in row order (one query)."""
    newer = Job.objects.filter(batch=batch, batch_row=OuterRef("batch_row"), pk__gt=OuterRef("pk"))
    jobs = Job.objects.filter(batch=batch).exclude(Exists(newer)).order_by("batch_row", "pk")
    return BatchRows(jobs=list(jobs))


def batch_can_manage(*, user: AbstractBaseUser, profile: Profile, batch: Batch) -> bool:
    """Cancelling and archiving a batch: the person who made it, or an admin of its team
    (as for a single job, ``teams.job_can_manage``)."""
    return batch.created_by_id == user.pk or batch.team_id in teams.team_ids_managed(
        profile=profile
    )


@dataclass(frozen=True, kw_only=True)
class RetryOutcome:
    started: int
    # The per-minute limit stopped the retries part way: its message, for the person.
    refused: str = ""


def batch_retry_failed(*, batch: Batch, submitted_by: User) -> RetryOutcome:
    """Try again every row whose newest attempt failed: one new attempt per row.

    Each goes through ``submitting.job_retry``, so a second click (or two people at once)
    starts nothing more: once retried, a row's newest attempt is no longer the failed one,
    and retrying the same failed job again finds the retry it made. Retries of rows do not
    add to the per-minute limit (``submitting``), but when the person is already over it,
    nothing is retried and the limit's message says why.
    """
    started = 0
    for job in batch_rows(batch=batch).jobs:
        if job.status != JobStatus.FAILED:
            continue
        try:
            # The retry stays in the row, as its next attempt (``submitting.job_create``).
            _retry, created = submitting.job_retry(job=job, submitted_by=submitted_by)
        except submitting.SubmissionRefused as refused:
            return RetryOutcome(started=started, refused=str(refused))
        started += created
    return RetryOutcome(started=started)


def batch_cancel_waiting(*, batch: Batch) -> int:
    """Cancel every row not yet sent to Kling; return how many were cancelled.

    A row the worker is sending meanwhile is left alone (``submitting.job_cancel`` checks
    under a lock), so nothing already paid for is cancelled.
    """
    cancelled = 0
    for job in batch_rows(batch=batch).jobs:
        if job.can_cancel:
            cancelled += submitting.job_cancel(job=job)
    return cancelled


def batch_archive(*, batch: Batch, archived: bool) -> None:
    """Hide the batch and every attempt of its rows from the history, or bring them back.

    Nothing is deleted, and archiving twice changes nothing (as ``submitting.job_archive``).
    """
    rows = Batch.objects.filter(pk=batch.pk, archived_at__isnull=archived)
    rows.update(archived_at=timezone.now() if archived else None)
    batch.archived_at = Batch.objects.values_list("archived_at", flat=True).get(pk=batch.pk)
    for job in Job.objects.filter(batch=batch, archived_at__isnull=archived).order_by("pk"):
        submitting.job_archive(job=job, archived=archived)
