"""Helpers the test modules share: making jobs as the form would, and running the worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import django_tasks_db.management.commands.db_worker as db_worker
from django_tasks_db.models import DBTaskResult

from tasks_app import services
from tasks_app.models import Job, Team

TEXT_INPUTS = {
    "mode": "text2video",
    "video_id": "860327812345678901",
    "text": "Hello there",
    "voice_id": "genshin_vindi2",
    "voice_language": "en",
    "voice_speed": Decimal("1.0"),
}


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
