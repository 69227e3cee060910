"""Hostile and malformed input, on every form field and every URL.

Each one gets a clear message next to its field, or a 4xx; never a 500, never a job, and
nothing reaches Kling. Inputs that are odd but valid are stored as typed and shown escaped.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import StopUpload
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParser
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import resolve, reverse
from django_tasks_db.models import DBTaskResult
from factories import AUDIO_FORM, MP3, TEXT_FORM, CountingHandler, make_job, put_job
from local_http import serving
from media_files import video_bytes

from tasks_app.models import Job, JobStatus
from tasks_app.simulator import KlingSimulator, SimulatorConfig, sign_webhook
from tasks_app.uploads import AudioSizeLimitHandler

pytestmark = pytest.mark.django_db

VIDEO_URL_FORM = TEXT_FORM | {"video_source": "video_url", "video_id": ""}
HUGE = "9" * 30
WEBHOOK_SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


# --- One Kling for the whole module, to count what reaches it ------------------------------------


@pytest.fixture(scope="module")
def shared_kling():
    sim = KlingSimulator(SimulatorConfig()).start()
    yield sim
    sim.stop()


@pytest.fixture
def kling_calls(shared_kling, settings) -> Callable[[], int]:
    """Points the studio at the module's simulator; returns how many creates it received since."""
    settings.KLING_API_BASE_URL = shared_kling.api_url
    settings.KLING_API_KEY = "demo-key"
    settings.KLING_ACCESS_KEY = None
    settings.KLING_SECRET_KEY = None
    before = shared_kling.create_calls
    return lambda: shared_kling.create_calls - before


@pytest.fixture
def jobs(user, other_user):
    """One finished job of Alice's team and one of Bob's (finished: nothing left to send)."""
    detail = "Kling could not make this video."
    own = make_job(user, status=JobStatus.FAILED, status_detail=detail)
    other = make_job(other_user, status=JobStatus.FAILED, status_detail=detail, text="Bob's line")
    return {"own": own, "other": other}


def snapshot() -> list[tuple]:
    return list(
        Job.objects.order_by("pk").values_list("pk", "status", "archived_at", "text", "team_id")
    )


def field_error(response, name: str) -> str:
    """The error list rendered next to a field (the widget points at it for screen readers)."""
    page = response.content.decode()
    found = re.search(rf'<ul class="errorlist" id="id_{name}_error">(.*?)</ul>', page, re.S)
    assert found, f"no error shown next to {name}"
    assert re.search(rf'aria-describedby="[^"]*\bid_{name}_error\b', page), name
    return unescape(re.sub(r"<[^>]+>", " ", found.group(1)))


# --- The job form, field by field ---------------------------------------------------------------


@dataclass(frozen=True)
class FormCase:
    data: dict
    field: str
    message: str
    upload: tuple[str, bytes, str] | None = None  # (name, bytes, content type) as audio_file


def text(value: str, message: str) -> FormCase:
    return FormCase(TEXT_FORM | {"text": value}, "text", message)


def speed(value: str, message: str) -> FormCase:
    return FormCase(TEXT_FORM | {"voice_speed": value}, "voice_speed", message)


def video_url(value: str, message: str) -> FormCase:
    return FormCase(VIDEO_URL_FORM | {"video_url": value}, "video_url", message)


def audio_url(value: str, message: str) -> FormCase:
    return FormCase(AUDIO_FORM | {"audio_url": value}, "audio_url", message)


def upload(name: str, content: bytes, content_type: str, message: str) -> FormCase:
    data = AUDIO_FORM | {"audio_source": "file", "audio_url": ""}
    return FormCase(data, "audio_file", message, upload=(name, content, content_type))


TOO_LONG = "Kling takes at most 120 characters; this text has {n}."
CONTROL = "The text contains invisible control characters; please retype it."
SPEED_RANGE = "Choose a speed from 0.8 to 2.0."
NUMBER = "Enter a number."
SCHEME = "Use a web link that starts with http:// or https://."
VIDEO_EXT = "The link must point to a video file ending in .mp4 / .mov."
AUDIO_EXT = "The link must point to an audio file ending in .mp3 / .wav / .m4a / .aac."
CREDENTIALS = "Links with a user name or password in them are not accepted."
NOT_AUDIO = "This file is not MP3, WAV, M4A or AAC audio."
BAD_ID = "A Kling video ID has only letters, digits, '-' and '_'."

