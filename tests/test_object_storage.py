"""Media in an S3-compatible bucket (moto's server over HTTP, never an in-process mock): the
setting, uploads and posters and result copies written to the bucket and nothing to
MEDIA_ROOT, Kling handed a presigned link it really downloads, a lost create found by it, the
job page's files reached through presigned links after the permission check, and a file the
worker cannot reach said on the job and tried again."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from factories import TEXT_FORM, make_job, put_job, send_soon, settings_run, uploaded_job
from local_http import serving, unused_port
from media_files import video_bytes
from nodes import files_under

from tasks_app.forms import file_choice_available
from tasks_app.models import Job, JobStatus
from tasks_app.results import job_store_result
from tasks_app.source_links import source_link, source_link_is_for
from tasks_app.storage import bucket as configured_bucket

pytestmark = pytest.mark.django_db

# A small real clip: what Kling would make of its size does not matter when sending.
MP4 = video_bytes(seconds=1, width=64, height=64, face=False)
JPEG = b"\xff\xd8\xff\xe0" + b"poster" * 50 + b"\xff\xd9"


def sent_inputs(kling) -> list[dict]:
    return [r.body["input"] for r in kling.requests if r.method == "POST"]


@pytest.fixture
def bucket_down(bucket, settings):
    """``make_down()``: from then on the studio's storage points at an address that does not
    answer (quickly: one attempt, one second), as when the object store is unreachable."""

    def make_down() -> None:
        settings.AWS_S3_ENDPOINT_URL = f"http://127.0.0.1:{unused_port()}"
        settings.AWS_S3_CLIENT_CONFIG = Config(
            retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=1
        )
        settings.STORAGES = {**settings.STORAGES}  # the storage is made again from these

    return make_down


def import_settings(**variables: str) -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with only ``variables`` set; it prints the
    default storage and the AWS_* settings as JSON."""
    script = (
        "import json; from lipsync_site import settings as s; "
        "print(json.dumps({'backend': s.STORAGES['default']['BACKEND'], "
        "'static': s.STORAGES['staticfiles']['BACKEND'], "
        "**{k: getattr(s, k) for k in dir(s) if k.startswith('AWS_')}}))"
    )
    return settings_run(
        script, **({"SECRET_KEY": "s3cret", "ALLOWED_HOSTS": "example.com"} | variables)
    )


