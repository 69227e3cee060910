"""The pages people use, through Django's test client, with the Kling simulator running."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from factories import TEXT_FORM, make_job, put_job, rows
from local_http import serving
from media_files import audio_bytes

from tasks_app.models import Job, JobStatus
from tasks_app.services import submitting

pytestmark = pytest.mark.django_db

NEW = "/tasks/new/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def form_data(**overrides) -> dict:
    return TEXT_FORM | {"submission_key": str(uuid.uuid4()), "voice_speed": "1.2"} | overrides


@pytest.fixture(scope="module")
def voice_wav() -> bytes:
    """A 3-second WAV: the studio reads an audio track's length before taking it."""
    return audio_bytes(seconds=3)


def detail_url(job: Job) -> str:
    return f"/tasks/{job.pk}/"


class TestTheNewJobPage:
    def test_it_renders_with_a_fresh_submission_key(self, alice, kling):
        first = alice.get(NEW)
        second = alice.get(NEW)

        assert first.status_code == 200
        key = first.context["form"].initial["submission_key"]
        assert isinstance(key, uuid.UUID)
        assert f'value="{key}"' in first.content.decode()
        assert key != second.context["form"].initial["submission_key"]

    def test_a_valid_post_stores_the_job_and_redirects_to_it_without_calling_kling(
        self, alice, user, team, kling
    ):
        data = form_data(task_id="parent-task-1")
        response = alice.post(NEW, data)

        job = Job.objects.get()
        assert response.status_code == 302
        assert response["Location"] == f"/tasks/{job.pk}/"
        assert (job.team, job.submitted_by) == (team, user)
        assert str(job.submission_key) == data["submission_key"]
        assert (job.mode, job.video_id, job.video_url, job.parent_task_id) == (
            "text2video",
            "860327812345678901",
            "",
            "parent-task-1",
        )
        assert (job.text, job.voice_id, job.voice_language, str(job.voice_speed)) == (
            "Hello from the studio",
            "genshin_vindi2",
            "en",
            "1.2",
        )
        assert job.status == JobStatus.PENDING
        assert kling.create_calls == 0

    def test_the_worker_sends_what_the_post_stored(self, alice, kling, worker):
        alice.post(NEW, form_data())
        assert kling.create_calls == 0

        worker()

        assert kling.create_calls == 1
        (create,) = [r for r in kling.requests if r.method == "POST"]
        assert create.body["input"] == {
            "video_id": "860327812345678901",
            "mode": "text2video",
            "text": "Hello from the studio",
            "voice_id": "genshin_vindi2",
            "voice_language": "en",
            "voice_speed": 1.2,
        }

    def test_an_invalid_post_shows_the_errors_next_to_the_fields_and_keeps_the_input(
        self, alice, kling
    ):
        response = alice.post(NEW, form_data(text="x" * 121, voice_speed="3.5"))

        assert response.status_code == 400
        assert Job.objects.count() == 0
        form = response.context["form"]
        assert "121" in " ".join(form.errors["text"])
        assert "0.8 to 2.0" in " ".join(form.errors["voice_speed"])
        html = response.content.decode()
        assert "Nothing was sent to Kling" in html
        assert 'id="id_text_error"' in html
        assert "x" * 121 in html
        assert 'value="860327812345678901"' in html
        assert kling.create_calls == 0

    def test_the_same_submission_twice_makes_one_job_and_shows_it(self, alice, kling):
        data = form_data()

        first = alice.post(NEW, data)
        second = alice.post(NEW, data, follow=True)

        assert Job.objects.count() == 1
        job = Job.objects.get()
        assert first["Location"] == detail_url(job)
        assert second.redirect_chain[-1][0] == detail_url(job)
        assert "already submitted this job" in second.content.decode()

    def test_a_new_submission_key_makes_a_new_job(self, alice, kling):
        alice.post(NEW, form_data())
        alice.post(NEW, form_data())
        assert Job.objects.count() == 2

    def test_an_oversize_upload_is_refused_clearly_and_keeps_the_other_fields(
        self, alice, kling, settings, wav_bytes
    ):
        settings.KLING_MAX_AUDIO_BYTES = 1024
        big = wav_bytes + b"\x00" * 4096
        data = form_data(mode="audio2video", audio_source="file", text="", voice_id="")
        data["video_id"] = "keep-this-video-id"
        data["audio_file"] = SimpleUploadedFile("voice.wav", big, content_type="audio/wav")

        response = alice.post(NEW, data)

        assert response.status_code == 400
        assert Job.objects.count() == 0
        (error,) = response.context["form"].errors["audio_file"]
        assert "larger than" in error
        html = response.content.decode()
        assert 'value="keep-this-video-id"' in html
        assert re.search(r'<input[^>]*value="audio2video"[^>]*checked', html)

    def test_an_audio_file_job_goes_to_kling_as_base64(self, alice, kling, worker, voice_wav):
        wav_bytes = voice_wav
        data = form_data(mode="audio2video", audio_source="file", text="", voice_id="")
        data["audio_file"] = SimpleUploadedFile("line.wav", wav_bytes, content_type="audio/wav")

        response = alice.post(NEW, data)

        job = Job.objects.get()
        assert response["Location"] == detail_url(job)
        assert job.mode == "audio2video"
        assert job.audio_name == "line.wav"
        with job.audio_file.open("rb") as stored:
            assert stored.read() == wav_bytes
        assert kling.create_calls == 0

        worker()

        job.refresh_from_db()
        assert job.status == JobStatus.SENT
        (create,) = [r for r in kling.requests if r.method == "POST"]
        sent = create.body["input"]
        assert sent["mode"] == "audio2video"
        assert sent["audio_type"] == "file"
        assert "audio_url" not in sent
        assert base64.b64decode(sent["audio_file"]) == wav_bytes

    def test_an_audio_link_job_goes_to_kling_as_a_url(self, alice, kling, worker, settings):
        with serving(audio_bytes(seconds=3, format="mp3")) as server:
            # The studio reads the link before saving the job; it is on this machine.
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            url = f"{server.url}/video/line.mp3"
            data = form_data(
                mode="audio2video", audio_source="url", audio_url=url, text="", voice_id=""
            )
            assert alice.post(NEW, data).status_code == 302
        worker()

        (create,) = [r for r in kling.requests if r.method == "POST"]
        assert create.body["input"]["audio_type"] == "url"
        assert create.body["input"]["audio_url"] == url