FORM_CASES = {
    "empty text": text("", "Type what the person in the video should say."),
    "only spaces and newlines": text("  \n\t  ", "Type what the person in the video should say."),
    "121 characters": text("a" * 121, TOO_LONG.format(n=121)),
    "2000 characters": text("a" * 2000, TOO_LONG.format(n=2000)),
    "2001 characters": text("a" * 2001, "at most 2000 characters (it has 2001)"),
    "121 emoji": text("😀" * 121, TOO_LONG.format(n=121)),
    "121 CJK characters": text("你" * 121, TOO_LONG.format(n=121)),
    "a NUL byte": text("Hello\x00world", "Null characters are not allowed."),
    "a bell character": text("Hello\x07world", CONTROL),
    "a terminal escape": text("Red \x1b[31malert", CONTROL),
    "a right-to-left override": text("Hello \u202edlrow", CONTROL),
    "a zero-width space": text("Hello\u200bworld", CONTROL),
    "a byte-order mark": text("\ufeffHello", CONTROL),
    "a private-use character": text("Hello \ue000", CONTROL),
    "an unknown voice": FormCase(
        TEXT_FORM | {"voice_id": "not_a_voice"}, "voice_id", "Select a valid choice."
    ),
    "a script as the voice": FormCase(
        TEXT_FORM | {"voice_id": "<script>alert(1)</script>"}, "voice_id", "Select a valid choice."
    ),
    "no voice": FormCase(TEXT_FORM | {"voice_id": ""}, "voice_id", "Choose a voice."),
    "an unknown language": FormCase(
        TEXT_FORM | {"voice_language": "fr"}, "voice_language", "Select a valid choice."
    ),
    "an English-only voice in Chinese": FormCase(
        TEXT_FORM | {"voice_id": "AOT", "voice_language": "zh"},
        "voice_language",
        "does not speak Chinese; choose English.",
    ),
    "a Chinese-only voice in English": FormCase(
        TEXT_FORM | {"voice_id": "tiyuxi_xuedi", "voice_language": "en"},
        "voice_language",
        "does not speak English; choose Chinese.",
    ),
    "speed 0.79": speed("0.79", SPEED_RANGE),
    "speed 2.01": speed("2.01", SPEED_RANGE),
    "speed 1.25": speed("1.25", "Use one decimal place, for example 1.2."),
    "speed NaN": speed("NaN", NUMBER),
    "speed Infinity": speed("Infinity", NUMBER),
    "speed 'fast'": speed("fast", NUMBER),
    "speed 1e3": speed("1e3", SPEED_RANGE),
    "speed -1": speed("-1", SPEED_RANGE),
    "speed 0": speed("0", SPEED_RANGE),
    "speed with a decimal comma": speed("1,5", NUMBER),
    "a path as the video ID": FormCase(
        TEXT_FORM | {"video_id": "../../etc/passwd"}, "video_id", BAD_ID
    ),
    "a script as the video ID": FormCase(
        TEXT_FORM | {"video_id": "<script>alert(1)</script>"}, "video_id", BAD_ID
    ),
    "a 129-character video ID": FormCase(
        TEXT_FORM | {"video_id": "8" * 129}, "video_id", "at most 128 characters (it has 129)"
    ),
    "no video at all": FormCase(
        TEXT_FORM | {"video_id": ""},
        "video_id",
        "Give the source video: a Kling video ID, a link to it, or the file.",
    ),
    "a task ID with a space": FormCase(
        TEXT_FORM | {"task_id": "123 456"},
        "task_id",
        "A task ID has only letters, digits, '-' and '_'.",
    ),
    "an ftp video link": video_url("ftp://example.com/clip.mp4", SCHEME),
    "a javascript: video link": video_url("javascript:alert(1)//clip.mp4", SCHEME),
    "a file: video link": video_url("file:///etc/passwd.mp4", SCHEME),
    "a data: video link": video_url("data:video/mp4;base64,AAAA.mp4", SCHEME),
    "a scheme-relative video link": video_url("//example.com/clip.mp4", SCHEME),
    "a video link without a host": video_url("http:///clip.mp4", SCHEME),
    "words instead of a video link": video_url("my holiday video", SCHEME),
    "a video link without a path": video_url("https://example.com", VIDEO_EXT),
    "a video link to the site root": video_url("https://example.com/", VIDEO_EXT),
    "a video link to an .avi": video_url("https://example.com/clip.avi", VIDEO_EXT),
    "a video link with credentials": video_url(
        "https://user:secret@example.com/clip.mp4", CREDENTIALS
    ),
    "a 2001-character video link": video_url(
        "https://example.com/" + "a" * 1977 + ".mp4", "at most 2000 characters (it has 2001)"
    ),
    "both a video ID and a link": FormCase(
        TEXT_FORM | {"video_source": "", "video_url": "https://example.com/clip.mp4"},
        "video_url",
        "Give either a Kling video ID or a link, not both.",
    ),
    "an unknown mode": FormCase(
        TEXT_FORM | {"mode": "video2video"}, "mode", "Select a valid choice."
    ),
    "no mode": FormCase(
        {k: v for k, v in TEXT_FORM.items() if k != "mode"}, "mode", "This field is required."
    ),
    "a javascript: audio link": audio_url("javascript:alert(1)//voice.mp3", SCHEME),
    "a file: audio link": audio_url("file:///home/voice.mp3", SCHEME),
    "an audio link to a .txt": audio_url("https://example.com/voice.txt", AUDIO_EXT),
    "an audio link without a path": audio_url("https://example.com", AUDIO_EXT),
    "an audio link with credentials": audio_url("https://u:p@example.com/voice.mp3", CREDENTIALS),
    "no audio at all": FormCase(
        AUDIO_FORM | {"audio_source": "file", "audio_url": ""},
        "audio_file",
        "Add the audio track: upload a file or give a link.",
    ),
    "an empty upload": upload("voice.mp3", b"", "audio/mpeg", "The submitted file is empty."),
    "a text file named .mp3": upload(
        "voice.mp3", b"just words, not audio", "audio/mpeg", NOT_AUDIO
    ),
    "a PNG sent as audio/wav": upload("voice.wav", PNG, "audio/wav", NOT_AUDIO),
    "an HTML page named .mp3": upload(
        "voice.mp3", b"<html><script>alert(1)</script></html>", "text/html", NOT_AUDIO
    ),
    "an executable named .m4a": upload(
        "voice.m4a", b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "application/octet-stream", NOT_AUDIO
    ),
    "both an upload and an audio link": FormCase(
        AUDIO_FORM | {"audio_source": ""},
        "audio_url",
        "Give either an audio file or a link, not both.",
        upload=("voice.mp3", MP3, "audio/mpeg"),
    ),
}


