"""Keeping each result video in the studio's storage, and serving it back with byte ranges."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from factories import make_job, put_job
from local_http import LocalServer, serving, unused_port

from tasks_app.models import Job, JobStatus
from tasks_app.simulator import DEFAULT_ASSETS_DIR, DEMO_RESULT_NAME

pytestmark = pytest.mark.django_db

ASSET = (DEFAULT_ASSETS_DIR / DEMO_RESULT_NAME).read_bytes()
STORE_TASK = "tasks_app.results.store_result"


@pytest.fixture
def file_server(settings) -> Iterator[LocalServer]:
    """Kling's file server, on loopback: allow-listed, as a private file host would be."""
    with serving(ASSET) as server:
        settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
        yield server


@pytest.fixture
def internal_service() -> Iterator[LocalServer]:
    """Something else on the studio's machine that serves a video: not allow-listed."""
    with serving(ASSET) as server:
        yield server


@pytest.fixture
def closed_port_url(settings) -> str:
    """A local address nothing listens on (allow-listed): connecting is refused."""
    port = unused_port()
    settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def kling_serving_from(start_kling, sim_clock):
    """``kling_serving_from(url)``: a simulator whose result links point at ``url``."""

    def start(public_url: str):
        return start_kling(
            now=sim_clock, submitted_seconds=3, processing_seconds=10, public_url=public_url
        )

    return start


def store_retries() -> list[DBTaskResult]:
    return list(DBTaskResult.objects.filter(task_path=STORE_TASK, status="READY"))


