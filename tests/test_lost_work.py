"""Work lost with a killed worker is taken up again by another worker's sweep."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from factories import make_job, put_job

from tasks_app.models import JobStatus
from tasks_app.results import results_sweep
from tasks_app.services.lifecycle import job_sweep


def lost_copy(job, *, minutes_ago: float):
    """As a worker killed in the middle of copying leaves a job: ready, no copy, no problem
    recorded, and no copy queued."""
    DBTaskResult.objects.all().delete()
    return put_job(
        job,
        stored_video="",
        stored_size=None,
        stored_sha256="",
        store_attempts=1,
        finished_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


class TestALostResultCopy:
    def test_is_copied_again_once_its_download_could_no_longer_be_running(
        self, kling, alice, user, run_job, worker
    ):
        job = lost_copy(run_job(make_job(user)), minutes_ago=15)  # deadline 10 min + 90 s

        assert results_sweep() == 1
        job.refresh_from_db()
        page = alice.get(job.get_absolute_url()).content.decode()
        assert "was interrupted; it is copying it again" in page
        assert results_sweep() == 0  # marked: the next sweep leaves it alone

        worker()
        job.refresh_from_db()
        assert job.stored_video
        assert job.store_error == ""
        assert job.store_attempts == 2

    def test_a_copy_that_may_still_be_running_is_left_alone(self, kling, user, run_job):
        lost_copy(run_job(make_job(user)), minutes_ago=5)
        assert results_sweep() == 0
        assert not DBTaskResult.objects.exists()

    def test_a_copy_waiting_on_a_planned_retry_or_done_is_left_alone(self, kling, user, run_job):
        retrying = put_job(
            lost_copy(run_job(make_job(user)), minutes_ago=15),
            store_error="Kling's file server answered 503. The studio will try again at 10:00.",
        )
        done = run_job(make_job(user))
        put_job(done, finished_at=timezone.now() - timedelta(minutes=15))

        assert results_sweep() == 0
        retrying.refresh_from_db()
        assert retrying.store_error.startswith("Kling's file server answered 503")

    def test_a_result_kling_no_longer_keeps_or_never_had_is_left_alone(self, kling, user, run_job):
        expired = lost_copy(run_job(make_job(user)), minutes_ago=31 * 24 * 60)
        without_link = put_job(
            lost_copy(run_job(make_job(user)), minutes_ago=15), result_video_url=""
        )

        assert results_sweep() == 0
        for job in (expired, without_link):
            job.refresh_from_db()
            assert job.store_error == ""

    def test_a_sweep_takes_a_few_at_a_time_newest_first(self, kling, user, run_job):
        older = lost_copy(run_job(make_job(user)), minutes_ago=40)
        newer = put_job(run_job(make_job(user)), stored_video="", store_attempts=1)
        put_job(newer, finished_at=timezone.now() - timedelta(minutes=20))
        DBTaskResult.objects.all().delete()
        assert results_sweep(limit=1) == 1
        newer.refresh_from_db()
        older.refresh_from_db()
        assert newer.store_error and not older.store_error
        assert results_sweep(limit=1) == 1


class TestTheSweepGrace:
    def test_a_job_is_taken_as_lost_only_after_the_grace_setting(self, user, settings):
        settings.WORKER_SWEEP_GRACE_SECONDS = 30
        job = make_job(user)
        recent = put_job(job, next_check_at=timezone.now() - timedelta(seconds=20))
        assert job_sweep() == 0
        put_job(recent, next_check_at=timezone.now() - timedelta(seconds=40))
        assert job_sweep() == 1
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert job.next_check_at is not None
        assert job.next_check_at >= timezone.now() - timedelta(seconds=5)