class TestTheJobFormRefusesBadInput:
    @pytest.mark.parametrize("name", list(FORM_CASES))
    def test_it_says_what_is_wrong_next_to_the_field_and_sends_nothing(
        self, name, alice, kling_calls, worker
    ):
        case = FORM_CASES[name]
        data = dict(case.data)
        if case.upload is not None:
            file_name, content, content_type = case.upload
            data["audio_file"] = SimpleUploadedFile(file_name, content, content_type)

        response = alice.post(reverse("tasks:create"), data)

        assert response.status_code == 400
        assert case.message in " ".join(response.context["form"].errors[case.field])
        assert case.message in " ".join(field_error(response, case.field).split())
        assert "Nothing was sent to Kling" in response.content.decode()
        worker(all_scheduled=True)
        assert not Job.objects.exists()
        assert kling_calls() == 0

    def test_a_tampered_submission_key_is_replaced_by_a_fresh_one(self, alice, kling_calls):
        tampered = {"submission_key": "1 OR 1=1"}
        first = alice.post(reverse("tasks:create"), TEXT_FORM | tampered)
        second = alice.post(reverse("tasks:create"), TEXT_FORM | tampered)

        # Nothing to fix on the person's side, so no error; each post is its own submission.
        assert first.status_code == second.status_code == 302
        keys = set(Job.objects.values_list("submission_key", flat=True))
        assert len(keys) == 2
        assert all(str(key) != "1 OR 1=1" for key in keys)
        assert kling_calls() == 0  # stored, not sent: sending is the worker's job


# --- Uploads over the limit ---------------------------------------------------------------------


