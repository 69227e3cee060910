"""A job Kling never finishes gets one last check at its deadline and then ends failed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from factories import make_job, put_job

from tasks_app.models import JobStatus

DEADLINE = 120  # minutes, the default of KLING_JOB_DEADLINE_MINUTES


@pytest.fixture
def slow_kling(start_kling, sim_clock):
    """A simulator whose tasks stay processing for a simulated day unless the test moves on."""
    return start_kling(now=sim_clock, submitted_seconds=1, processing_seconds=86_400)


def task_checks(sim, task_id: str) -> int:
    return sum(1 for r in sim.requests if r.method == "GET" and r.path.endswith(task_id))


def sent_job(user, worker, *, minutes_ago: float):
    """A job sent to Kling, then made to look sent ``minutes_ago`` minutes ago."""
    job = make_job(user)
    worker()
    job.refresh_from_db()
    assert job.status == JobStatus.SENT
    return put_job(job, sent_at=timezone.now() - timedelta(minutes=minutes_ago))


class TestTheDeadline:
    def test_a_job_still_running_at_its_deadline_gets_one_last_check_then_fails(
        self, user, slow_kling, sim_clock, worker, settings
    ):
        assert settings.KLING_JOB_DEADLINE_MINUTES == DEADLINE
        sim_clock.advance(5)  # Kling is now processing it
        job = sent_job(user, worker, minutes_ago=DEADLINE + 1)
        checks_before = task_checks(slow_kling, job.kling_task_id)

        worker(all_scheduled=True)
        job.refresh_from_db()

        assert task_checks(slow_kling, job.kling_task_id) == checks_before + 1
        assert job.status == JobStatus.FAILED
        assert f"{DEADLINE} minutes after it got it" in job.status_detail
        assert job.next_check_at is None
        assert not DBTaskResult.objects.filter(
            status="READY", task_path__endswith="advance_job"
        ).exists()
        assert job.events.filter(note="Kling took too long").exists()

    def test_a_job_kling_finishes_by_the_last_check_is_ready(
        self, user, slow_kling, sim_clock, worker
    ):
        job = sent_job(user, worker, minutes_ago=DEADLINE + 1)
        sim_clock.advance(86_400 + 5)  # Kling finished meanwhile

        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.SUCCEEDED

    def test_before_the_deadline_the_next_check_is_never_later_than_it(
        self, user, slow_kling, sim_clock, worker, settings
    ):
        settings.KLING_POLL_MAX_SECONDS = 3600
        job = sent_job(user, worker, minutes_ago=DEADLINE - 0.5)
        sim_clock.advance(5)  # Kling is now processing it

        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.PROCESSING
        deadline = job.sent_at + timedelta(minutes=DEADLINE)
        assert job.next_check_at is not None
        assert job.next_check_at <= deadline
        assert job.next_check_at > timezone.now()

    def test_kling_unreachable_at_the_last_check_still_ends_the_job(
        self, user, slow_kling, sim_clock, worker
    ):
        sim_clock.advance(5)
        job = sent_job(user, worker, minutes_ago=DEADLINE + 1)
        slow_kling.inject("GET", job.kling_task_id, http_status=500, code=5000, message="down")

        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.FAILED
        assert "stopped waiting" in job.status_detail

    def test_a_shorter_deadline_is_taken_from_the_setting(
        self, user, slow_kling, sim_clock, worker, settings
    ):
        settings.KLING_JOB_DEADLINE_MINUTES = 10
        fresh = sent_job(user, worker, minutes_ago=9)
        overdue = sent_job(user, worker, minutes_ago=11)
        sim_clock.advance(5)  # Kling is now processing both

        worker(all_scheduled=True)
        fresh.refresh_from_db()
        overdue.refresh_from_db()

        assert fresh.status == JobStatus.PROCESSING
        assert overdue.status == JobStatus.FAILED
        assert "10 minutes after it got it" in overdue.status_detail