class TestTheSetting:
    def test_without_a_bucket_files_stay_on_the_file_system(self):
        result = import_settings()

        assert result.returncode == 0, result.stderr
        read = json.loads(result.stdout)
        assert read["backend"] == "django.core.files.storage.FileSystemStorage"
        assert read["AWS_STORAGE_BUCKET_NAME"] is None
        assert "AWS_S3_ENDPOINT_URL" not in read

    def test_a_bucket_name_selects_django_storages_s3_with_its_own_setting_names(self):
        result = import_settings(
            AWS_STORAGE_BUCKET_NAME="studio-media",
            AWS_S3_ENDPOINT_URL="https://objects.example.com/",
            AWS_S3_REGION_NAME="eu-west-1",
            AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
            AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI",
            SOURCE_LINK_HOURS="12",
        )

        assert result.returncode == 0, result.stderr
        read = json.loads(result.stdout)
        assert read["backend"] == "storages.backends.s3.S3Storage"
        assert read["static"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
        assert read["AWS_STORAGE_BUCKET_NAME"] == "studio-media"
        assert read["AWS_S3_ENDPOINT_URL"] == "https://objects.example.com"
        assert read["AWS_S3_REGION_NAME"] == "eu-west-1"
        assert read["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"
        assert read["AWS_DEFAULT_ACL"] is None
        assert read["AWS_QUERYSTRING_AUTH"] is True
        assert read["AWS_QUERYSTRING_EXPIRE"] == 12 * 3600
        assert read["AWS_S3_FILE_OVERWRITE"] is False

    def test_a_key_without_its_secret_stops_start_up(self):
        result = import_settings(AWS_STORAGE_BUCKET_NAME="media", AWS_ACCESS_KEY_ID="AKID")

        assert result.returncode != 0
        assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together" in result.stderr

    def test_an_endpoint_that_is_not_a_url_stops_start_up(self):
        result = import_settings(AWS_STORAGE_BUCKET_NAME="media", AWS_S3_ENDPOINT_URL="minio")

        assert result.returncode != 0
        assert "AWS_S3_ENDPOINT_URL must be an http:// or https:// URL" in result.stderr

    def test_source_links_longer_than_a_presigned_link_can_last_stop_start_up(self):
        too_long = import_settings(AWS_STORAGE_BUCKET_NAME="media", SOURCE_LINK_HOURS="200")
        on_disk = import_settings(SOURCE_LINK_HOURS="200")

        assert too_long.returncode != 0
        assert "SOURCE_LINK_HOURS must be at most 168" in too_long.stderr
        assert on_disk.returncode == 0, on_disk.stderr


class TestUploading:
    def test_an_uploaded_video_and_its_poster_go_to_the_bucket_and_nothing_to_media_root(
        self, bucket, alice, settings, media_root
    ):
        settings.KLING_DEMO = True
        settings.KLING_VIDEO_MIN_SIDE = 240
        clip = video_bytes(seconds=3, width=480, height=360)
        form = TEXT_FORM | {
            "submission_key": str(uuid.uuid4()),
            "video_source": "video_file",
            "video_id": "",
            "video_file": SimpleUploadedFile("my clip.mp4", clip, "video/mp4"),
        }

        response = alice.post(reverse("tasks:create"), form)

        assert response.status_code == 302, response.context["form"].errors
        job = Job.objects.get()
        assert job.video_file.name in bucket.object_keys()
        assert bucket.read(str(job.video_file.name)) == clip
        assert job.poster.name in bucket.object_keys()
        assert bucket.read(str(job.poster.name)).startswith(b"\xff\xd8")
        assert files_under(media_root) == []

    def test_with_a_bucket_uploads_are_offered_without_a_public_address(self, bucket, settings):
        settings.KLING_DEMO = False
        settings.SITE_URL = None
        assert file_choice_available()

    def test_without_a_bucket_or_an_address_they_are_not(self, settings):
        settings.KLING_DEMO = False
        settings.SITE_URL = None
        assert configured_bucket() is None
        assert not file_choice_available()


class TestSendingAnUploadedVideo:
    def test_kling_gets_a_presigned_link_to_the_object_that_downloads_its_bytes(
        self, bucket, user, kling, worker
    ):
        job = uploaded_job(user)
        send_soon(job)

        worker()

        (sent,) = sent_inputs(kling)
        link = sent["video_url"]
        assert link.startswith(f"{bucket.endpoint}/{bucket.name}/{job.video_file.name}?")
        assert "/sources/" not in urlsplit(link).path.removeprefix(f"/{bucket.name}/")
        assert "X-Amz-Signature" in parse_qs(urlsplit(link).query)
        download = httpx.get(link)
        assert download.status_code == 200
        assert download.content == MP4
        assert download.headers["content-type"] == "video/mp4"
        job.refresh_from_db()
        assert job.status == JobStatus.SENT

    def test_the_link_lasts_source_link_hours(self, bucket, settings, user):
        settings.SOURCE_LINK_HOURS = 2.5

        link = source_link(job=uploaded_job(user))

        assert parse_qs(urlsplit(link).query)["X-Amz-Expires"] == [str(int(2.5 * 3600))]

    def test_no_public_address_is_needed_with_a_bucket(self, bucket, settings, user, kling, worker):
        settings.SITE_URL = None
        job = uploaded_job(user)
        send_soon(job)
        settings.KLING_DEMO = False

        worker()

        job.refresh_from_db()
        assert job.status == JobStatus.SENT, job.status_detail
        assert kling.create_calls == 1

    def test_the_link_is_known_as_its_jobs_and_no_other(self, bucket, user):
        job = uploaded_job(user)
        # Tried again from the first: the same stored object, another job.
        again = uploaded_job(user, name=str(job.video_file.name))
        other = uploaded_job(user)
        link = source_link(job=job)

        assert source_link_is_for(url=link, job=job)
        assert source_link_is_for(url=source_link(job=again), job=again)
        assert not source_link_is_for(url=link, job=again)
        assert not source_link_is_for(url=link, job=other)
        unsigned = link.split("?")[0]
        assert not source_link_is_for(url=unsigned, job=job)
        assert not source_link_is_for(
            url=f"https://elsewhere.example{urlsplit(link).path}", job=job
        )

    def test_a_lost_create_is_found_by_its_presigned_link(self, bucket, user, kling, worker):
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

    def test_kling_downloads_it_and_the_result_copy_lands_in_the_bucket_not_on_disk(
        self, bucket, user, start_kling, sim_clock, run_job, media_root
    ):
        kling = start_kling(
            now=sim_clock, submitted_seconds=3, processing_seconds=10, fetch_sources=True
        )
        job = uploaded_job(user)
        send_soon(job)

        job = run_job(job)

        assert job.status == JobStatus.SUCCEEDED, job.status_detail
        (task,) = kling.tasks.values()
        assert task["task_info"]["parent_video"]["url"].startswith(bucket.endpoint)
        assert job.stored_video.name in bucket.object_keys()
        copy = bucket.read(str(job.stored_video.name))
        assert hashlib.sha256(copy).hexdigest() == job.stored_sha256
        assert len(copy) == job.stored_size > 0
        assert files_under(media_root) == []

    def test_an_uploaded_audio_track_is_read_from_the_bucket(
        self, bucket, user, kling, worker, wav_bytes
    ):
        stored = default_storage.save("audio/2026/11/voice.wav", ContentFile(wav_bytes))
        job = make_job(user, status=JobStatus.PENDING, mode="audio2video", audio_stored_name=stored)
        send_soon(job)

        worker()

        (sent,) = sent_inputs(kling)
        assert base64.b64decode(sent["audio_file"]) == wav_bytes


class TestAFileTheWorkerCannotReach:
    def test_a_missing_upload_is_said_on_the_job_and_tried_again_without_sending(
        self, bucket, user, kling, worker
    ):
        job = uploaded_job(user)
        bucket.delete(str(job.video_file.name))
        send_soon(job)

        worker()

        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert "could not find this job's uploaded file in its storage" in job.status_detail
        assert "will try again at" in job.status_detail
        assert job.send_started_at is None
        assert job.next_check_at is not None and job.next_check_at > timezone.now()
        assert DBTaskResult.objects.filter(status="READY").count() == 1
        assert kling.create_calls == 0

        # Once the file is back (copied into the bucket, say), the next try sends it, once.
        bucket.put(str(job.video_file.name), MP4)
        worker(all_scheduled=True)

        job.refresh_from_db()
        assert job.status == JobStatus.SENT, job.status_detail
        assert kling.create_calls == 1

    def test_a_missing_audio_file_is_said_on_the_job_too(self, bucket, user, kling, worker):
        job = make_job(
            user,
            status=JobStatus.PENDING,
            mode="audio2video",
            audio_stored_name="audio/2026/11/gone.wav",
        )
        send_soon(job)

        worker()

        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert "could not find this job's uploaded file" in job.status_detail
        assert kling.create_calls == 0

    def test_a_storage_that_does_not_answer_is_said_on_the_job(
        self, bucket_down, user, kling, worker
    ):
        job = uploaded_job(user)
        send_soon(job)
        bucket_down()

        worker()

        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert "The studio's file storage did not answer." in job.status_detail
        assert "will try again at" in job.status_detail
        assert kling.create_calls == 0

    def test_after_the_last_try_the_job_fails_saying_nothing_was_sent(
        self, bucket, settings, user, kling, worker
    ):
        settings.KLING_MAX_SEND_ATTEMPTS = 2
        job = uploaded_job(user)
        bucket.delete(str(job.video_file.name))
        send_soon(job)

        worker()
        worker(all_scheduled=True)

        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        assert "Gave up after 2 tries." in job.status_detail
        assert "Nothing was sent to Kling." in job.status_detail
        assert kling.create_calls == 0

    def test_a_result_copy_the_storage_cannot_take_is_said_and_tried_again(
        self, bucket_down, settings, user
    ):
        with serving(MP4) as server:
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            job = make_job(user, status=JobStatus.SUCCEEDED, result_video_url=f"{server.url}/video")
            bucket_down()

            job_store_result(job_id=job.pk)

            assert server.hits == 1

        job.refresh_from_db()
        assert not job.stored_video
        assert "could not write the copy to its file storage" in job.store_error
        assert "will try again at" in job.store_error
        assert DBTaskResult.objects.filter(status="READY").count() == 1


class TestServingFromTheBucket:
    @pytest.fixture
    def finished(self, bucket, user) -> Job:
        """A finished job whose result copy, audio and poster are in the bucket."""
        job = make_job(user, status=JobStatus.SUCCEEDED)
        video = default_storage.save(f"results/{job.team_id}/job-{job.pk}.mp4", ContentFile(MP4))
        # Stored under a name that says nothing: the bytes decide the type.
        audio = default_storage.save("audio/2026/11/voice.bin", ContentFile(self.wav))
        poster = default_storage.save("posters/2026/11/frame.jpg", ContentFile(JPEG))
        return put_job(
            job, stored_video=video, stored_size=len(MP4), audio_file=audio, poster=poster
        )

    @pytest.fixture(autouse=True)
    def _wav(self, wav_bytes) -> None:
        self.wav = wav_bytes

    def test_the_result_redirects_to_a_short_presigned_link_that_plays_it_inline(
        self, alice, finished, bucket
    ):
        response = alice.get(reverse("tasks:video", args=[finished.pk]))

        assert response.status_code == 302
        link = response["Location"]
        assert link.startswith(f"{bucket.endpoint}/{bucket.name}/results/")
        assert parse_qs(urlsplit(link).query)["X-Amz-Expires"] == ["3600"]
        assert "private" in response["Cache-Control"]
        played = httpx.get(link)
        assert played.status_code == 200
        assert played.content == MP4
        assert played.headers["content-type"] == "video/mp4"
        filename = f"lipsync-{finished.pk}.mp4"
        assert played.headers["content-disposition"] == f'inline; filename="{filename}"'

    def test_the_link_serves_ranges_so_the_player_can_seek(self, alice, finished):
        link = alice.get(reverse("tasks:video", args=[finished.pk]))["Location"]

        part = httpx.get(link, headers={"Range": "bytes=100-199"})

        assert part.status_code == 206
        assert part.content == MP4[100:200]

    def test_download_1_makes_it_an_attachment(self, alice, finished):
        url = reverse("tasks:video", args=[finished.pk]) + "?download=1"
        link = alice.get(url)["Location"]

        saved = httpx.get(link)

        assert saved.content == MP4
        disposition = f'attachment; filename="lipsync-{finished.pk}.mp4"'
        assert saved.headers["content-disposition"] == disposition

    def test_the_audio_is_a_download_typed_by_its_bytes(self, alice, finished):
        response = alice.get(reverse("tasks:audio", args=[finished.pk]))

        assert response.status_code == 302
        saved = httpx.get(response["Location"])
        assert saved.content == self.wav
        assert saved.headers["content-type"] == "audio/wav"
        disposition = f'attachment; filename="lipsync-{finished.pk}-audio.wav"'
        assert saved.headers["content-disposition"] == disposition

    def test_the_poster_streams_through_the_studio(self, alice, finished):
        # Pictures may come from the studio alone (its Content-Security-Policy's img-src).
        response = alice.get(reverse("tasks:poster", args=[finished.pk]))

        assert response.status_code == 200
        assert b"".join(response.streaming_content) == JPEG
        assert response["Content-Type"] == "image/jpeg"
        assert response["Content-Length"] == str(len(JPEG))
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "img-src 'self' data:" in response["Content-Security-Policy"]

    @pytest.mark.parametrize("view", ["tasks:video", "tasks:audio", "tasks:poster"])
    def test_another_teams_job_is_a_404_and_no_link_is_handed_out(self, alice, bob, finished, view):
        assert alice.get(reverse(view, args=[finished.pk])).status_code in (200, 302)

        response = bob.get(reverse(view, args=[finished.pk]))

        assert response.status_code == 404
        assert "Location" not in response

    @pytest.mark.parametrize(
        ("view", "field"),
        [
            ("tasks:video", "stored_video"),
            ("tasks:audio", "audio_file"),
            ("tasks:poster", "poster"),
        ],
    )
    def test_a_missing_object_is_a_404_not_a_500(self, alice, finished, bucket, view, field):
        bucket.delete(str(getattr(finished, field).name))

        response = alice.get(reverse(view, args=[finished.pk]))

        assert response.status_code == 404

    @pytest.mark.parametrize("view", ["tasks:video", "tasks:audio", "tasks:poster"])
    def test_a_storage_that_does_not_answer_is_a_503_saying_so(
        self, alice, finished, bucket_down, view
    ):
        bucket_down()

        response = alice.get(reverse(view, args=[finished.pk]))

        assert response.status_code == 503
        assert "file storage did not answer" in response.content.decode()

    def test_the_job_page_links_the_studios_own_views_not_the_bucket(self, alice, finished, bucket):
        page = alice.get(reverse("tasks:detail", args=[finished.pk])).content.decode()

        assert reverse("tasks:video", args=[finished.pk]) in page
        assert bucket.endpoint not in page
        assert bucket.name not in page