class TestUploadsOverTheLimit:
    def test_the_parser_stops_passing_the_file_on_once_it_is_over_the_limit(self, settings):
        settings.KLING_MAX_AUDIO_BYTES = 64 * 1024
        body = encode_multipart(
            BOUNDARY,
            {
                "video_id": "860327812345678901",
                "audio_file": SimpleUploadedFile("voice.mp3", MP3 * 2000, "audio/mpeg"),
            },
        )
        request = HttpRequest()
        request.META = {"CONTENT_TYPE": MULTIPART_CONTENT, "CONTENT_LENGTH": str(len(body))}
        limit, counter = AudioSizeLimitHandler(request), CountingHandler(request)

        post, files = MultiPartParser(request.META, io.BytesIO(body), [limit, counter]).parse()

        assert len(MP3 * 2000) > 10 * settings.KLING_MAX_AUDIO_BYTES
        assert getattr(request, "upload_too_big", None) is True
        assert "audio_file" not in files
        assert counter.passed_on <= settings.KLING_MAX_AUDIO_BYTES
        assert post["video_id"] == "860327812345678901"  # fields before the file are kept

    def test_the_handler_passes_chunks_on_until_the_limit_then_stops(self, settings):
        settings.KLING_MAX_AUDIO_BYTES = 100
        request = HttpRequest()
        handler = AudioSizeLimitHandler(request)
        handler.new_file("audio_file", "voice.mp3", "audio/mpeg", None)

        assert handler.receive_data_chunk(b"a" * 60, 0) == b"a" * 60
        assert handler.receive_data_chunk(b"a" * 40, 60) == b"a" * 40
        with pytest.raises(StopUpload) as stop:
            handler.receive_data_chunk(b"a", 100)
        assert stop.value.connection_reset is False  # the person still gets an answer
        assert getattr(request, "upload_too_big", None) is True

    def test_the_page_says_the_file_is_too_big_and_nothing_is_stored(
        self, alice, settings, media_root, kling_calls, worker
    ):
        settings.KLING_MAX_AUDIO_BYTES = 64 * 1024
        data = AUDIO_FORM | {
            "audio_source": "file",
            "audio_url": "",
            "video_id": "kept-video-id",
            "audio_file": SimpleUploadedFile("voice.mp3", MP3 * 1000, "audio/mpeg"),
        }

        response = alice.post(reverse("tasks:create"), data)

        assert response.status_code == 400
        message = field_error(response, "audio_file")
        assert "The audio file is larger than 0.0625 MB, Kling's limit." in message
        assert 'value="kept-video-id"' in response.content.decode()
        stored = [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []
        assert stored == []
        worker(all_scheduled=True)
        assert not Job.objects.exists()
        assert kling_calls() == 0

    def test_a_file_exactly_at_the_limit_is_accepted(self, alice, settings, media_root, mp3_bytes):
        # A real track (the studio measures it), and a limit of exactly its size.
        content = mp3_bytes
        settings.KLING_MAX_AUDIO_BYTES = len(content)
        data = AUDIO_FORM | {
            "audio_source": "file",
            "audio_url": "",
            "audio_file": SimpleUploadedFile("voice.mp3", content, "audio/mpeg"),
        }

        response = alice.post(reverse("tasks:create"), data)

        assert response.status_code == 302
        job = Job.objects.get()
        assert job.audio_file.size == len(content) == settings.KLING_MAX_AUDIO_BYTES


# --- Every URL, with ids and tokens that are wrong ----------------------------------------------


@dataclass(frozen=True)
class UrlCase:
    method: str
    url: str  # {own}, {other}, {missing}, {own_token}, {other_token}, {other_team}
    status: int | tuple[int, ...]
    data: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    #: Text that must not be in the answer (another team's data, a script).
    absent: str = ""


JOB_URLS = {
    "detail": ("get", "/tasks/{id}/"),
    "live status": ("get", "/tasks/{id}/"),
    "retry": ("post", "/tasks/{id}/retry/"),
    "cancel": ("post", "/tasks/{id}/cancel/"),
    "archive": ("post", "/tasks/{id}/archive/"),
    "video": ("get", "/tasks/{id}/video/"),
}

URL_CASES: dict[str, UrlCase] = {}
for _what, _id in (("another team's job", "{other}"), ("a job that does not exist", "{missing}")):
    for _page, (_method, _url) in JOB_URLS.items():
        URL_CASES[f"{_page} of {_what}"] = UrlCase(
            _method,
            _url.format(id=_id),
            404,
            headers={"HX-Request": "true"} if _page == "live status" else {},
            absent="Bob&#x27;s secret line",
        )
URL_CASES |= {
    "a job id too big for the database": UrlCase("get", f"/tasks/{HUGE}/", 404),
    "a retry of a job id too big for the database": UrlCase("post", f"/tasks/{HUGE}/retry/", 404),
    "a form filled from another team's job": UrlCase(
        "get", "/tasks/new/?from={other}", 200, absent="Bob&#x27;s secret line"
    ),
    "a form filled from a word": UrlCase("get", "/tasks/new/?from=abc", 200),
    "a form filled from a superscript digit": UrlCase("get", "/tasks/new/?from=%C2%B2", 200),
    "a form filled from a huge id": UrlCase("get", f"/tasks/new/?from={HUGE}", 200),
    "a form prefilled with a script as video ID": UrlCase(
        "get", "/tasks/new/?video_id=%3Cscript%3Ealert(1)%3C/script%3E", 200, absent="<script>alert"
    ),
    "live rows for a word": UrlCase("get", "/tasks/live/?id=abc", 286),
    "live rows for a negative id": UrlCase("get", "/tasks/live/?id=-1", 286),
    "live rows for 1e3": UrlCase("get", "/tasks/live/?id=1e3", 286),
    "live rows for a superscript digit": UrlCase("get", "/tasks/live/?id=%C2%B2", 286),
    "live rows for a huge id": UrlCase("get", f"/tasks/live/?id={HUGE}", 286),
    "live rows for an empty id": UrlCase("get", "/tasks/live/?id=", 286),
    "live rows for another team's job": UrlCase(
        "get", "/tasks/live/?id={other}", 286, absent="Bob&#x27;s secret line"
    ),
    "history page 'abc'": UrlCase("get", "/tasks/?page=abc", 200),
    "history page -1": UrlCase("get", "/tasks/?page=-1", 200),
    "history with an unknown status": UrlCase("get", "/tasks/?status=bogus", 200),
    "history with a bad date": UrlCase("get", "/tasks/?date_from=31/31/2031", 200),
    "history by another team's person": UrlCase("get", "/tasks/?submitter=abc", 200),
    "history searched for a script": UrlCase(
        "get", "/tasks/?q=%3Cscript%3Ealert(1)%3C/script%3E", 200, absent="<script>alert"
    ),
    "switching to a team by word": UrlCase("post", "/teams/switch/", 404, {"team": "abc"}),
    "switching to a superscript team": UrlCase("post", "/teams/switch/", 404, {"team": "²"}),
    "switching to a huge team id": UrlCase("post", "/teams/switch/", 404, {"team": HUGE}),
    "switching to another team": UrlCase("post", "/teams/switch/", 404, {"team": "{other_team}"}),
    "a retry by GET": UrlCase("get", "/tasks/{own}/retry/", 405),
    "a job form by PUT": UrlCase("put", "/tasks/new/", 405),
    "a callback with a tampered token": UrlCase("post", "/kling/callback/{own}/{own_token}x/", 404),
    "a callback with another job's token": UrlCase(
        "post", "/kling/callback/{own}/{other_token}/", 404
    ),
    "a callback for a job that does not exist": UrlCase(
        "post", "/kling/callback/{missing}/{own_token}/", 404
    ),
    "a callback for a huge job id": UrlCase("post", f"/kling/callback/{HUGE}/abc/", 404),
    "a callback by GET": UrlCase("get", "/kling/callback/{own}/{own_token}/", 405),
}


def fill(template: str, jobs: dict, other_team) -> str:
    return template.format(
        own=jobs["own"].pk,
        other=jobs["other"].pk,
        missing=jobs["other"].pk + 1000,
        own_token=jobs["own"].callback_token,
        other_token=jobs["other"].callback_token,
        other_team=other_team.pk,
    )


class TestEveryUrlRefusesWrongIds:
    @pytest.mark.parametrize("name", list(URL_CASES))
    def test_it_answers_with_a_4xx_or_a_harmless_page(
        self, name, alice, jobs, other_team, kling_calls, worker
    ):
        case = URL_CASES[name]
        before = snapshot()
        data = {key: fill(value, jobs, other_team) for key, value in case.data.items()}
        url = fill(case.url, jobs, other_team)

        if case.method == "get":
            response = alice.get(url, headers=case.headers)
        else:
            response = alice.generic(
                case.method.upper(),
                url,
                urlencode(data).encode(),
                content_type="application/x-www-form-urlencoded",
                headers=case.headers,
            )

        expected = case.status if isinstance(case.status, tuple) else (case.status,)
        assert response.status_code in expected
        if case.absent:
            assert case.absent not in response.content.decode()
        worker(all_scheduled=True)
        assert snapshot() == before
        assert kling_calls() == 0


def signed_headers(body: bytes, *, secret: str = WEBHOOK_SECRET, age: int = 0) -> dict:
    msg_id, stamp = "msg_1", int(time.time()) - age
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_webhook(secret, msg_id, stamp, body),
    }


