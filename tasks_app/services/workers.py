"""Who is running the background work: each worker process reports itself every
``WORKER_HEARTBEAT_SECONDS``, so a job's page can say when nobody is there to send it."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from tasks_app.models import Job, JobStatus, WorkerHeartbeat

# Reports older than this are forgotten (the admin lists what ran recently, not forever).
FORGET_AFTER = timedelta(days=7)


def worker_beat(*, worker_id: str, hostname: str, pid: int, started_at: datetime) -> None:
    """Record that this worker process is alive now."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker_id,
        defaults={"hostname": hostname, "pid": pid, "started_at": started_at, "last_seen_at": now},
    )
    WorkerHeartbeat.objects.filter(last_seen_at__lt=now - FORGET_AFTER).delete()


def worker_stop(*, worker_id: str) -> None:
    """The worker stopped as asked: it is no longer expected to be seen."""
    now = timezone.now()
    WorkerHeartbeat.objects.filter(worker_id=worker_id).update(stopped_at=now, last_seen_at=now)


def worker_seen_recently(*, now: datetime | None = None) -> bool:
    """Whether any worker process reported itself within ``WORKER_SILENT_AFTER_SECONDS``."""
    since = (now or timezone.now()) - timedelta(seconds=settings.WORKER_SILENT_AFTER_SECONDS)
    return WorkerHeartbeat.objects.filter(last_seen_at__gte=since, stopped_at=None).exists()


def job_waits_for_a_worker(*, job: Job) -> bool:
    """A job waiting to be sent while no worker has been seen for
    ``WORKER_SILENT_AFTER_SECONDS``: nobody is there to send it, and the person should know
    (one query, and only for a job still to be sent)."""
    return (
        job.status == JobStatus.PENDING
        and not job.needs_person
        and job.next_check_at is not None
        and not worker_seen_recently()
    )
