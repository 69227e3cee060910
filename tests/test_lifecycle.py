"""A job's life in the background worker, against the simulator over real HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from factories import make_job

from tasks_app.kling import LipSyncRequest, TextSpeech, VideoSource
from tasks_app.kling_setup import kling_client
from tasks_app.models import Job, JobEvent, JobStatus
from tasks_app.services import callbacks, lifecycle, submitting

pytestmark = pytest.mark.django_db


class TestHappyPath:
    def test_it_sends_follows_and_finishes_a_text_job(self, user, kling, sim_clock, worker):
        job = make_job(user)
        assert job.status == JobStatus.PENDING

        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.SENT
        assert job.kling_task_id in kling.tasks
        assert kling.created_count == 1

        sim_clock.advance(4)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.PROCESSING

        sim_clock.advance(11)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert job.result_video_url.endswith(f"?task={job.kling_task_id}") or job.result_video_url
        assert job.finished_at is not None
        assert job.next_check_at is None
        assert kling.created_count == 1
        statuses = list(JobEvent.objects.filter(job=job).values_list("new_status", flat=True))
        assert statuses == ["pending", "sent", "processing", "succeeded"]


def advance_to_sent(job: Job, worker) -> Job:
    worker()
    job.refresh_from_db()
    assert job.status == JobStatus.SENT, job.status_detail
    return job


def text_request(video_id: str, text: str = "Hello there") -> LipSyncRequest:
    speech = TextSpeech(text=text, voice_id="genshin_vindi2", voice_language="en")
    return LipSyncRequest(video=VideoSource(video_id=video_id), speech=speech)


def shift_back(job: Job, field: str, seconds: float) -> None:
    """Pretend ``field`` happened ``seconds`` earlier (time passing, without sleeping)."""
    Job.objects.filter(pk=job.pk).update(**{field: F(field) - timedelta(seconds=seconds)})


class TestFailure:
    def test_a_video_without_a_face_fails_in_plain_words(self, user, kling, sim_clock, worker):
        job = make_job(user, video_id="", video_url="https://example.com/noface-clip.mp4")
        advance_to_sent(job, worker)

        sim_clock.advance(4)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.PROCESSING
        sim_clock.advance(11)
        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.FAILED
        assert "could not find a human face" in job.status_detail
        assert "does not charge" in job.status_detail
        assert job.kling_status == "failed"
        assert job.kling_status_msg == "The model did not detect a human"
        assert job.finished_at is not None
        assert job.next_check_at is None
        statuses = list(job.events.values_list("new_status", flat=True))
        assert statuses == ["pending", "sent", "processing", "failed"]

    def test_a_finished_job_is_never_asked_about_again(self, user, kling, sim_clock, worker):
        job = advance_to_sent(make_job(user), worker)
        sim_clock.advance(14)
        worker(all_scheduled=True)
        queries = kling.query_count

        worker(all_scheduled=True)
        lifecycle.job_advance(job_id=job.pk, due=None)

        assert kling.query_count == queries


def busy_then_free(kling, code: int, http_status: int, times: int) -> None:
    kling.inject(
        "POST", "/lip-sync", http_status=http_status, code=code, message="busy", times=times
    )


class TestRetryableSendErrors:
    @pytest.mark.parametrize(("code", "http_status"), [(1302, 429), (5000, 500), (5001, 503)])
    def test_it_waits_and_says_when_it_will_retry(
        self, user, kling, worker, settings, code, http_status
    ):
        busy_then_free(kling, code, http_status, times=1)
        job = make_job(user)

        worker()
        job.refresh_from_db()

        assert job.status == JobStatus.PENDING
        assert job.send_started_at is None
        assert job.error_code == code
        when = timezone.localtime(job.next_check_at).strftime("%H:%M:%S")
        assert f"will retry at {when}" in job.status_detail
        assert kling.created_count == 0

    def test_a_full_account_says_it_waits_for_a_free_slot(self, user, kling, worker):
        busy_then_free(kling, 1303, 429, times=1)
        job = make_job(user)

        worker()
        job.refresh_from_db()

        assert job.status == JobStatus.PENDING
        assert "Waiting for a free slot" in job.status_detail
        when = timezone.localtime(job.next_check_at).strftime("%H:%M:%S")
        assert f"Will try again at {when}" in job.status_detail

    def test_the_wait_doubles_each_time_and_then_the_job_goes_through(
        self, user, kling, sim_clock, worker, settings
    ):
        settings.KLING_RETRY_BASE_SECONDS = 3
        busy_then_free(kling, 5000, 500, times=3)
        job = make_job(user)

        waits = []
        for attempt in (1, 2, 3):
            before = timezone.now()
            worker(all_scheduled=attempt > 1)
            after = timezone.now()
            job.refresh_from_db()
            assert job.status == JobStatus.PENDING
            assert job.send_attempts == attempt
            expected = timedelta(seconds=3 * 2 ** (attempt - 1))
            assert job.next_check_at is not None
            assert before + expected <= job.next_check_at <= after + expected
            waits.append(expected)
        assert waits[0] < waits[1] < waits[2]

        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.SENT
        assert job.error_code is None
        sim_clock.advance(14)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert kling.create_calls == 4
        assert kling.created_count == 1

    def test_the_wait_is_capped(self, user, kling, worker, settings):
        settings.KLING_RETRY_BASE_SECONDS = 5
        settings.KLING_RETRY_MAX_SECONDS = 12
        busy_then_free(kling, 1302, 429, times=3)
        job = make_job(user)
        worker()
        worker(all_scheduled=True)

        before = timezone.now()
        worker(all_scheduled=True)  # third try: 20 s uncapped
        after = timezone.now()
        job.refresh_from_db()
        cap = timedelta(seconds=12)
        assert job.next_check_at is not None
        assert before + cap <= job.next_check_at <= after + cap

    def test_it_gives_up_after_the_most_attempts_allowed(self, user, kling, worker, settings):
        settings.KLING_MAX_SEND_ATTEMPTS = 2
        busy_then_free(kling, 5000, 500, times=5)
        job = make_job(user)

        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.FAILED
        assert "Gave up after 2 tries" in job.status_detail
        assert "Kling had a problem on its side" in job.status_detail
        assert job.next_check_at is None
        worker(all_scheduled=True)
        assert kling.create_calls == 2
        assert kling.created_count == 0


class TestRefusedSends:
    def test_an_invalid_parameter_fails_with_klings_message_kept(self, user, kling, worker):
        kling.inject(
            "POST", "/lip-sync", http_status=400, code=1201, message="video_url duration too long"
        )
        job = make_job(user)

        worker()
        job.refresh_from_db()

        assert job.status == JobStatus.FAILED
        assert job.status_detail == "Kling did not accept this job: video_url duration too long"
        assert "video_url duration too long" in job.error_detail
        assert job.error_code == 1201
        assert job.send_started_at is None
        worker(all_scheduled=True)
        assert kling.create_calls == 1

    def test_no_credits_left_fails_in_plain_words(self, user, kling, worker):
        kling.inject(
            "POST", "/lip-sync", http_status=429, code=1102, message="resource pack exhausted"
        )
        job = make_job(user)

        worker()
        job.refresh_from_db()

        assert job.status == JobStatus.FAILED
        assert "run out of credits" in job.status_detail
        assert "resource pack exhausted" in job.error_detail
        assert job.error_code == 1102
        events = list(job.events.values_list("new_status", "note"))
        assert events[-1] == ("failed", "Kling refused the job")

    def test_a_voice_the_simulator_does_not_know_fails_with_its_words(self, user, kling, worker):
        # Not injected: the simulator's own validation answers 1201.
        job = make_job(user, voice_id="AOT", voice_language="zh")

        worker()
        job.refresh_from_db()

        assert job.status == JobStatus.FAILED
        assert "is not supported by voice AOT" in job.status_detail
        assert kling.created_count == 0


class TestUnknownOutcomeOfASend:
    def test_a_read_timeout_is_reconciled_without_a_second_task(
        self, user, start_kling, sim_clock, worker, settings
    ):
        kling = start_kling(
            now=sim_clock, submitted_seconds=3, processing_seconds=10, create_latency=1.5
        )
        settings.KLING_READ_TIMEOUT = 1
        job = make_job(user)

        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert job.send_started_at is not None
        assert "checking whether the job arrived" in job.status_detail
        assert kling.created_count == 1

        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.SENT
        assert job.kling_task_id in kling.tasks
        assert job.send_started_at is None
        assert kling.list_count >= 1
        assert kling.create_calls == 1
        assert kling.created_count == 1
        notes = list(job.events.values_list("note", flat=True))
        assert "Found on Kling after a lost answer" in notes

    def test_a_dropped_connection_is_reconciled_without_a_second_task(
        self, user, kling, sim_clock, worker
    ):
        kling.inject_disconnect("POST", "/lip-sync", take_effect=True)
        job = make_job(user)

        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert job.send_started_at is not None
        assert kling.created_count == 1

        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.SENT
        (created_id,) = kling.tasks
        assert job.kling_task_id == created_id

        sim_clock.advance(14)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert kling.create_calls == 1
        assert kling.created_count == 1

    def test_it_does_not_adopt_a_task_another_job_owns(self, user, kling, worker):
        other = advance_to_sent(make_job(user), worker)
        kling.inject_disconnect("POST", "/lip-sync", take_effect=True)
        job = make_job(user)

        worker()
        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.SENT
        assert job.kling_task_id != other.kling_task_id
        assert set(kling.tasks) == {job.kling_task_id, other.kling_task_id}
        assert kling.created_count == 2

    @staticmethod
    def two_lost_creates_from_one_clip(user, other_user, kling, worker) -> tuple[Job, Job]:
        """Two teams send the same clip at once and both answers are lost: Kling lists two
        tasks from that clip and nothing tells whose is whose."""
        kling.inject_disconnect("POST", "/lip-sync", take_effect=True)
        kling.inject_disconnect("POST", "/lip-sync", take_effect=True)
        ours = make_job(user, video_id="333333333333333333")
        theirs = make_job(other_user, video_id="333333333333333333")
        worker()
        worker(all_scheduled=True)
        return ours, theirs

    def test_two_lost_creates_from_one_clip_adopt_nothing_and_wait_for_a_person(
        self, user, other_user, kling, worker, sim_clock
    ):
        jobs = self.two_lost_creates_from_one_clip(user, other_user, kling, worker)
        sim_clock.advance(60)
        worker(all_scheduled=True)

        for job in jobs:
            job.refresh_from_db()
            assert job.needs_person
            assert job.status == JobStatus.PENDING
            assert job.kling_task_id is None
            assert job.next_check_at is None
            assert "cannot tell which task is this job's" in job.status_detail
        assert kling.create_calls == kling.created_count == 2  # never sent again blindly
        assert lifecycle.job_sweep() == 0

    def test_a_held_job_is_sent_again_or_stopped_by_a_person(self, user, other_user, kling, worker):
        ours, theirs = self.two_lost_creates_from_one_clip(user, other_user, kling, worker)

        assert lifecycle.job_release(job=ours, send_again=True)
        assert lifecycle.job_release(job=theirs, send_again=False)
        assert not lifecycle.job_release(job=theirs, send_again=True)  # no longer held
        worker()

        ours.refresh_from_db()
        theirs.refresh_from_db()
        assert not ours.needs_person and ours.status == JobStatus.SENT
        assert theirs.status == JobStatus.FAILED and not theirs.needs_person
        assert kling.created_count == 3

    def test_it_does_not_adopt_a_task_made_from_another_video(self, user, kling, worker, settings):
        settings.KLING_RECONCILE_GRACE_SECONDS = 30
        # Someone else on the same Kling account made a task from another video meanwhile.
        foreign = kling_client().create_task(text_request("111111111111111111"))
        kling.inject_disconnect("POST", "/lip-sync")  # our create is lost before Kling saw it
        job = make_job(user, video_id="222222222222222222")

        worker()
        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.PENDING
        assert job.kling_task_id is None
        assert kling.list_count == 1
        assert set(kling.tasks) == {foreign.task_id}

    def test_a_create_that_never_arrived_is_sent_again_once_after_the_grace(
        self, user, kling, worker, settings
    ):
        settings.KLING_RECONCILE_GRACE_SECONDS = 30
        kling.inject_raw(
            "POST", "/lip-sync", body=b"<html><h1>502 Bad Gateway</h1></html>", http_status=502
        )
        job = make_job(user)

        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert job.send_started_at is not None
        assert kling.create_calls == 1
        assert kling.created_count == 0

        # Within the grace: Kling's list is asked, nothing is sent again.
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert kling.list_count == 1
        assert kling.create_calls == 1
        assert job.next_check_at is not None
        assert job.send_started_at is not None
        assert job.next_check_at <= job.send_started_at + timedelta(seconds=30)

        # The grace has passed and the task never showed up: send it again, exactly once.
        shift_back(job, "send_started_at", 31)
        worker(all_scheduled=True)
        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.SENT
        assert kling.create_calls == 2
        assert kling.created_count == 1
        assert job.send_attempts == 2
        worker(all_scheduled=True)
        assert kling.create_calls == 2

    def test_with_no_grace_a_lost_create_is_sent_again_at_the_first_look(
        self, user, kling, worker, settings
    ):
        settings.KLING_RECONCILE_GRACE_SECONDS = 0
        kling.inject_disconnect("POST", "/lip-sync")
        job = make_job(user)

        worker()
        worker(all_scheduled=True)
        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.SENT
        assert kling.create_calls == 2
        assert kling.created_count == 1


class TestAWorkerKilledMidSend:
    def test_the_sweep_reschedules_it_and_the_worker_adopts_the_task_kling_made(
        self, user, kling, worker
    ):
        job = make_job(user)
        # The worker claimed the run and sent the create, which Kling received; then the
        # process died before it could write anything down.
        created = kling_client().create_task(text_request(job.video_id, text=job.text))
        now = timezone.now()
        DBTaskResult.objects.filter(status="READY").update(status="RUNNING")
        Job.objects.filter(pk=job.pk).update(
            send_started_at=now - timedelta(seconds=150),
            send_attempts=1,
            next_check_at=now - timedelta(seconds=100),
        )
        assert worker() == 0  # nothing is scheduled any more

        assert lifecycle.job_sweep() == 1
        worker()
        job.refresh_from_db()

        assert job.status == JobStatus.SENT
        assert job.kling_task_id == created.task_id
        assert kling.created_count == 1
        assert kling.create_calls == 1
        assert lifecycle.job_sweep() == 0

    def test_the_sweep_leaves_jobs_on_schedule_alone(self, user, kling, worker):
        job = make_job(user)
        advance_to_sent(job, worker)
        Job.objects.filter(pk=job.pk).update(next_check_at=timezone.now() - timedelta(seconds=30))

        assert lifecycle.job_sweep() == 0

    def test_the_sweep_ignores_finished_jobs(self, user, kling, worker):
        job = make_job(user)
        submitting.job_cancel(job=job)
        Job.objects.filter(pk=job.pk).update(next_check_at=timezone.now() - timedelta(hours=1))

        assert lifecycle.job_sweep() == 0


class TestStaleRuns:
    def test_a_callback_reschedule_makes_the_older_run_do_nothing(self, user, kling, worker):
        job = advance_to_sent(make_job(user), worker)
        queries = kling.query_count

        callbacks.job_handle_callback(job=job)
        ran = worker(all_scheduled=True)

        assert ran == 2  # the old run and the callback's run both ran ...
        assert kling.query_count == queries + 1  # ... but only one asked Kling

    def test_a_run_whose_due_time_does_not_match_does_nothing(self, user, kling, worker):
        job = advance_to_sent(make_job(user), worker)
        queries = kling.query_count

        assert job.next_check_at is not None
        lifecycle.job_advance(job_id=job.pk, due=job.next_check_at - timedelta(seconds=1))

        assert kling.query_count == queries
        job.refresh_from_db()
        assert job.status == JobStatus.SENT


class TestPolling:
    def test_poll_errors_back_off_and_then_recover(self, user, kling, sim_clock, worker, settings):
        settings.KLING_RETRY_BASE_SECONDS = 2
        job = advance_to_sent(make_job(user), worker)
        kling.inject(
            "GET", f"/{job.kling_task_id}", http_status=500, code=5000, message="oops", times=3
        )

        for errors, wait in ((1, 2), (2, 4), (3, 8)):
            before = timezone.now()
            worker(all_scheduled=True)
            after = timezone.now()
            job.refresh_from_db()
            assert job.poll_errors == errors
            assert job.error_code == 5000
            assert job.status == JobStatus.SENT
            delta = timedelta(seconds=wait)
            assert job.next_check_at is not None
            assert before + delta <= job.next_check_at <= after + delta

        sim_clock.advance(4)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.PROCESSING
        assert job.poll_errors == 0
        assert job.error_code is None
        assert job.error_detail == ""

    def test_a_poll_error_wait_is_capped_by_four_poll_intervals(
        self, user, kling, worker, settings
    ):
        settings.KLING_RETRY_BASE_SECONDS = 100
        job = advance_to_sent(make_job(user), worker)
        kling.inject("GET", f"/{job.kling_task_id}", http_status=503, code=5001, message="x")

        before = timezone.now()
        worker(all_scheduled=True)
        after = timezone.now()
        job.refresh_from_db()

        cap = timedelta(seconds=4 * settings.KLING_POLL_FAST_SECONDS)
        assert job.next_check_at is not None
        assert before + cap <= job.next_check_at <= after + cap

    def test_a_task_kling_keeps_not_finding_fails_in_the_end(self, user, kling, worker):
        job = advance_to_sent(make_job(user), worker)
        kling.inject(
            "GET", f"/{job.kling_task_id}", http_status=404, code=1203, message="nope", times=10
        )

        for _ in range(9):
            worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.SENT
        worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.FAILED
        assert "no longer knows" in job.status_detail

    # Up to the job's deadline, KLING_JOB_DEADLINE_MINUTES (7,200 s): see test_deadline.py.
    @pytest.mark.parametrize(
        ("age_seconds", "interval"),
        [(0, 5), (30, 5), (90, 15), (280, 15), (400, 30), (880, 30), (1000, 60), (7000, 60)],
    )
    def test_it_checks_every_5_s_in_the_first_minute_then_less_often_up_to_a_cap(
        self, user, kling, worker, age_seconds, interval
    ):
        job = advance_to_sent(make_job(user), worker)
        shift_back(job, "sent_at", age_seconds)

        before = timezone.now()
        worker(all_scheduled=True)
        after = timezone.now()
        job.refresh_from_db()

        delta = timedelta(seconds=interval)
        assert job.next_check_at is not None
        assert before + delta <= job.next_check_at <= after + delta

    def test_the_first_check_is_due_5_s_after_sending(self, user, kling, worker):
        job = advance_to_sent(make_job(user), worker)
        assert job.next_check_at is not None
        assert job.sent_at is not None
        assert job.next_check_at - job.sent_at == timedelta(seconds=5)

    def test_the_cap_setting_bounds_every_interval(self, user, kling, worker, settings):
        settings.KLING_POLL_MAX_SECONDS = 10
        job = advance_to_sent(make_job(user), worker)
        shift_back(job, "sent_at", 120)  # 15 s uncapped

        before = timezone.now()
        worker(all_scheduled=True)
        after = timezone.now()
        job.refresh_from_db()

        assert job.next_check_at is not None
        assert before + timedelta(seconds=10) <= job.next_check_at <= after + timedelta(seconds=10)


class TestTakingLong:
    def test_a_job_is_flagged_after_the_usual_time(self, user, kling, worker, settings):
        settings.KLING_SLOW_AFTER_MINUTES = 15
        job = advance_to_sent(make_job(user), worker)
        assert not job.is_taking_long

        shift_back(job, "sent_at", 14 * 60)
        job.refresh_from_db()
        assert not job.is_taking_long

        shift_back(job, "sent_at", 2 * 60)
        job.refresh_from_db()
        assert job.is_taking_long

    def test_the_setting_decides_when(self, user, kling, worker, settings):
        settings.KLING_SLOW_AFTER_MINUTES = 1
        job = advance_to_sent(make_job(user), worker)
        shift_back(job, "sent_at", 61)
        job.refresh_from_db()
        assert job.is_taking_long

    def test_waiting_and_finished_jobs_are_never_flagged(
        self, user, kling, sim_clock, worker, settings
    ):
        settings.KLING_SLOW_AFTER_MINUTES = 1
        pending = make_job(user)
        shift_back(pending, "created_at", 3600)
        pending.refresh_from_db()
        assert not pending.is_taking_long

        job = advance_to_sent(make_job(user), worker)
        sim_clock.advance(14)
        worker(all_scheduled=True)
        shift_back(job, "sent_at", 3600)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert not job.is_taking_long


class TestLostAnswersGiveUp:
    def test_a_job_whose_answers_keep_getting_lost_fails_after_the_attempt_limit(
        self, user, kling, worker, settings
    ):
        settings.KLING_MAX_SEND_ATTEMPTS = 2
        settings.KLING_RECONCILE_GRACE_SECONDS = 0
        kling.inject_raw(
            "POST", "/v1/videos/lip-sync", body=b"<html>502</html>", http_status=502, times=5
        )
        job = make_job(user)

        for _ in range(6):
            worker(all_scheduled=True)
        job.refresh_from_db()

        assert job.status == JobStatus.FAILED
        assert job.send_attempts == 2
        assert "kept getting lost" in job.status_detail
        assert kling.created_count == 0