TASK_BODY = b'{"task_id": "1", "task_status": "succeed"}'
CALLBACK_CASES = {
    "no signature headers": (TASK_BODY, lambda: {}, 403),
    "a signature made with another secret": (
        TASK_BODY,
        lambda: signed_headers(TASK_BODY, secret="whsec_b3RoZXJzZWNyZXRvdGhlcnNlY3JldA=="),
        403,
    ),
    "a signature of another body": (
        TASK_BODY,
        lambda: signed_headers(b'{"task_id": "2"}'),
        403,
    ),
    "a signature ten minutes old": (TASK_BODY, lambda: signed_headers(TASK_BODY, age=600), 403),
    "a garbled signature": (
        TASK_BODY,
        lambda: signed_headers(TASK_BODY) | {"webhook-signature": "v1,not-base64!!"},
        403,
    ),
    "a timestamp that is not a number": (
        TASK_BODY,
        lambda: signed_headers(TASK_BODY) | {"webhook-timestamp": "yesterday"},
        403,
    ),
    "a signed body that is not JSON": (b"not json", lambda: signed_headers(b"not json"), 400),
    "a signed JSON list": (b"[1, 2]", lambda: signed_headers(b"[1, 2]"), 400),
}


class TestCallbacksWithBadSignatures:
    @pytest.mark.parametrize("name", list(CALLBACK_CASES))
    def test_it_is_refused_and_nothing_is_asked_of_kling(
        self, name, jobs, settings, kling_calls, shared_kling, worker
    ):
        settings.KLING_WEBHOOK_SECRET = WEBHOOK_SECRET
        body, headers, status = CALLBACK_CASES[name]
        put_job(jobs["own"], status=JobStatus.SENT, kling_task_id="1", finished_at=None)
        queries = shared_kling.query_count
        url = reverse(
            "kling_callback",
            kwargs={
                "job_id": jobs["own"].pk,
                "token": jobs["own"].callback_token,
            },
        )

        response = Client().post(url, body, content_type="application/json", headers=headers())

        assert response.status_code == status
        assert not DBTaskResult.objects.exists()  # no check was scheduled
        worker(all_scheduled=True)
        assert shared_kling.query_count == queries
        assert kling_calls() == 0


