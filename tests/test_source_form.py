"""The job form's source video and audio: uploading a file, the check as the form is filled in,
the refusals and warnings, and what the job keeps. Real media made with PyAV (media_files)."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParser
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from factories import TEXT_FORM, CountingHandler, make_job, put_job
from local_http import serving, unused_port
from media_files import audio_bytes, make_audio_only_mp4, make_video

from tasks_app.models import Job, JobStatus
from tasks_app.services import submitting
from tasks_app.uploads import TemporaryFileUploadHandler, VideoSizeLimitHandler

pytestmark = pytest.mark.django_db

NEW = "/tasks/new/"
CHECK = "/tasks/new/check/"
HTMX = {"HTTP_HX_REQUEST": "true"}
STORED_SOURCE = re.compile(r"sources/\d{4}/\d{2}/[0-9a-f]{32}\.(mp4|mov)")
# Small clips keep the tests quick; the limits are lowered to match, as a deployment may.
SIDE = {"width": 480, "height": 360}


@pytest.fixture(autouse=True)
def small_limits(settings) -> None:
    settings.KLING_VIDEO_MIN_SIDE = 240
    settings.KLING_VIDEO_MAX_SIDE = 1920
    settings.KLING_DEMO = True


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    """Each clip the tests upload, made once."""
    folder = tmp_path_factory.mktemp("clips")

    def made(name: str, **options) -> bytes:
        return make_video(folder / name, **(SIDE | options)).read_bytes()

    return {
        "face.mp4": made("face.mp4", seconds=3),
        "face.mov": made("face.mov", seconds=3, container="mov"),
        "noface.mp4": made("noface.mp4", seconds=3, face=False),
        "long.mp4": made("long.mp4", seconds=12),
        "short.mp4": made("short.mp4", seconds=1),
        "small.mp4": made("small.mp4", seconds=3, width=160, height=120),
        "sound-only.mp4": make_audio_only_mp4(folder / "sound-only.mp4", seconds=3).read_bytes(),
    }


def file_form(content: bytes | None, name: str = "my clip.mp4", **overrides) -> dict:
    data: dict[str, object] = {
        **TEXT_FORM,
        "submission_key": str(uuid.uuid4()),
        "video_source": "video_file",
        "video_id": "",
    }
    if content is not None:
        data["video_file"] = SimpleUploadedFile(name, content, "video/mp4")
    return data | overrides


def errors(response, field: str) -> str:
    return " ".join(response.context["form"].errors.get(field, []))


def staged_token(response) -> str:
    match = re.search(
        r'name="video_staged" id="id_video_staged" value="([^"]*)"', response.content.decode()
    )
    assert match, "the page carries no staged-upload field"
    return match.group(1)


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


class TestUploadingAVideo:
    @pytest.mark.parametrize("name", ["face.mp4", "face.mov"])
    def test_an_mp4_or_mov_upload_is_checked_and_stored_under_a_generated_name(
        self, name, alice, clips, kling
    ):
        response = alice.post(NEW, file_form(clips[name], name=f"holiday {name}"))

        assert response.status_code == 302, response.context["form"].errors
        job = Job.objects.get()
        assert STORED_SOURCE.fullmatch(job.video_file.name or "")
        assert (job.video_file.name or "").endswith(name.rsplit(".", 1)[1])
        assert job.video_name == f"holiday {name}"
        with job.video_file.open("rb") as stored:
            assert stored.read() == clips[name]
        assert (job.video_id, job.video_url) == ("", "")
        assert job.video_duration == pytest.approx(3, abs=0.25)
        assert (job.video_width, job.video_height) == (480, 360)
        assert job.video_bytes == len(clips[name])
        assert job.face_found is True
        assert job.confirmed_no_face is False
        with job.poster.open("rb") as poster:
            assert poster.read(3) == b"\xff\xd8\xff"  # a JPEG
        assert kling.create_calls == 0

    @pytest.mark.parametrize(
        ("name", "message"),
        [
            ("long.mp4", "This video is 12.0 s long; Kling takes 2 to 10 s."),
            ("short.mp4", "This video is 1.0 s long; Kling takes 2 to 10 s."),
            ("small.mp4", "This video is 160 \u00d7 120 pixels; Kling takes sides of 240 to 1920"),
            ("sound-only.mp4", "This file has no video in it"),
        ],
    )
    def test_a_video_kling_would_refuse_is_refused_next_to_the_field_with_the_numbers(
        self, name, message, alice, clips, media_root
    ):
        response = alice.post(NEW, file_form(clips[name]))

        assert response.status_code == 400
        assert message in errors(response, "video_file")
        assert message in response.content.decode()
        assert not Job.objects.exists()
        assert stored_files(media_root) == []  # a refused file is not kept

    def test_a_text_file_named_mp4_is_not_a_video(self, alice, media_root):
        response = alice.post(NEW, file_form(b"just some notes\n" * 100, name="clip.mp4"))

        assert response.status_code == 400
        message = errors(response, "video_file")
        assert message
        assert "could not" in message.lower() or "not" in message.lower()
        assert not Job.objects.exists()
        assert stored_files(media_root) == []

    def test_a_file_over_the_byte_limit_is_refused_and_the_other_fields_are_kept(
        self, alice, settings, clips, media_root
    ):
        settings.KLING_VIDEO_MAX_BYTES = 16 * 1024
        big = clips["long.mp4"]
        assert len(big) > 2 * settings.KLING_VIDEO_MAX_BYTES

        response = alice.post(NEW, file_form(big, text="Keep these words"))

        assert response.status_code == 400
        assert "The video file is larger than 0.015625 MB" in errors(response, "video_file")
        assert "Keep these words" in response.content.decode()  # fields after the file
        assert stored_files(media_root) == []

    def test_the_parser_passes_on_no_more_than_the_limit_and_reads_the_fields_after_it(
        self, settings
    ):
        settings.KLING_VIDEO_MAX_BYTES = 64 * 1024
        body = encode_multipart(
            BOUNDARY,
            {
                "video_file": SimpleUploadedFile("clip.mp4", b"\x00" * (1024 * 1024), "video/mp4"),
                "text": "after the file",
            },
        )
        request = HttpRequest()
        request.META = {"CONTENT_TYPE": MULTIPART_CONTENT, "CONTENT_LENGTH": str(len(body))}
        counter = CountingHandler(request)

        post, files = MultiPartParser(
            request.META, io.BytesIO(body), [VideoSizeLimitHandler(request), counter]
        ).parse()

        assert getattr(request, "video_upload_too_big", None) is True
        assert "video_file" not in files
        assert counter.passed_on <= settings.KLING_VIDEO_MAX_BYTES
        assert post["text"] == "after the file"

    def test_a_large_upload_goes_to_a_temporary_file_not_memory(self, settings):
        from tasks_app.uploads import media_upload_handlers

        handlers = media_upload_handlers(HttpRequest())
        assert isinstance(handlers[-1], TemporaryFileUploadHandler)
        assert len(handlers) == 3  # no in-memory handler, whatever the request's size


class TestTheNoFaceWarning:
    def test_it_asks_first_then_sends_the_kept_file_once_confirmed(self, alice, clips):
        first = alice.post(NEW, file_form(clips["noface.mp4"]))

        assert first.status_code == 400
        assert not Job.objects.exists()
        html = first.content.decode()
        assert "found no face in the" in html
        frames = first.context["form"].check.video.frames_checked
        assert frames >= 3 and f"in the {frames} frames" in html
        assert html.count('alt=""') >= frames  # the frames looked at are shown
        assert 'name="confirm_no_face"' in html
        token = staged_token(first)
        assert token

        data = file_form(None, video_staged=token, confirm_no_face="on")
        second = alice.post(NEW, data)

        assert second.status_code == 302, second.context["form"].errors
        job = Job.objects.get()
        assert job.confirmed_no_face is True
        assert job.face_found is False
        assert STORED_SOURCE.fullmatch(job.video_file.name or "")
        with job.video_file.open("rb") as stored:
            assert stored.read() == clips["noface.mp4"]

    def test_without_the_checkbox_the_kept_file_is_still_not_sent(self, alice, clips):
        token = staged_token(alice.post(NEW, file_form(clips["noface.mp4"])))

        again = alice.post(NEW, file_form(None, video_staged=token))

        assert again.status_code == 400
        assert "found no face" in again.content.decode()
        assert not Job.objects.exists()


class TestTheUploadIsKeptWithTheForm:
    def test_an_error_elsewhere_keeps_the_checked_upload(self, alice, clips):
        first = alice.post(NEW, file_form(clips["face.mp4"], text="x" * 121))

        assert first.status_code == 400
        assert "121" in errors(first, "text")
        assert not errors(first, "video_file")
        html = first.content.decode()
        assert "“my clip.mp4” is uploaded and checked" in html
        token = staged_token(first)

        second = alice.post(NEW, file_form(None, video_staged=token))

        assert second.status_code == 302, second.context["form"].errors
        job = Job.objects.get()
        with job.video_file.open("rb") as stored:
            assert stored.read() == clips["face.mp4"]
        assert job.video_name == "my clip.mp4"
        assert job.face_found is True

    def test_a_tampered_token_names_no_file(self, alice, clips):
        token = staged_token(alice.post(NEW, file_form(clips["face.mp4"], text="x" * 121)))
        name = "sources/2020/01/" + "0" * 32 + ".mp4"
        forged = token.replace(token.split(":")[0], name)

        response = alice.post(NEW, file_form(None, video_staged=forged))

        assert response.status_code == 400
        assert "Give the source video" in errors(response, "video_file")

    def test_another_persons_token_names_no_file(self, alice, carol, clips):
        token = staged_token(alice.post(NEW, file_form(clips["face.mp4"], text="x" * 121)))

        response = carol.post(NEW, file_form(None, video_staged=token))

        assert response.status_code == 400
        assert "Give the source video" in errors(response, "video_file")


class TestLinkedVideos:
    def test_a_linked_video_is_read_before_saving_and_its_facts_stored(
        self, alice, settings, clips
    ):
        with serving(clips["face.mp4"]) as server:
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            url = f"{server.url}/video/clip.mp4"
            data = file_form(None, video_source="video_url", video_url=url)

            check = alice.post(CHECK, data, **HTMX)
            fetched = server.hits
            response = alice.post(NEW, data)

            assert server.hits == fetched  # the check's facts were reused
        assert check.status_code == 200
        assert response.status_code == 302, response.context["form"].errors
        job = Job.objects.get()
        assert job.video_url == url
        assert not job.video_file
        assert (job.video_width, job.video_height) == (480, 360)
        assert job.video_bytes == len(clips["face.mp4"])
        assert job.face_found is True
        assert job.poster

    def test_a_link_to_a_too_long_video_is_refused_with_the_numbers(self, alice, settings, clips):
        with serving(clips["long.mp4"]) as server:
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            data = file_form(None, video_source="video_url", video_url=f"{server.url}/video/a.mp4")
            response = alice.post(NEW, data)

        assert response.status_code == 400
        assert "This video is 12.0 s long" in errors(response, "video_url")

    def test_a_link_to_a_local_address_is_refused_in_plain_words(self, alice):
        url = f"http://127.0.0.1:{unused_port()}/clip.mp4"

        response = alice.post(NEW, file_form(None, video_source="video_url", video_url=url))

        assert response.status_code == 400
        assert "private or local network address" in errors(response, "video_url")
        assert not Job.objects.exists()

    def test_a_missing_file_is_refused_in_plain_words(self, alice, settings, clips):
        with serving(clips["face.mp4"]) as server:
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            url = f"{server.url}/missing/clip.mp4"
            response = alice.post(NEW, file_form(None, video_source="video_url", video_url=url))

        assert response.status_code == 400
        assert "not found" in errors(response, "video_url")

    def test_a_server_too_slow_for_the_check_is_refused_in_plain_words(
        self, alice, settings, clips
    ):
        settings.MEDIA_CHECK_SECONDS = 1
        with serving(clips["face.mp4"]) as server:
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            url = f"{server.url}/slow/clip.mp4"
            response = alice.post(NEW, file_form(None, video_source="video_url", video_url=url))

        assert response.status_code == 400
        assert "too" in errors(response, "video_url")


class TestTheCheckAsTheFormIsFilledIn:
    def test_an_upload_is_previewed_kept_and_reused_at_submit(self, alice, clips, media_root):
        check = alice.post(CHECK, file_form(clips["face.mp4"]), **HTMX)

        assert check.status_code == 200
        html = check.content.decode()
        assert "3.0 s" in html
        assert "480 \u00d7 360" in html
        assert re.search(r'data-testid="face">found<', html)
        assert re.search(r'<img src="data:image/jpeg;base64,[A-Za-z0-9+/=]+" alt="A frame', html)
        assert 'hx-swap-oob="true"' in html
        token = staged_token(check)
        (kept,) = stored_files(media_root)
        assert not Job.objects.exists()

        response = alice.post(NEW, file_form(None, video_staged=token))

        assert response.status_code == 302
        job = Job.objects.get()
        assert Path(default_storage.path(job.video_file.name or "")) == kept
        assert [p for p in stored_files(media_root) if "sources" in p.parts] == [kept]

    def test_a_refusal_shows_in_the_preview(self, alice, clips):
        check = alice.post(CHECK, file_form(clips["long.mp4"]), **HTMX)

        assert check.status_code == 200
        assert "This video is 12.0 s long; Kling takes 2 to 10 s." in check.content.decode()

    def test_a_kling_video_id_cannot_be_checked_and_the_page_says_so_up_front(self, alice):
        data = TEXT_FORM | {"video_source": "video_id"}

        page = alice.get(NEW)
        check = alice.post(CHECK, data, **HTMX)

        assert "cannot check a Kling video ID" in page.content.decode()
        html = check.content.decode()
        assert "data:image/jpeg" not in html
        assert 'data-testid="duration"' not in html
        # Nothing appears as the person leaves the field, so nothing moves under their click.
        assert "<p" not in html.split('id="audio-check"')[0]


class TestWithoutAPublicAddress:
    def test_live_mode_without_site_url_shows_the_file_choice_disabled_and_says_why(
        self, alice, settings, clips
    ):
        settings.KLING_DEMO = False
        settings.SITE_URL = None

        page = alice.get(NEW).content.decode()

        choice = re.search(r'<input[^>]*value="video_file"[^>]*>', page)
        assert choice and "disabled" in choice.group(0)
        assert "the studio has no public address (SITE_URL) set" in page

        response = alice.post(NEW, file_form(clips["face.mp4"]))
        assert response.status_code == 400
        assert "SITE_URL" in errors(response, "video_file")
        assert not Job.objects.exists()

    def test_live_mode_with_site_url_offers_it(self, alice, settings):
        settings.KLING_DEMO = False
        settings.SITE_URL = "https://studio.example.com"

        page = alice.get(NEW).content.decode()

        choice = re.search(r'<input[^>]*value="video_file"[^>]*>', page)
        assert choice and "disabled" not in choice.group(0)
        assert 'name="video_file"' in page


class TestAudioTracks:
    def test_an_audio_track_longer_than_the_video_is_a_warning_not_a_refusal(self, alice, clips):
        data = file_form(clips["face.mp4"], mode="audio2video", audio_source="file", text="")
        data["audio_file"] = SimpleUploadedFile("voice.wav", audio_bytes(seconds=5), "audio/wav")

        check = alice.post(CHECK, data, **HTMX)
        assert "The audio (5.0 s) is longer than the video (3.0 s)" in check.content.decode()

        data["audio_file"] = SimpleUploadedFile("voice.wav", audio_bytes(seconds=5), "audio/wav")
        data["video_file"] = SimpleUploadedFile("clip.mp4", clips["face.mp4"], "video/mp4")
        response = alice.post(NEW, data)
        assert response.status_code == 302, response.context["form"].errors
        job = Job.objects.get()
        assert job.audio_duration == pytest.approx(5, abs=0.1)

    def test_an_audio_track_too_short_is_refused_with_the_numbers(self, alice):
        data: dict[str, object] = {
            **TEXT_FORM,
            "mode": "audio2video",
            "audio_source": "file",
            "text": "",
        }
        data["audio_file"] = SimpleUploadedFile("v.mp3", audio_bytes(seconds=1, format="mp3"))

        response = alice.post(NEW, data)

        assert response.status_code == 400
        assert "This audio is 1.0 s long; Kling takes 2 to 60 s." in errors(response, "audio_file")

    def test_a_linked_audio_track_is_read_and_its_length_stored(self, alice, settings):
        with serving(audio_bytes(seconds=3, format="mp3")) as server:
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            url = f"{server.url}/video/voice.mp3"
            data = TEXT_FORM | {
                "mode": "audio2video",
                "audio_source": "url",
                "audio_url": url,
                "text": "",
            }
            response = alice.post(NEW, data)

        assert response.status_code == 302, response.context["form"].errors
        assert Job.objects.get().audio_duration == pytest.approx(3, abs=0.1)


class TestTryingAgainWithAnUploadedVideo:
    def upload_job(self, alice, clips) -> Job:
        assert alice.post(NEW, file_form(clips["face.mp4"])).status_code == 302
        return Job.objects.get()

    def test_try_again_reuses_the_stored_file_and_facts(self, alice, user, clips):
        job = put_job(self.upload_job(alice, clips), status=JobStatus.FAILED)

        retry, created = submitting.job_retry(job=job, submitted_by=user)

        assert created
        assert retry.video_file.name == job.video_file.name
        assert (retry.video_name, retry.video_duration, retry.face_found) == (
            job.video_name,
            job.video_duration,
            True,
        )
        assert retry.poster.name == job.poster.name

    def test_edit_and_try_again_carries_the_file_without_a_new_upload(self, alice, clips):
        job = self.upload_job(alice, clips)

        page = alice.get(f"{NEW}?from={job.pk}")
        html = page.content.decode()
        assert re.search(r'<input[^>]*value="video_file"[^>]*checked', html)
        token = staged_token(page)
        assert token

        response = alice.post(NEW, file_form(None, video_staged=token))

        assert response.status_code == 302, response.context["form"].errors
        again = Job.objects.latest("pk")
        assert again.pk != job.pk
        assert again.video_file.name == job.video_file.name
        assert again.video_name == "my clip.mp4"


def test_a_job_made_by_the_service_without_the_form_stores_an_upload(user, clips):
    job = make_job(
        user,
        video_id="",
        video_upload=SimpleUploadedFile("x.mov", clips["face.mov"]),
        video_name="x.mov",
    )
    assert STORED_SOURCE.fullmatch(job.video_file.name or "")
    assert (job.video_file.name or "").endswith(".mov")