class TestTheJobPage:
    def test_it_shows_the_status_in_plain_words(self, alice, user, kling, run_job):
        job = make_job(user, text="Plain words", voice_id="AOT")

        waiting = alice.get(detail_url(job)).content.decode()
        assert "Waiting to be sent" in waiting
        assert "Waiting for the studio&#x27;s worker to send it to Kling." in waiting
        assert "Plain words" in waiting
        assert "Ace" in waiting  # the voice by its name, not its id

        run_job(job)
        done = alice.get(detail_url(job)).content.decode()
        assert "Your lip-synced video is ready." in done
        assert "Make another lip-sync from this video" in done

    def test_a_failed_job_says_why_in_plain_words_and_offers_to_try_again(
        self, alice, user, kling, run_job
    ):
        job = make_job(user, video_id="", video_url="https://example.com/noface.mp4")
        run_job(job)

        html = alice.get(detail_url(job)).content.decode()

        assert job.status == JobStatus.FAILED
        assert "could not find a human face" in html
        assert "Try again" in html
        assert f"/tasks/new/?from={job.pk}" in html

    def test_a_job_taking_long_is_flagged(self, alice, user, kling, worker, settings):
        settings.KLING_SLOW_AFTER_MINUTES = 1
        job = make_job(user)
        worker()
        assert "Taking longer than usual" not in alice.get(detail_url(job)).content.decode()

        Job.objects.filter(pk=job.pk).update(sent_at=job.created_at - timedelta(minutes=2))
        assert "Taking longer than usual" in alice.get(detail_url(job)).content.decode()

    def test_the_poll_returns_only_the_status_and_stops_once_finished(
        self, alice, user, kling, worker, run_job
    ):
        job = make_job(user)

        # As the page polls: saying what its timeline shows, so none comes back.
        pending = alice.get(detail_url(job), {"shown": "pending"}, **HTMX)
        assert pending.status_code == 200
        html = pending.content.decode()
        assert 'id="job-status"' in html
        assert "<html" not in html
        assert "Timeline" not in html
        assert "hx-get" in html

        worker()
        assert alice.get(detail_url(job), **HTMX).status_code == 200

        run_job(job)
        done = alice.get(detail_url(job), **HTMX)
        assert done.status_code == 286
        assert "Your lip-synced video is ready." in done.content.decode()

    def test_polls_and_page_views_never_call_kling(self, alice, user, kling, worker):
        job = make_job(user)
        worker()
        queries, creates, lists = kling.query_count, kling.create_calls, kling.list_count

        for _ in range(10):
            assert alice.get(detail_url(job), **HTMX).status_code == 200
            assert alice.get(detail_url(job)).status_code == 200
            assert alice.get(f"/tasks/live/?id={job.pk}").status_code == 200
        alice.get("/tasks/")

        assert (kling.query_count, kling.create_calls, kling.list_count) == (
            queries,
            creates,
            lists,
        )