# --- Forged requests (no CSRF token) ------------------------------------------------------------


CSRF_CASES = {
    "a new job": ("/tasks/new/", TEXT_FORM),
    "a retry": ("/tasks/{own}/retry/", {}),
    "a cancel": ("/tasks/{own}/cancel/", {}),
    "an archive": ("/tasks/{own}/archive/", {"archive": "1"}),
    "a team switch": ("/teams/switch/", {"team": "{other_team}"}),
    "account settings": ("/account/", {"email_when_done": "on"}),
    "a log-out": ("/accounts/logout/", {}),
    "a password change": (
        "/accounts/password_change/",
        {"old_password": "x", "new_password1": "y", "new_password2": "y"},
    ),
    "a language change": ("/i18n/setlang/", {"language": "zh-hans"}),
}


class TestForgedRequests:
    @pytest.mark.parametrize("name", list(CSRF_CASES))
    @pytest.mark.parametrize("token", ["missing", "wrong"])
    def test_a_post_without_the_csrf_token_is_refused(
        self, name, token, user, jobs, other_team, kling_calls, worker
    ):
        url, data = CSRF_CASES[name]
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(user)
        browser.get(reverse("tasks:list"))  # the browser holds a CSRF cookie, as a real one would
        data = {key: fill(value, jobs, other_team) for key, value in data.items()}
        if token == "wrong":
            data["csrfmiddlewaretoken"] = "x" * 64
        before = snapshot()

        response = browser.post(fill(url, jobs, other_team), data)

        assert response.status_code == 403
        assert snapshot() == before
        assert "_auth_user_id" in browser.session  # still logged in
        worker(all_scheduled=True)
        assert kling_calls() == 0

    def test_the_same_post_with_the_token_goes_through(self, user, kling_calls):
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(user)
        page = browser.get(reverse("tasks:create"))
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
        assert token is not None

        response = browser.post(
            reverse("tasks:create"), TEXT_FORM | {"csrfmiddlewaretoken": token.group(1)}
        )

        assert response.status_code == 302
        assert Job.objects.count() == 1


