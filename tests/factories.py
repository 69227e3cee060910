"""Helpers the test modules share: making jobs as the form would, and running the worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import django_tasks_db.management.commands.db_worker as db_worker
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from tasks_app import services
from tasks_app.models import Job, JobEvent, JobStatus, Membership, Team, TeamRole

TEXT_INPUTS = {
    "mode": "text2video",
    "video_id": "860327812345678901",
    "text": "Hello there",
    "voice_id": "genshin_vindi2",
    "voice_language": "en",
    "voice_speed": Decimal("1.0"),
}


# The same inputs as the job form posts them.
TEXT_FORM = {
    "video_source": "video_id",
    "video_id": "860327812345678901",
    "mode": "text2video",
    "text": "Hello from the studio",
    "voice_id": "genshin_vindi2",
    "voice_language": "en",
    "voice_speed": "1.0",
}


def make_member(username: str, team: Team, role: str = TeamRole.MEMBER):
    """A person with the tests' password, in ``team`` with ``role``."""
    person = get_user_model().objects.create_user(username, password="correct horse battery")
    Membership.objects.create(team=team, user=person, role=role)
    return person


def make_job(person, *, team: Team | None = None, **overrides) -> Job:
    """A text job stored through the service, as the form would store it.

    ``team`` defaults to the person's first team; ``overrides`` replace any input.
    """
    job, created = services.job_create(
        team=team or person.memberships.order_by("pk").first().team,
        submitted_by=person,
        job_input=services.JobInput(**(TEXT_INPUTS | overrides)),
        submission_key=uuid.uuid4(),
    )
    assert created
    return job


def make_stored_job(person, status: str, *, text: str, team: Team | None = None, **fields) -> Job:
    """A job in the database as the worker would have left it in ``status``; nothing sends it
    anywhere (for pages that need jobs in given states, fast)."""
    now = timezone.now()
    values = {
        "team": team or person.memberships.order_by("pk").first().team,
        "submitted_by": person,
        "status": status,
        "created_at": now - timedelta(minutes=3),
        **{key: value for key, value in TEXT_INPUTS.items() if key != "text"},
        "text": text,
    }
    if status != JobStatus.PENDING:
        values["sent_at"] = now - timedelta(minutes=2)
        values["kling_task_id"] = f"task-{uuid.uuid4().hex[:16]}"
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        values["finished_at"] = now - timedelta(minutes=1)
    job = Job.objects.create(**(values | fields))
    JobEvent.objects.create(job=job, new_status=status, note=f"{status} for the test")
    return job


def make_worker(
    worker_id: str, *, batch: bool = True, interval: float = 0, max_tasks: int | None = None
) -> db_worker.Worker:
    """django-tasks-db's own worker, as ``studio_worker`` runs it in each thread."""
    return db_worker.Worker(
        queue_names=["default"],
        interval=interval,
        batch=batch,
        backend_name="default",
        startup_delay=False,
        max_tasks=max_tasks,
        worker_id=worker_id,
        excluded_queue_names=[],
    )


@contextmanager
def keeping_the_test_connection() -> Iterator[None]:
    """The worker drops "old" connections between tasks; inside a test's transaction that
    would close the test's own connection on PostgreSQL. As Django's test client does for
    requests, a test run keeps it (connections are the harness's business, not the app's)."""
    keep = db_worker.close_old_connections
    db_worker.close_old_connections = lambda **kwargs: None
    try:
        yield
    finally:
        db_worker.close_old_connections = keep


def assert_no_failed_tasks() -> None:
    failed = DBTaskResult.objects.filter(status="FAILED")
    assert not failed.exists(), [(r.task_path, r.traceback) for r in failed]


def tally_drift() -> list[tuple]:
    """(team, status, archived, jobs minus tally) wherever the team's tallies disagree with
    its jobs, read in one statement so the worker's commits cannot fall between two reads."""
    from django.db import connection

    from tasks_app.models import JobTally

    job, tally = Job._meta.db_table, JobTally._meta.db_table
    # Table names come from the models' meta; there are no parameters.
    sql = (
        "SELECT team_id, status, archived, SUM(n) FROM ("  # noqa: S608
        f"  SELECT team_id, status, archived_at IS NOT NULL AS archived, COUNT(*) AS n FROM {job}"
        "   GROUP BY team_id, status, archived_at IS NOT NULL"
        f"  UNION ALL SELECT team_id, status, archived, -count FROM {tally}"
        ") AS counted GROUP BY team_id, status, archived HAVING SUM(n) <> 0"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]


def put_job(job: Job | int, **fields) -> Job:
    """Give a job some state directly (a test's starting point) and return it fresh.

    Saved through ``Job.save``, as the services save, so the team's tallies follow; a queryset
    ``update`` would leave them behind."""
    job = Job.objects.get(pk=getattr(job, "pk", job))
    for name, value in fields.items():
        setattr(job, name, value)
    job.save(update_fields=list(fields))
    return job
