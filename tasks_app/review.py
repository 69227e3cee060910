"""Staff review of submissions: approving, flagging, and acting on many jobs at once.

The admin calls these; each one-job step goes through the services in ``tasks_app.services``
so a job's status still changes in one place only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from tasks_app.models import Job, JobStatus, ReviewState, Team
from tasks_app.services import lifecycle, submitting

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Only the review fields are written, so a review never overwrites what the worker has
# stored about the job since the admin page was loaded.
REVIEW_FIELDS = ["review_state", "reviewed_by", "reviewed_at", "review_note"]


def _check_state(state: str) -> None:
    if state not in ReviewState.values:
        raise ValueError(f"Unknown review state: {state!r}")


def job_review(*, job: Job, reviewer: User, state: str, note: str = "") -> Job:
    """Record a staff member's verdict on one job, with who gave it and when.

    Setting the state back to "not reviewed" clears the reviewer and the time, since nobody
    stands behind the job any more; the note is kept as given.
    """
    _check_state(state)
    job.review_state = state
    job.review_note = note
    if state == ReviewState.NOT_REVIEWED:
        job.reviewed_by = None
        job.reviewed_at = None
    else:
        job.reviewed_by = reviewer
        job.reviewed_at = timezone.now()
    job.save(update_fields=REVIEW_FIELDS)
    return job


def job_review_bulk(*, jobs: QuerySet[Job], reviewer: User, state: str) -> int:
    """Give many jobs the same verdict in one update; return how many were changed.

    Notes are left alone: a bulk approval must not wipe what a reviewer wrote on one job.
    """
    _check_state(state)
    reviewed = state != ReviewState.NOT_REVIEWED
    return jobs.update(
        review_state=state,
        reviewed_by=reviewer if reviewed else None,
        reviewed_at=timezone.now() if reviewed else None,
    )


def job_request_check_bulk(*, jobs: Iterable[Job]) -> int:
    """Have the worker ask Kling about each job now; return how many checks were scheduled.

    Jobs not sent yet or already finished are skipped by ``job_request_check`` itself.
    """
    return sum(1 for job in jobs if lifecycle.job_request_check(job=job))


def job_release_bulk(*, jobs: Iterable[Job], send_again: bool) -> int:
    """Settle jobs held for a person (see ``lifecycle.job_release``); return how many."""
    return sum(1 for job in jobs if lifecycle.job_release(job=job, send_again=send_again))


@dataclass(frozen=True, kw_only=True)
class RetryOutcome:
    created: int
    already_retried: int
    not_failed: int
    # Turned down by the rules every submission obeys (the submitter's per-minute limit).
    refused: int = 0


def job_retry_failed_bulk(*, jobs: Iterable[Job]) -> RetryOutcome:
    """Start a new job for each failed job, on behalf of the person who submitted it.

    The new job keeps the original submitter (not the staff member) so it stays in that
    person's and their team's history. Retrying the same job twice gives one new job.
    """
    created = already = skipped = refused = 0
    for job in jobs:
        if job.status != JobStatus.FAILED:
            skipped += 1
            continue
        try:
            _new_job, is_new = submitting.job_retry(job=job, submitted_by=job.submitted_by)
        except submitting.SubmissionRefused:
            refused += 1
            continue
        if is_new:
            created += 1
        else:
            already += 1
    return RetryOutcome(
        created=created, already_retried=already, not_failed=skipped, refused=refused
    )


@dataclass(frozen=True, kw_only=True)
class MonthUsage:
    month: date
    jobs: int
    succeeded: int
    credits: Decimal


def team_monthly_usage(*, team: Team) -> list[MonthUsage]:
    """Jobs, finished videos and credits charged per month for a team, newest month first.

    One aggregate query; months are those of the current time zone.
    """
    rows = (
        Job.objects.filter(team=team)
        .annotate(month=TruncMonth("created_at"))
        .values("month")
        .annotate(
            jobs=Count("pk"),
            succeeded=Count("pk", filter=Q(status=JobStatus.SUCCEEDED)),
            credits=Sum("credits"),
        )
        .order_by("-month")
    )
    return [
        MonthUsage(
            # TruncMonth gives a datetime at midnight in the current time zone.
            month=row["month"].date(),
            jobs=row["jobs"],
            succeeded=row["succeeded"],
            credits=row["credits"] or Decimal("0"),
        )
        for row in rows
    ]
