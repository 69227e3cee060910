"""Sending a batch: its rows go to Kling in row order, each exactly once whatever Kling does,
and a teammate's single job is not stuck behind a long batch (the simulator over real HTTP, the
real worker)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django_tasks_db.models import DBTaskResult
from factories import assert_no_failed_tasks, keeping_the_test_connection, make_job, make_worker

from tasks_app.models import Batch, Job, JobStatus
from tasks_app.services import submitting

pytestmark = pytest.mark.django_db

CREATE = ("POST", "/lip-sync")


@pytest.fixture(autouse=True)
def quick_retries(settings) -> None:
    """Short waits, so a test sees several retries in a few rounds."""
    settings.KLING_RETRY_BASE_SECONDS = 1
    settings.KLING_RETRY_MAX_SECONDS = 8
    settings.KLING_RECONCILE_GRACE_SECONDS = 0


def make_rows_batch(person, team, n: int) -> Batch:
    """A batch of ``n`` rows of one video, "Line 1" to "Line n", as the batch page stores it."""
    rows = [
        submitting.JobInput(
            mode="text2video",
            video_id="860327812345678901",
            text=f"Line {row}",
            voice_id="genshin_vindi2",
            voice_language="en",
            voice_speed=Decimal("1.0"),
        )
        for row in range(1, n + 1)
    ]
    batch, created = submitting.batch_create(
        team=team, created_by=person, rows=rows, submission_key=uuid.uuid4()
    )
    assert created
    return batch


def created_texts(kling) -> list[str]:
    """The texts of the creates Kling accepted, in the order it received them."""
    return [
        request.body["input"]["text"]
        for request in kling.requests
        if (request.method, request.path[-len("/lip-sync") :]) == CREATE and request.code == 0
    ]


def run_one_task() -> bool:
    """Run the next due task as a worker would; return whether one was due."""
    if not DBTaskResult.objects.ready().exists():
        return False
    with keeping_the_test_connection():
        make_worker("one-task", max_tasks=1).run()
    assert_no_failed_tasks()
    return True


def run_until_done(worker, sim_clock, *, rounds: int = 80, each_round=None) -> None:
    for _round in range(rounds):
        worker(all_scheduled=True)
        if each_round is not None:
            each_round()
        if not Job.objects.active().exists():
            return
        sim_clock.advance(2)
    raise AssertionError("jobs still active after every round")


class TestRowOrder:
    def test_a_batch_is_sent_row_by_row_in_one_worker_run(self, user, team, kling, worker):
        batch = make_rows_batch(user, team, 5)

        worker()

        assert created_texts(kling) == [f"Line {row}" for row in range(1, 6)]
        assert set(batch.jobs.values_list("status", flat=True)) == {JobStatus.SENT}

    def test_a_row_waiting_for_a_free_slot_keeps_the_rows_after_it_waiting(
        self, user, team, kling, worker, sim_clock
    ):
        batch = make_rows_batch(user, team, 4)
        kling.inject(*CREATE, http_status=429, code=1303, message="Parallel limit", times=3)

        worker(all_scheduled=True)
        worker(all_scheduled=True)

        assert created_texts(kling) == []
        assert kling.create_calls == 2  # row 1 only: the others never asked
        run_until_done(worker, sim_clock)
        assert created_texts(kling) == ["Line 1", "Line 2", "Line 3", "Line 4"]
        assert set(batch.jobs.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}

    def test_a_row_that_fails_lets_the_next_row_go_at_once(self, user, team, kling, worker):
        batch = make_rows_batch(user, team, 3)
        kling.inject(*CREATE, http_status=400, code=1201, message="Invalid input", times=1)

        worker()

        rows = list(batch.jobs.order_by("batch_row"))
        assert [job.status for job in rows] == [JobStatus.FAILED, JobStatus.SENT, JobStatus.SENT]
        assert created_texts(kling) == ["Line 2", "Line 3"]

    def test_a_cancelled_row_lets_the_next_row_go_at_once(self, user, team, kling, worker):
        batch = make_rows_batch(user, team, 3)
        first = batch.jobs.get(batch_row=1)

        assert submitting.job_cancel(job=first)
        worker()

        assert created_texts(kling) == ["Line 2", "Line 3"]

    def test_a_retried_row_is_sent_as_the_rows_next_attempt(
        self, user, team, kling, worker, sim_clock
    ):
        batch = make_rows_batch(user, team, 2)
        kling.inject(*CREATE, http_status=400, code=1201, message="Invalid input", times=1)
        worker()
        failed = batch.jobs.get(batch_row=1, status=JobStatus.FAILED)

        retry, _created = submitting.job_retry(job=failed, submitted_by=user)
        run_until_done(worker, sim_clock)

        retry.refresh_from_db()
        assert (retry.batch_id, retry.batch_row, retry.status) == (
            batch.pk,
            1,
            JobStatus.SUCCEEDED,
        )
        assert created_texts(kling) == ["Line 2", "Line 1"]


class TestEveryRowOnce:
    def test_n_rows_make_n_kling_tasks_under_1303_5000_and_lost_answers(
        self, user, team, start_kling, sim_clock, worker
    ):
        kling = start_kling(now=sim_clock, submitted_seconds=2, processing_seconds=4)
        kling.inject(*CREATE, http_status=500, code=5000, message="Internal error", times=3)
        kling.inject(*CREATE, http_status=429, code=1303, message="Parallel limit", times=3)
        # Kling makes the task but its answer never arrives.
        kling.inject_disconnect(*CREATE, times=1, take_effect=True)
        kling.inject(*CREATE, http_status=500, code=5000, message="Internal error", times=2)
        batch = make_rows_batch(user, team, 6)

        run_until_done(worker, sim_clock)

        rows = list(batch.jobs.order_by("batch_row"))
        assert kling.created_count == 6
        assert kling.create_calls == 6 + 3 + 3 + 2  # the lost answer's create made a task
        assert [job.status for job in rows] == [JobStatus.SUCCEEDED] * 6
        assert len({job.kling_task_id for job in rows}) == 6
        by_task = {job.kling_task_id: job.batch_row for job in rows}
        assert [by_task[task_id] for task_id in kling.tasks] == [1, 2, 3, 4, 5, 6]


class TestFairToTeammates:
    def test_a_teammates_single_job_takes_the_next_free_slot_not_the_slot_after_the_batch(
        self, user, team, teammate, start_kling, sim_clock, worker
    ):
        kling = start_kling(
            now=sim_clock, submitted_seconds=2, processing_seconds=8, concurrency_limit=2
        )
        batch = make_rows_batch(user, team, 10)
        # Row 1 at 0 s and row 2 at 4 s: their slots free one at a time (at 10 s and 14 s).
        assert run_one_task()
        sim_clock.advance(4)
        worker()
        assert created_texts(kling) == ["Line 1", "Line 2"]
        assert batch.jobs.get(batch_row=3).error_code == 1303

        single = make_job(teammate, team=team, text="The teammate's job")
        gave_way: list[bool] = []

        def note() -> None:
            head = batch.jobs.filter(status=JobStatus.PENDING).order_by("batch_row").first()
            gave_way.append(bool(head and "go first" in head.status_detail))

        run_until_done(worker, sim_clock, rounds=150, each_round=note)

        texts = created_texts(kling)
        assert texts[:3] == ["Line 1", "Line 2", "The teammate's job"]
        assert texts[3:] == [f"Line {row}" for row in range(3, 11)]
        assert kling.max_running == 2
        assert any(gave_way)
        single.refresh_from_db()
        assert single.status == JobStatus.SUCCEEDED
        assert set(batch.jobs.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}

    def test_single_jobs_alone_never_give_way(self, user, team, start_kling, sim_clock, worker):
        kling = start_kling(
            now=sim_clock, submitted_seconds=2, processing_seconds=4, concurrency_limit=1
        )
        first = make_job(user, team=team, text="First single")
        second = make_job(user, team=team, text="Second single")

        run_until_done(worker, sim_clock)

        first.refresh_from_db()
        second.refresh_from_db()
        assert "go first" not in first.status_detail + second.status_detail
        assert sorted(created_texts(kling)) == ["First single", "Second single"]
