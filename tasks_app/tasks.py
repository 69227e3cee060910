"""Background work, run by the worker through Django's Tasks API (django-tasks-db)."""

from __future__ import annotations

from datetime import datetime

from django_tasks import task

from tasks_app import services


@task()
def advance_job(job_id: int, due: str | None = None) -> None:
    services.job_advance(job_id=job_id, due=datetime.fromisoformat(due) if due else None)


@task()
def sweep_jobs() -> int:
    return services.job_sweep()


@task()
def store_result(job_id: int) -> None:
    from tasks_app.results import job_store_result

    job_store_result(job_id=job_id)


@task()
def email_job_finished(job_id: int) -> None:
    from tasks_app.notices import job_email_finished

    job_email_finished(job_id=job_id)
