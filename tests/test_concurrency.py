"""Many jobs at once: Kling's concurrency limit, and several workers on one database."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.utils import timezone
from factories import make_job, make_worker

from tasks_app.models import Job, JobStatus
from tasks_app.services import submitting
from tasks_app.services.lifecycle import advance_job


def distinct_jobs(user, team, n: int) -> list[Job]:
    """``n`` jobs as the form stores them, each from its own video with its own line."""
    return [
        make_job(user, team=team, video_id=f"86032781234567{i:04d}", text=f"Line number {i}")
        for i in range(n)
    ]


@pytest.fixture(autouse=True)
def _many_jobs_a_minute(settings) -> None:
    # These tests submit dozens of jobs at once, more than one person may in a minute.
    settings.SUBMISSIONS_PER_MINUTE = 100


@pytest.mark.django_db
class TestKlingConcurrencyLimit:
    def test_twenty_jobs_all_finish_with_never_more_than_three_running(
        self, user, team, start_kling, sim_clock, worker, settings
    ):
        kling = start_kling(
            now=sim_clock, submitted_seconds=2, processing_seconds=8, concurrency_limit=3
        )
        settings.KLING_RETRY_BASE_SECONDS = 1
        settings.KLING_RETRY_MAX_SECONDS = 8
        jobs = distinct_jobs(user, team, 20)

        saw_waiting_for_slot = False
        for _round in range(200):
            worker(all_scheduled=True)
            details = Job.objects.filter(status=JobStatus.PENDING).values_list(
                "status_detail", flat=True
            )
            saw_waiting_for_slot |= any("free slot" in detail for detail in details)
            if not Job.objects.active().exists():
                break
            sim_clock.advance(2)

        statuses = set(
            Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)
        )
        assert statuses == {JobStatus.SUCCEEDED}
        assert kling.created_count == 20
        assert kling.max_running == 3
        assert saw_waiting_for_slot


@pytest.mark.django_db(transaction=True)
class TestSeveralWorkers:
    def test_two_workers_never_send_the_same_job_twice(self, user, team, start_kling):
        if connection.vendor != "postgresql":
            pytest.skip("row locking between workers needs PostgreSQL (TEST_DATABASE_URL)")
        kling = start_kling()
        jobs = distinct_jobs(user, team, 24)
        # A second scheduled run for every job, as a sweep racing the first run would leave.
        for job in jobs:
            assert job.next_check_at is not None
            advance_job.using(run_after=timezone.now()).enqueue(
                job.pk, job.next_check_at.isoformat()
            )

        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def work(name: str) -> None:
            try:
                barrier.wait()
                make_worker(name).run()
            except BaseException as err:  # reported below
                errors.append(err)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        assert not errors
        assert kling.create_calls == 24
        assert kling.created_count == 24
        sent = Job.objects.filter(pk__in=[j.pk for j in jobs], kling_task_id__isnull=False)
        assert sent.count() == 24
        assert len(set(sent.values_list("kling_task_id", flat=True))) == 24


@pytest.mark.django_db(transaction=True)
class TestArchivingAtOnce:
    def test_archiving_and_unarchiving_in_one_team_at_once_never_deadlock(self, user):
        if connection.vendor != "postgresql":
            pytest.skip("row locks between transactions need PostgreSQL (TEST_DATABASE_URL)")
        rounds = 40
        shown = [make_job(user, status=JobStatus.SUCCEEDED) for _ in range(rounds)]
        hidden = [
            make_job(user, status=JobStatus.SUCCEEDED, archived_at=timezone.now())
            for _ in range(rounds)
        ]
        errors: list[BaseException] = []

        def flip(jobs: list[Job], archived: bool, barrier: threading.Barrier) -> None:
            try:
                for job in jobs:
                    barrier.wait()
                    submitting.job_archive(job=job, archived=archived)
            except BaseException as err:  # reported below
                errors.append(err)
                barrier.abort()
            finally:
                connections.close_all()

        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=flip, args=(shown, True, barrier)),
            threading.Thread(target=flip, args=(hidden, False, barrier)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert errors == []
        assert Job.objects.filter(archived_at__isnull=False).count() == rounds
        assert set(Job.objects.filter(archived_at__isnull=False)) == set(shown)