# --- Odd but valid input is kept as typed and shown escaped ---------------------------------------


VALID_CASES = {
    "a script tag as text": (
        TEXT_FORM | {"text": "<script>alert(1)</script>"},
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "<script>alert(1)",
    ),
    "an attribute breakout as text": (
        TEXT_FORM | {"text": '"><img src=x onerror=alert(1)>'},
        "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;",
        "<img src=x",
    ),
    "120 emoji": (TEXT_FORM | {"text": "😀" * 120}, "😀" * 120, None),
    "120 CJK characters": (TEXT_FORM | {"text": "你" * 120}, "你" * 120, None),
    "emoji built with joiners": (TEXT_FORM | {"text": "👩‍💻 ships it"}, "👩‍💻 ships it", None),
    # {server}: a local server (allow-listed) serving a real clip, since the studio reads it.
    "a script in the query of a video link": (
        VIDEO_URL_FORM | {"video_url": '{server}/a.mp4?x="><script>alert(1)</script>'},
        "{server}/a.mp4?x=&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;",
        "<script>alert(1)",
    ),
}


@pytest.fixture(scope="module")
def clip() -> bytes:
    """A clip Kling takes: 3 s, 1280 x 720, with a face."""
    return video_bytes(seconds=3, width=1280, height=720)


@pytest.fixture
def link_server(clip, settings) -> Iterator[str]:
    """The base URL of a local server serving ``clip``, allow-listed for the studio to fetch."""
    with serving(clip) as server:
        settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
        yield server.url


class TestOddButValidInput:
    @pytest.mark.parametrize("name", list(VALID_CASES))
    def test_it_is_accepted_and_shown_escaped(self, name, alice, link_server):
        data, shown, never = VALID_CASES[name]
        data = {key: value.replace("{server}", link_server) for key, value in data.items()}
        shown = shown.replace("{server}", link_server)

        response = alice.post(reverse("tasks:create"), data)

        assert response.status_code == 302, response.content.decode()[:3000]
        job = Job.objects.get(pk=resolve(response.url).kwargs["pk"])
        page = alice.get(job.get_absolute_url()).content.decode()
        assert shown in page
        if never:
            assert never not in page
            history = alice.get(reverse("tasks:list")).content.decode()
            assert never not in history

    def test_an_empty_speed_means_normal_speed(self, alice):
        response = alice.post(reverse("tasks:create"), TEXT_FORM | {"voice_speed": ""})

        assert response.status_code == 302
        assert str(Job.objects.get().voice_speed) == "1.0"

    def test_newlines_become_spaces(self, alice):
        alice.post(reverse("tasks:create"), TEXT_FORM | {"text": "Hello\r\nworld\n again"})

        assert Job.objects.get().text == "Hello world again"

    def test_real_audio_sent_with_a_wrong_content_type_is_judged_by_its_bytes(
        self, alice, wav_bytes
    ):
        data = AUDIO_FORM | {
            "audio_source": "file",
            "audio_url": "",
            "audio_file": SimpleUploadedFile("voice.wav", wav_bytes, "text/html"),
        }

        response = alice.post(reverse("tasks:create"), data)

        assert response.status_code == 302
        assert Job.objects.get().audio_name == "voice.wav"

    def test_a_script_in_an_upload_name_is_shown_escaped(self, alice, mp3_bytes):
        name = "<img src=x onerror=alert(1)>.mp3"
        data = AUDIO_FORM | {
            "audio_source": "file",
            "audio_url": "",
            "audio_file": SimpleUploadedFile(name, mp3_bytes, "audio/mpeg"),
        }

        response = alice.post(reverse("tasks:create"), data)

        assert response.status_code == 302
        job = Job.objects.get()
        assert job.audio_file.name and "<" not in job.audio_file.name
        page = alice.get(job.get_absolute_url()).content.decode()
        assert "<img src=x" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;.mp3" in page

    def test_an_archive_never_redirects_to_another_site(self, alice, jobs):
        url = reverse("tasks:archive", args=[jobs["own"].pk])

        response = alice.post(url, {"archive": "1", "next": "https://evil.example/phish"})

        assert response.status_code == 302
        assert response.url == jobs["own"].get_absolute_url()