def body_of(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


class TestCopyingTheResult:
    def test_stores_the_video_with_its_size_and_checksum(self, kling, user, run_job):
        job = run_job(make_job(user))

        assert job.status == JobStatus.SUCCEEDED
        assert job.stored_video
        with job.stored_video.open("rb") as stored:
            copy = stored.read()
        # The size and checksum describe the stored bytes: the copy labelled "AI-generated"
        # (test_ai_label.py), a few bytes longer than what Kling served.
        assert job.stored_size == len(copy) > len(ASSET)
        assert job.stored_sha256 == hashlib.sha256(copy).hexdigest()
        assert job.store_error == ""
        assert job.store_attempts == 1
        assert store_retries() == []

    def test_the_detail_page_says_the_studio_keeps_a_copy(self, kling, alice, user, run_job):
        job = run_job(make_job(user))

        page = alice.get(job.get_absolute_url()).content.decode()

        assert "Kept in the studio" in page
        assert f'src="/tasks/{job.pk}/video/"' in page

    def test_a_job_that_already_has_a_copy_is_not_downloaded_again(
        self, file_server, kling_serving_from, user, run_job, worker
    ):
        from tasks_app.results import store_result

        kling_serving_from(file_server.url)
        job = run_job(make_job(user))
        assert file_server.hits == 1

        store_result.enqueue(job.pk)
        worker()

        assert file_server.hits == 1
        job.refresh_from_db()
        assert job.store_attempts == 1


class TestServingTheVideo:
    @pytest.fixture
    def stored(self, user) -> Job:
        """A finished job whose studio copy is ``ASSET``, byte for byte."""
        job = make_job(user, status=JobStatus.SUCCEEDED)
        name = default_storage.save(f"results/job-{job.pk}.mp4", ContentFile(ASSET))
        return put_job(job, stored_video=name, stored_size=len(ASSET))

    def test_serves_the_studios_copy_whole_with_accept_ranges(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/")

        assert response.status_code == 200
        assert response["Accept-Ranges"] == "bytes"
        assert response["Content-Type"] == "video/mp4"
        assert response["Content-Length"] == str(len(ASSET))
        assert body_of(response) == ASSET

    def test_a_range_gets_206_and_exactly_those_bytes(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/", HTTP_RANGE="bytes=0-99")

        assert response.status_code == 206
        assert response["Content-Range"] == f"bytes 0-99/{len(ASSET)}"
        assert response["Content-Length"] == "100"
        assert body_of(response) == ASSET[:100]

    def test_a_range_in_the_middle(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/", HTTP_RANGE="bytes=1000-1999")

        assert response.status_code == 206
        assert body_of(response) == ASSET[1000:2000]

    def test_an_open_ended_range_runs_to_the_end(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/", HTTP_RANGE="bytes=26000-")

        assert response.status_code == 206
        assert response["Content-Range"] == f"bytes 26000-{len(ASSET) - 1}/{len(ASSET)}"
        assert body_of(response) == ASSET[26000:]

    def test_a_suffix_range_gets_the_last_bytes(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/", HTTP_RANGE="bytes=-100")

        size = len(ASSET)
        assert response.status_code == 206
        assert response["Content-Range"] == f"bytes {size - 100}-{size - 1}/{size}"
        assert body_of(response) == ASSET[-100:]

    def test_a_range_past_the_end_is_unsatisfiable(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/", HTTP_RANGE=f"bytes={len(ASSET)}-")

        assert response.status_code == 416
        assert response["Content-Range"] == f"bytes */{len(ASSET)}"

    def test_a_start_of_thousands_of_digits_is_unsatisfiable(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/", HTTP_RANGE=f"bytes={'9' * 5000}-")

        assert response.status_code == 416
        assert response["Content-Range"] == f"bytes */{len(ASSET)}"

    def test_an_end_of_thousands_of_digits_runs_to_the_end(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/", HTTP_RANGE=f"bytes=100-{'9' * 5000}")

        assert response.status_code == 206
        assert response["Content-Range"] == f"bytes 100-{len(ASSET) - 1}/{len(ASSET)}"
        assert body_of(response) == ASSET[100:]

    def test_a_suffix_of_thousands_of_digits_is_the_whole_file(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/", HTTP_RANGE=f"bytes=-{'9' * 5000}")

        assert response.status_code == 206
        assert response["Content-Range"] == f"bytes 0-{len(ASSET) - 1}/{len(ASSET)}"
        assert body_of(response) == ASSET

    def test_leading_zeros_do_not_make_a_number_large(self, alice, stored):
        response = alice.get(
            f"/tasks/{stored.pk}/video/", HTTP_RANGE=f"bytes={'0' * 5000}10-{'0' * 5000}19"
        )

        assert response.status_code == 206
        assert body_of(response) == ASSET[10:20]

    @pytest.mark.parametrize(
        "header",
        ["bytes=abc", "bytes=0-1,5-9", "pages=0-9", "bytes=-", "bytes=\u0661-\u0665", "bytes 0-9"],
    )
    def test_a_malformed_range_is_ignored_and_the_whole_file_served(self, alice, stored, header):
        response = alice.get(f"/tasks/{stored.pk}/video/", HTTP_RANGE=header)

        assert response.status_code == 200
        assert body_of(response) == ASSET

    def test_download_1_makes_it_an_attachment(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/?download=1")

        assert response.status_code == 200
        assert response["Content-Disposition"] == f'attachment; filename="lipsync-{stored.pk}.mp4"'
        assert body_of(response) == ASSET

    def test_without_download_it_plays_inline(self, alice, stored):
        response = alice.get(f"/tasks/{stored.pk}/video/")

        assert not response.get("Content-Disposition", "").startswith("attachment")

    def test_before_a_copy_exists_it_redirects_to_klings_link(
        self, file_server, kling_serving_from, alice, user, run_job
    ):
        file_server.mode = "error"
        kling_serving_from(file_server.url)
        job = run_job(make_job(user))
        assert not job.stored_video

        response = alice.get(f"/tasks/{job.pk}/video/")

        assert response.status_code == 302
        assert response["Location"] == job.result_video_url
        assert job.result_video_url.startswith(file_server.url)

    def test_once_klings_link_expired_and_no_copy_exists_it_is_gone(
        self, file_server, kling_serving_from, alice, user, run_job
    ):
        file_server.mode = "error"
        kling_serving_from(file_server.url)
        job = run_job(make_job(user))
        Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=31))

        assert alice.get(f"/tasks/{job.pk}/video/").status_code == 404


FAILURES = {
    "html": "did not return a video (text/html)",
    "error": "answered 500",
    "huge": "larger than allowed",
}


class TestWhenTheCopyFails:
    @pytest.mark.parametrize("mode", list(FAILURES))
    def test_records_the_problem_and_schedules_a_retry_with_back_off(
        self, file_server, kling_serving_from, user, run_job, mode
    ):
        file_server.mode = mode
        kling_serving_from(file_server.url)

        before = timezone.now()
        job = run_job(make_job(user))

        assert job.status == JobStatus.SUCCEEDED
        assert not job.stored_video
        assert FAILURES[mode] in job.store_error
        assert "will try again" in job.store_error
        assert job.store_attempts == 1
        (retry,) = store_retries()
        assert retry.args_kwargs["args"] == [job.pk]
        assert retry.run_after >= before + timedelta(seconds=29)

    def test_a_video_over_the_size_limit_without_a_declared_length_is_stopped(
        self, settings, file_server, kling_serving_from, user, run_job
    ):
        settings.RESULT_MAX_BYTES = 10_000
        file_server.mode = "unsized"
        kling_serving_from(file_server.url)

        job = run_job(make_job(user))

        assert "larger than allowed" in job.store_error
        assert not job.stored_video
        assert len(store_retries()) == 1

    def test_the_size_limit_comes_from_the_settings(self, settings, kling, user, run_job):
        settings.RESULT_MAX_BYTES = len(ASSET) - 1

        job = run_job(make_job(user))

        assert "larger than allowed" in job.store_error
        assert not job.stored_video
        assert job.status == JobStatus.SUCCEEDED

    def test_a_refused_connection_is_recorded(
        self, closed_port_url, kling_serving_from, user, run_job
    ):
        kling_serving_from(closed_port_url)

        job = run_job(make_job(user))

        assert job.status == JobStatus.SUCCEEDED
        assert "could not be downloaded (ConnectError)" in job.store_error
        assert len(store_retries()) == 1

    def test_the_wait_doubles_with_each_failure(
        self, file_server, kling_serving_from, user, run_job, worker
    ):
        file_server.mode = "error"
        kling_serving_from(file_server.url)
        job = run_job(make_job(user))

        before = timezone.now()
        worker(all_scheduled=True)

        job.refresh_from_db()
        assert job.store_attempts == 2
        (retry,) = store_retries()
        assert (
            before + timedelta(seconds=59)
            <= retry.run_after
            <= timezone.now() + timedelta(seconds=61)
        )

    def test_a_later_retry_that_works_stores_the_copy_and_clears_the_problem(
        self, alice, file_server, kling_serving_from, user, run_job, worker
    ):
        file_server.mode = "error"
        kling_serving_from(file_server.url)
        job = run_job(make_job(user))
        assert job.store_error

        file_server.mode = "video"
        worker(all_scheduled=True)

        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert job.store_error == ""
        with job.stored_video.open("rb") as stored:
            assert job.stored_sha256 == hashlib.sha256(stored.read()).hexdigest()
        assert job.store_attempts == 2
        assert store_retries() == []
        assert alice.get(f"/tasks/{job.pk}/video/").status_code == 200

    def test_the_detail_page_shows_the_problem(
        self, alice, file_server, kling_serving_from, user, run_job
    ):
        file_server.mode = "html"
        kling_serving_from(file_server.url)
        job = run_job(make_job(user))

        page = alice.get(job.get_absolute_url()).content.decode()

        assert "The result link did not return a video (text/html)." in page

    def test_gives_up_after_the_configured_attempts(
        self, settings, file_server, kling_serving_from, user, run_job, worker
    ):
        settings.RESULT_STORE_ATTEMPTS = 3
        file_server.mode = "error"
        kling_serving_from(file_server.url)
        job = run_job(make_job(user))

        worker(all_scheduled=True)
        worker(all_scheduled=True)

        job.refresh_from_db()
        assert job.store_attempts == 3
        assert file_server.hits == 3
        assert "The studio gave up" in job.store_error
        assert store_retries() == []
        assert job.status == JobStatus.SUCCEEDED
        assert not job.stored_video

    def test_a_result_link_that_is_not_a_web_link_is_refused(
        self, kling_serving_from, user, run_job
    ):
        kling_serving_from("file:///srv")

        job = run_job(make_job(user))

        assert job.result_video_url.startswith("file:///srv/assets/")
        assert not job.stored_video
        assert "The result link is not a web link." in job.store_error
        assert job.status == JobStatus.SUCCEEDED
        # Trying again cannot turn it into a web link, so no retry is scheduled.
        assert store_retries() == []
        assert job.store_attempts == 1

    def test_a_redirect_to_a_local_address_is_refused_without_asking_it(
        self, file_server, internal_service, kling_serving_from, user, run_job
    ):
        file_server.mode = "redirect"
        file_server.redirect_to = f"{internal_service.url}/admin/backup.mp4"
        kling_serving_from(file_server.url)

        job = run_job(make_job(user))

        assert file_server.hits == 1
        assert internal_service.hits == 0
        assert not job.stored_video
        assert "leads to a private or local network address (127.0.0.1)" in job.store_error
        # The same link leads to the same place next time: no retry.
        assert "The studio gave up" in job.store_error
        assert store_retries() == []
        assert job.status == JobStatus.SUCCEEDED

    def test_a_copy_that_outlasts_the_deadline_is_stopped_with_a_plain_reason(
        self, settings, file_server, kling_serving_from, user, run_job
    ):
        settings.RESULT_FETCH_DEADLINE_SECONDS = 1
        file_server.mode = "trickle"
        kling_serving_from(file_server.url)

        started = time.monotonic()
        job = run_job(make_job(user))

        # The server takes 3 s; the worker's run (job, copy and e-mail) stopped well before.
        assert time.monotonic() - started < 2.8
        assert not job.stored_video
        assert "The download took too long: the studio stops after 1 seconds." in job.store_error
        assert "will try again" in job.store_error
        assert len(store_retries()) == 1