class TestTheHistoryPage:
    def test_it_lists_the_teams_jobs_newest_first(self, alice, user, teammate, other_user, kling):
        first = make_job(user, text="first")
        second = make_job(teammate, text="second")
        third = make_job(user, text="third")
        make_job(other_user, text="not ours")

        response = alice.get("/tasks/")

        assert response.status_code == 200
        assert rows(response) == [third.pk, second.pk, first.pk]
        assert "not ours" not in response.content.decode()

    def test_live_rows_keep_polling_while_a_job_is_active(self, alice, user, kling):
        job = make_job(user)

        response = alice.get(f"/tasks/live/?id={job.pk}", **HTMX)

        assert response.status_code == 200
        assert f'id="job-row-{job.pk}"' in response.content.decode()

    def test_live_rows_stop_polling_when_none_is_active(self, alice, user, kling):
        job = make_job(user)
        submitting.job_cancel(job=job)

        response = alice.get(f"/tasks/live/?id={job.pk}", **HTMX)

        assert response.status_code == 286
        assert f'id="job-row-{job.pk}"' in response.content.decode()

    def test_live_rows_ignore_another_teams_jobs(self, alice, other_user, kling):
        theirs = make_job(other_user, text="secret plans")

        response = alice.get(f"/tasks/live/?id={theirs.pk}", **HTMX)

        assert response.status_code == 286
        assert "secret plans" not in response.content.decode()


