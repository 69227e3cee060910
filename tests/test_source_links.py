"""Uploaded source videos reach Kling as signed links: the link, serving it (without a log-in,
with ranges), refusing tampered, stale or misdirected links, sending it, finding a lost create
by it, and the simulator downloading it from a live studio as Kling does."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseBase, StreamingHttpResponse
from django.test import Client
from factories import make_job, send_soon, uploaded_job
from media_files import video_bytes

from lipsync_site.env import envfloat
from tasks_app.models import Job, JobStatus
from tasks_app.source_links import (
    SourceLinkUnavailable,
    source_base_url,
    source_link,
    source_link_is_for,
)

pytestmark = pytest.mark.django_db


# Small real clips (PyAV); what Kling would make of their size does not matter here.
MP4 = video_bytes(seconds=1, width=64, height=64, face=False)
MOV = video_bytes(seconds=1, width=64, height=64, face=False, container="mov")


def body_of(response: HttpResponseBase) -> bytes:
    assert isinstance(response, StreamingHttpResponse | FileResponse)
    return b"".join(response.streaming_content)  # type: ignore[arg-type]


def path_of(url: str) -> str:
    return urlsplit(url).path


def with_signature_of(token: str, other: str) -> str:
    """``token``'s payload under ``other``'s timestamp and signature."""
    payload = token.rsplit(":", 2)[0]
    _, timestamp, signature = other.rsplit(":", 2)
    return f"{payload}:{timestamp}:{signature}"


def tampered(link: str) -> str:
    """``link`` with the last character of its token changed."""
    head, token, name = link.rsplit("/", 2)
    return f"{head}/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}/{name}"


@pytest.fixture
def demo_base(settings) -> str:
    """Demo mode without SITE_URL: links point at the port the studio serves on."""
    settings.KLING_DEMO = True
    settings.SITE_URL = None
    settings.DEMO_STUDIO_URL = "http://127.0.0.1:8123"
    return settings.DEMO_STUDIO_URL


class TestTheLink:
    def test_it_is_absolute_under_site_url_and_different_for_each_job(self, settings, user):
        settings.SITE_URL = "https://studio.example.com"
        first, second = uploaded_job(user), uploaded_job(user)

        link = source_link(job=first)

        assert link.startswith("https://studio.example.com/sources/")
        assert link.endswith("/video.mp4")
        assert link != source_link(job=second)
        assert source_base_url() == "https://studio.example.com"

    def test_a_mov_upload_is_linked_as_a_mov(self, demo_base, user):
        link = source_link(job=uploaded_job(user, data=MOV, extension="mov"))
        assert link.endswith("/video.mov")

    def test_demo_mode_without_site_url_links_to_the_studio_on_this_machine(self, demo_base, user):
        assert source_link(job=uploaded_job(user)).startswith("http://127.0.0.1:8123/sources/")

    def test_live_mode_without_site_url_has_no_link(self, settings, user):
        settings.KLING_DEMO = False
        settings.SITE_URL = None
        job = uploaded_job(user)

        assert source_base_url() is None
        with pytest.raises(SourceLinkUnavailable):
            source_link(job=job)

    def test_it_tells_its_own_job_from_any_other(self, demo_base, user):
        job, other = uploaded_job(user), uploaded_job(user)
        link = source_link(job=job)

        assert source_link_is_for(url=link, job=job)
        assert not source_link_is_for(url=link, job=other)
        assert not source_link_is_for(url=link.replace("/video.mp4", "/video.mov"), job=job)
        assert not source_link_is_for(url=tampered(link), job=job)
        assert not source_link_is_for(url="https://cdn.example.com/clip.mp4", job=job)
        link_job = make_job(user, video_url="https://cdn.example.com/clip.mp4")
        assert not source_link_is_for(url="https://cdn.example.com/clip.mp4", job=link_job)


class TestServing:
    """Kling fetches the link with no session: the studio's log-in must not stand in the way."""

    def test_a_valid_link_serves_the_whole_file_without_a_log_in(self, demo_base, user):
        response = Client().get(path_of(source_link(job=uploaded_job(user))))

        assert response.status_code == 200
        assert body_of(response) == MP4
        assert response["Content-Type"] == "video/mp4"
        assert response["Content-Length"] == str(len(MP4))
        assert response["Accept-Ranges"] == "bytes"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cache-Control"] == "private"

    def test_a_range_gets_exactly_those_bytes(self, demo_base, user):
        path = path_of(source_link(job=uploaded_job(user)))

        response = Client().get(path, headers={"range": "bytes=100-499"})

        assert response.status_code == 206
        assert body_of(response) == MP4[100:500]
        assert response["Content-Range"] == f"bytes 100-499/{len(MP4)}"

    def test_head_is_answered_and_other_methods_are_not(self, demo_base, user):
        path = path_of(source_link(job=uploaded_job(user)))

        head = Client().head(path)
        assert head.status_code == 200
        assert head["Content-Length"] == str(len(MP4))
        assert Client().post(path).status_code == 405

    def test_a_mov_is_served_as_quicktime(self, demo_base, user):
        job = uploaded_job(user, data=MOV, extension="mov")
        response = Client().get(path_of(source_link(job=job)))

        assert response.status_code == 200
        assert response["Content-Type"] == "video/quicktime"
        assert body_of(response) == MOV

    def test_a_tampered_token_is_refused(self, demo_base, user):
        path = path_of(source_link(job=uploaded_job(user)))
        token = path.split("/")[-2]

        assert Client().get(tampered(path)).status_code == 403
        assert Client().get(path.replace(token, "x" + token)).status_code == 403
        assert Client().get("/sources/not-a-token/video.mp4").status_code == 403

    def test_a_link_for_one_job_cannot_fetch_another_jobs_file(self, demo_base, user, other_user):
        mine = path_of(source_link(job=uploaded_job(user)))
        theirs = path_of(source_link(job=uploaded_job(other_user, data=MP4 + b"theirs")))
        my_token, their_token = mine.split("/")[-2], theirs.split("/")[-2]

        # Their job and file, under my signature.
        forged = theirs.replace(their_token, with_signature_of(their_token, my_token))
        assert forged != theirs
        assert Client().get(forged).status_code == 403

    def test_a_link_is_bound_to_the_file_it_was_made_for(self, demo_base, user):
        job, other = uploaded_job(user), uploaded_job(user, data=MP4 + b"other")
        path = path_of(source_link(job=job))
        Job.objects.filter(pk=job.pk).update(video_file=other.video_file.name)

        assert Client().get(path).status_code == 404
        assert Client().get(path.replace("video.mp4", "video.mov")).status_code == 404

    def test_a_stale_link_is_refused_after_source_link_hours(self, demo_base, settings, user):
        path = path_of(source_link(job=uploaded_job(user)))
        time.sleep(1.6)  # signatures count whole seconds

        settings.SOURCE_LINK_HOURS = 48
        assert Client().get(path).status_code == 200
        settings.SOURCE_LINK_HOURS = 0.5 / 3600  # half a second
        assert Client().get(path).status_code == 404

    def test_a_job_whose_file_is_gone_answers_404(self, demo_base, user):
        job = uploaded_job(user)
        path = path_of(source_link(job=job))
        default_storage.delete(str(job.video_file.name))

        assert Client().get(path).status_code == 404

    def test_a_deleted_job_answers_404(self, demo_base, user):
        job = uploaded_job(user)
        path = path_of(source_link(job=job))
        job.delete()

        assert Client().get(path).status_code == 404


class TestSending:
    def test_kling_gets_the_signed_link_and_no_video_id(self, demo_base, user, kling, worker):
        job = uploaded_job(user)
        send_soon(job)

        worker()

        (create,) = [r for r in kling.requests if r.method == "POST"]
        sent = create.body["input"]
        assert "video_id" not in sent
        assert sent["video_url"].startswith("http://127.0.0.1:8123/sources/")
        assert source_link_is_for(url=sent["video_url"], job=job)
        job.refresh_from_db()
        assert job.status == JobStatus.SENT

    def test_a_lost_create_of_an_uploaded_video_is_found_by_its_link(
        self, demo_base, user, kling, worker
    ):
        job = uploaded_job(user)
        uploaded_job(user)  # another upload waiting: its link is not this job's
        send_soon(job)
        kling.inject_disconnect("POST", "/lip-sync", take_effect=True)

        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert job.send_started_at is not None

        worker(all_scheduled=True)

        job.refresh_from_db()
        (task_id,) = kling.tasks
        assert job.status == JobStatus.SENT
        assert job.kling_task_id == task_id
        assert kling.create_calls == 1
        assert "Found on Kling after a lost answer" in job.events.values_list("note", flat=True)

    def test_live_mode_without_site_url_fails_the_job_before_kling(
        self, settings, user, kling, worker
    ):
        settings.SITE_URL = None
        job = uploaded_job(user)
        send_soon(job)
        settings.KLING_DEMO = False

        worker()

        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        assert "SITE_URL" in job.status_detail
        assert kling.create_calls == 0


@pytest.mark.django_db(transaction=True)
class TestKlingFetchesTheLink:
    """The simulator downloads the link from a live studio on 127.0.0.1, as Kling would."""

    def test_the_video_is_downloaded_and_the_job_succeeds(
        self, live_server, settings, user, start_kling, sim_clock, run_job
    ):
        kling = start_kling(
            now=sim_clock, submitted_seconds=3, processing_seconds=10, fetch_sources=True
        )
        settings.SITE_URL = live_server.url
        job = uploaded_job(user)
        send_soon(job)

        job = run_job(job)

        assert job.status == JobStatus.SUCCEEDED, job.status_detail
        (task,) = kling.tasks.values()
        assert task["task_info"]["parent_video"]["url"].startswith(live_server.url + "/sources/")

    def test_a_file_gone_before_kling_fetches_it_fails_the_job_with_the_reason(
        self, live_server, settings, user, start_kling, sim_clock, run_job
    ):
        start_kling(now=sim_clock, submitted_seconds=3, processing_seconds=10, fetch_sources=True)
        settings.KLING_DEMO = True
        settings.SITE_URL = None
        settings.DEMO_STUDIO_URL = live_server.url
        job = uploaded_job(user)
        default_storage.delete(str(job.video_file.name))
        send_soon(job)

        job = run_job(job)

        assert job.status == JobStatus.FAILED
        assert "could not make this video" in job.status_detail
        assert "download the video" in job.status_detail
        assert "HTTP 404" in job.status_detail


class TestSourceLinkHoursSetting:
    def test_decimals_are_read(self, monkeypatch):
        monkeypatch.setenv("SOURCE_LINK_HOURS_TEST", "0.25")
        assert envfloat("SOURCE_LINK_HOURS_TEST", 48.0, above=0) == 0.25
        monkeypatch.delenv("SOURCE_LINK_HOURS_TEST")
        assert envfloat("SOURCE_LINK_HOURS_TEST", 48.0, above=0) == 48.0

    @pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
    def test_a_value_that_is_not_a_positive_number_stops_start_up(self, monkeypatch, value):
        monkeypatch.setenv("SOURCE_LINK_HOURS_TEST", value)
        with pytest.raises(ImproperlyConfigured, match="SOURCE_LINK_HOURS_TEST"):
            envfloat("SOURCE_LINK_HOURS_TEST", 48.0, above=0)