class TestTryingAgain:
    def test_try_again_makes_one_new_job_with_the_same_inputs(self, alice, user, kling, run_job):
        job = make_job(user, video_id="", video_url="https://example.com/noface.mp4")
        run_job(job)

        first = alice.post(f"/tasks/{job.pk}/retry/")
        second = alice.post(f"/tasks/{job.pk}/retry/")

        retry = Job.objects.get(retry_of=job)
        assert first["Location"] == second["Location"] == detail_url(retry)
        assert Job.objects.count() == 2
        assert retry.status == JobStatus.PENDING
        fields = ("mode", "video_id", "video_url", "text", "voice_id", "voice_language")
        assert [getattr(retry, f) for f in fields] == [getattr(job, f) for f in fields]
        assert retry.voice_speed == job.voice_speed

    def test_try_again_on_an_audio_file_job_reuses_the_stored_file(
        self, alice, kling, worker, voice_wav
    ):
        wav_bytes = voice_wav
        data = form_data(mode="audio2video", audio_source="file", text="", voice_id="")
        data["audio_file"] = SimpleUploadedFile("line.wav", wav_bytes, content_type="audio/wav")
        alice.post(NEW, data)
        job = Job.objects.get()
        worker()
        put_job(job, status=JobStatus.FAILED)  # as if Kling had failed it

        alice.post(f"/tasks/{job.pk}/retry/")
        retry = Job.objects.get(retry_of=job)
        worker()

        assert retry.audio_file.name == job.audio_file.name
        creates = [r for r in kling.requests if r.method == "POST"]
        assert [base64.b64decode(r.body["input"]["audio_file"]) for r in creates] == [
            wav_bytes,
            wav_bytes,
        ]

    @pytest.mark.parametrize(
        "status", [JobStatus.PENDING, JobStatus.SENT, JobStatus.PROCESSING, JobStatus.SUCCEEDED]
    )
    def test_only_a_failed_or_cancelled_job_can_be_tried_again(self, alice, user, status):
        job = make_job(user, status=status)

        response = alice.post(f"/tasks/{job.pk}/retry/", follow=True)

        assert not Job.objects.filter(retry_of=job).exists()
        assert response.redirect_chain[-1][0] == detail_url(job)
        assert "Only a failed or cancelled job can be tried again." in response.content.decode()

    def test_a_retry_counts_against_the_per_minute_limit(self, alice, user, settings):
        settings.SUBMISSIONS_PER_MINUTE = 2
        failed = make_job(user, status=JobStatus.FAILED)  # three minutes ago
        make_job(user), make_job(user)  # two new jobs this minute

        response = alice.post(f"/tasks/{failed.pk}/retry/", follow=True)

        assert not Job.objects.filter(retry_of=failed).exists()
        assert "the most the studio allows" in response.content.decode()

    def test_a_retry_of_a_retry_obeys_the_same_rules(self, alice, user, kling, run_job):
        job = make_job(user, status=JobStatus.FAILED)
        alice.post(f"/tasks/{job.pk}/retry/")
        retry = Job.objects.get(retry_of=job)

        alice.post(f"/tasks/{retry.pk}/retry/")  # still pending: refused

        assert Job.objects.count() == 2

    def test_edit_and_try_again_fills_in_the_form(self, alice, user, kling):
        job = make_job(
            user,
            text="Edit me",
            voice_id="tiyuxi_xuedi",
            voice_language="zh",
            parent_task_id="parent-1",
        )

        response = alice.get(f"{NEW}?from={job.pk}")

        assert response.status_code == 200
        initial = response.context["form"].initial
        assert initial["text"] == "Edit me"
        assert initial["voice_id"] == "tiyuxi_xuedi"
        assert initial["voice_language"] == "zh"
        assert initial["video_id"] == "860327812345678901"
        assert initial["task_id"] == "parent-1"
        html = response.content.decode()
        assert "Edit me" in html
        assert f"Filled in from job #{job.pk}" in html

    def test_make_another_from_this_video_fills_in_the_video_id(self, alice, kling):
        response = alice.get(f"{NEW}?video_id=987654321098765432")

        initial = response.context["form"].initial
        assert initial["video_source"] == "video_id"
        assert initial["video_id"] == "987654321098765432"
        assert 'value="987654321098765432"' in response.content.decode()

    def test_the_result_offers_a_link_that_fills_in_the_result_video(
        self, alice, user, kling, run_job
    ):
        job = run_job(make_job(user))
        assert job.result_video_id

        html = alice.get(detail_url(job)).content.decode()

        assert f"/tasks/new/?video_id={job.result_video_id}" in html


class TestCancelling:
    def test_a_job_not_yet_sent_can_be_cancelled(self, alice, user, kling, worker):
        job = make_job(user)

        response = alice.post(f"/tasks/{job.pk}/cancel/")

        assert response["Location"] == detail_url(job)
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED
        assert job.next_check_at is None
        worker(all_scheduled=True)
        assert kling.create_calls == 0

    def test_a_sent_job_cannot_be_cancelled(self, alice, user, kling, worker):
        job = make_job(user)
        worker()

        response = alice.post(f"/tasks/{job.pk}/cancel/", follow=True)

        job.refresh_from_db()
        assert job.status == JobStatus.SENT
        assert "can&#x27;t be cancelled" in response.content.decode()

    def test_a_job_whose_send_has_begun_cannot_be_cancelled(self, alice, user, kling):
        job = make_job(user)
        Job.objects.filter(pk=job.pk).update(send_started_at=timezone.now())

        response = alice.post(f"/tasks/{job.pk}/cancel/", follow=True)

        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert response.redirect_chain == [(detail_url(job), 302)]
        assert response.status_code == 200
        page = response.content.decode()
        assert "can&#x27;t be cancelled" in page
        assert "Waiting to be sent" in page  # the job page, as it still is

    def test_cancel_needs_a_post(self, alice, user, kling):
        job = make_job(user)
        assert alice.get(f"/tasks/{job.pk}/cancel/").status_code == 405
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING


class TestAnotherTeamsJobs:
    @pytest.fixture
    def alices_job(self, user, kling):
        return make_job(user, text="Alice's secret line")

    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["page", "poll"])
    def test_the_job_is_not_found(self, bob, alices_job, headers):
        assert bob.get(detail_url(alices_job), **headers).status_code == 404

    def test_try_again_is_not_found_and_makes_nothing(self, bob, alices_job):
        assert bob.post(f"/tasks/{alices_job.pk}/retry/").status_code == 404
        assert Job.objects.count() == 1

    def test_cancel_is_not_found_and_changes_nothing(self, bob, alices_job):
        assert bob.post(f"/tasks/{alices_job.pk}/cancel/").status_code == 404
        alices_job.refresh_from_db()
        assert alices_job.status == JobStatus.PENDING

    def test_edit_and_try_again_does_not_fill_in_their_inputs(self, bob, alices_job):
        response = bob.get(f"{NEW}?from={alices_job.pk}")

        assert response.context["source_job"] is None
        assert "text" not in response.context["form"].initial
        assert "secret line" not in response.content.decode()

    def test_a_teammate_sees_the_job(self, carol, alices_job):
        assert carol.get(detail_url(alices_job)).status_code == 200


class TestAnonymousVisitors:
    @pytest.mark.parametrize("path", ["/tasks/", NEW, "/tasks/1/", "/tasks/live/?id=1"])
    def test_they_are_sent_to_log_in(self, client, db, path):
        response = client.get(path)

        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")

    def test_they_cannot_post_a_job(self, client, db, kling):
        response = client.post(NEW, form_data())

        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]
        assert Job.objects.count() == 0


class TestResubmittingAtTheRateLimit:
    def test_a_resubmitted_form_finds_its_job_even_at_the_limit(self, alice, kling, settings):
        settings.SUBMISSIONS_PER_MINUTE = 1
        data = TEXT_FORM | {"submission_key": "0b6f3c1e-9a54-4b1a-8d0f-2f0a6c7d9e11"}
        first = alice.post("/tasks/new/", data)
        again = alice.post("/tasks/new/", data)
        assert first.status_code == 302
        assert again.status_code == 302
        assert again["Location"] == first["Location"]
        other = alice.post("/tasks/new/", TEXT_FORM)
        assert other.status_code == 400
        assert "in the last minute" in other.content.decode()


class TestTheStatusPoll:
    def test_a_poll_takes_at_most_three_queries_and_four_while_it_waits_to_be_sent(
        self, client, user, django_assert_max_num_queries
    ):
        running = make_job(user, status=JobStatus.PROCESSING)
        waiting = make_job(user)
        client.force_login(user)
        for job, most in ((running, 3), (waiting, 4)):  # the 4th: is a worker there to send it?
            poll = {"shown": job.timeline_state}  # as the page polls while nothing changes
            client.get(f"/tasks/{job.pk}/", poll, **HTMX)  # the typical time is cached after
            with django_assert_max_num_queries(most):
                response = client.get(f"/tasks/{job.pk}/", poll, **HTMX)
            assert response.status_code == 200

    def test_the_cancel_button_survives_the_poll_for_the_submitter_only(
        self, alice, user, teammate
    ):
        job = make_job(user)
        polled = alice.get(f"/tasks/{job.pk}/", **HTMX).content.decode()
        assert "Cancel this job" in polled

        alice.force_login(teammate)
        polled = alice.get(f"/tasks/{job.pk}/", **HTMX).content.decode()
        assert "Cancel this job" not in polled
