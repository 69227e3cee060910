"""Stored files: uploads kept under generated names, served only through the studio's views.

And who may read them: a team's files are its own; another team's open only to reviewers
(``tasks_app.review_job``) and superusers, never to the staff flag alone.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from factories import AUDIO_FORM, make_job, make_member, put_job
from media_files import audio_bytes

from tasks_app.models import Job, JobMode, JobStatus, Team

pytestmark = pytest.mark.django_db

# Real tracks, since the studio measures every upload: an M4A, and raw AAC in ADTS frames.
M4A_BYTES = audio_bytes(seconds=3, format="m4a")
AAC_BYTES = audio_bytes(seconds=3, format="aac")
VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 40
GENERATED_AUDIO_NAME = re.compile(r"audio/\d{4}/\d{2}/[0-9a-f]{32}\.(mp3|wav|m4a|aac)")


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def upload(client: Client, name: str, content: bytes, content_type: str = "audio/mpeg") -> Job:
    data = AUDIO_FORM | {
        "audio_source": "file",
        "audio_url": "",
        "audio_file": SimpleUploadedFile(name, content, content_type),
    }
    response = client.post(reverse("tasks:create"), data)
    assert response.status_code == 302, response.content.decode()
    return Job.objects.latest("pk")


def audio_job(person, content: bytes, name: str = "line.wav", **state) -> Job:
    """An audio job of ``person``'s whose upload went through the service, as the form's
    does; ``state`` (a status, say) is then written as the worker would have left it."""
    job = make_job(
        person, mode=JobMode.AUDIO, audio_upload=SimpleUploadedFile(name, content), audio_name=name
    )
    return put_job(job, **state) if state else job


def stored_video_job(person, team: Team | None = None) -> Job:
    job = make_job(person, team=team, status=JobStatus.SUCCEEDED)
    name = default_storage.save(f"results/{job.team_id}/job-{job.pk}.mp4", ContentFile(VIDEO_BYTES))
    return put_job(job, stored_video=name, stored_size=len(VIDEO_BYTES))


class TestStoredNames:
    @pytest.mark.parametrize(
        ("name", "content", "extension"),
        [
            ("voice.html", "wav", "wav"),
            ("voice.svg", "mp3", "mp3"),
            ("voice.mp3", "wav", "wav"),  # the bytes decide, not the name
            ("<script>.m4a", M4A_BYTES, "m4a"),
            ("no-extension", AAC_BYTES, "aac"),
        ],
    )
    def test_an_upload_is_stored_under_a_generated_name_with_the_sniffed_extension(
        self, alice, wav_bytes, mp3_bytes, name, content, extension
    ):
        content = {"wav": wav_bytes, "mp3": mp3_bytes}.get(content, content)

        job = upload(alice, name, content, content_type="text/html")

        stored_name = str(job.audio_file.name)
        assert GENERATED_AUDIO_NAME.fullmatch(stored_name), stored_name
        assert stored_name.endswith(f".{extension}")
        assert job.audio_name == name  # the person's own name, for display only
        with job.audio_file.open("rb") as stored:
            assert stored.read() == content

    def test_two_uploads_with_the_same_name_get_different_files(self, alice, wav_bytes, user):
        first = upload(alice, "voice.wav", wav_bytes)
        second = upload(alice, "voice.wav", wav_bytes + b"\x00\x00")

        assert first.audio_file.name != second.audio_file.name
        assert first.audio_file.size != second.audio_file.size

    def test_the_service_names_a_file_by_its_bytes_too(self, user, mp3_bytes):
        job = audio_job(user, mp3_bytes, name="track.svg")

        stored_name = str(job.audio_file.name)
        assert GENERATED_AUDIO_NAME.fullmatch(stored_name)
        assert stored_name.endswith(".mp3")
        assert job.audio_name == "track.svg"

    def test_bytes_that_are_not_audio_are_never_stored_under_a_renderable_extension(self, user):
        # The form refuses such a file; should any other caller store one, it stays opaque.
        job = audio_job(user, b"<svg onload=alert(1)>", name="x.svg")

        stored_name = str(job.audio_file.name)
        assert stored_name.endswith(".bin")
        assert "x.svg" not in stored_name


class TestServingTheAudio:
    @pytest.mark.parametrize(
        ("content", "content_type", "extension"),
        [
            ("mp3", "audio/mpeg", "mp3"),
            ("wav", "audio/wav", "wav"),
            (M4A_BYTES, "audio/mp4", "m4a"),
            (AAC_BYTES, "audio/aac", "aac"),
        ],
    )
    def test_it_is_a_download_typed_by_its_bytes_with_nosniff(
        self, alice, wav_bytes, mp3_bytes, content, content_type, extension
    ):
        content = {"wav": wav_bytes, "mp3": mp3_bytes}.get(content, content)
        job = upload(alice, "voice.html", content, content_type="text/html")

        response = alice.get(reverse("tasks:audio", args=[job.pk]))

        assert response.status_code == 200
        assert response["Content-Type"] == content_type
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Disposition"] == (
            f'attachment; filename="lipsync-{job.pk}-audio.{extension}"'
        )
        assert body_of(response) == content

    def test_a_file_stored_under_its_persons_name_before_is_still_typed_by_its_bytes(
        self, alice, user, wav_bytes
    ):
        name = default_storage.save("audio/2024/05/voice.html", ContentFile(wav_bytes))
        job = make_job(user, status=JobStatus.FAILED, mode=JobMode.AUDIO, audio_stored_name=name)

        response = alice.get(reverse("tasks:audio", args=[job.pk]))

        assert response["Content-Type"] == "audio/wav"
        assert response["Content-Disposition"].endswith('-audio.wav"')
        assert "html" not in response["Content-Disposition"]

    def test_a_stored_file_that_is_not_audio_is_served_as_opaque_bytes(self, alice, user):
        name = default_storage.save("audio/2024/05/page.html", ContentFile(b"<script>1</script>"))
        job = make_job(user, status=JobStatus.FAILED, mode=JobMode.AUDIO, audio_stored_name=name)

        response = alice.get(reverse("tasks:audio", args=[job.pk]))

        assert response.status_code == 200
        assert response["Content-Type"] == "application/octet-stream"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Disposition"] == (
            f'attachment; filename="lipsync-{job.pk}-audio.bin"'
        )

    def test_a_job_without_an_uploaded_file_has_no_audio(self, alice, user):
        job = make_job(user, mode=JobMode.AUDIO, audio_url="https://files.example/track.mp3")

        assert alice.get(reverse("tasks:audio", args=[job.pk])).status_code == 404

    def test_a_missing_file_is_a_404_not_a_500(self, alice, user):
        job = make_job(
            user, status=JobStatus.FAILED, mode=JobMode.AUDIO, audio_stored_name="audio/gone.mp3"
        )

        assert alice.get(reverse("tasks:audio", args=[job.pk])).status_code == 404

    def test_only_get_is_allowed(self, alice, user, wav_bytes):
        job = audio_job(user, wav_bytes)

        assert alice.post(reverse("tasks:audio", args=[job.pk])).status_code == 405

    def test_another_teams_member_gets_a_404(self, bob, user, wav_bytes):
        job = audio_job(user, wav_bytes)

        assert bob.get(reverse("tasks:audio", args=[job.pk])).status_code == 404

    def test_a_visitor_is_sent_to_log_in(self, client, user, wav_bytes):
        job = audio_job(user, wav_bytes)

        response = client.get(reverse("tasks:audio", args=[job.pk]))

        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


class TestServingTheVideo:
    def test_playing_it_is_inline_with_nosniff_on_every_answer_ranges_included(self, alice, user):
        job = stored_video_job(user)
        url = reverse("tasks:video", args=[job.pk])

        for response in (alice.get(url), alice.get(url, HTTP_RANGE="bytes=0-99")):
            assert response.status_code in (200, 206)
            assert response["Content-Type"] == "video/mp4"
            assert response["X-Content-Type-Options"] == "nosniff"
            assert response["Content-Disposition"] == f'inline; filename="lipsync-{job.pk}.mp4"'

    def test_download_1_makes_it_an_attachment_ranges_included(self, alice, user):
        job = stored_video_job(user)
        url = reverse("tasks:video", args=[job.pk]) + "?download=1"

        for response in (alice.get(url), alice.get(url, HTTP_RANGE="bytes=10-")):
            assert response["X-Content-Type-Options"] == "nosniff"
            assert response["Content-Disposition"] == (
                f'attachment; filename="lipsync-{job.pk}.mp4"'
            )
        assert body_of(response) == VIDEO_BYTES[10:]


class TestNoBareMediaUrls:
    def test_nothing_answers_under_media(self, alice, user, wav_bytes):
        job = audio_job(user, wav_bytes)
        video = stored_video_job(user)

        for name in (job.audio_file.name, video.stored_video.name):
            assert alice.get(f"/media/{name}").status_code == 404

    def test_the_job_page_links_no_stored_file_by_its_storage_url(self, alice, user, wav_bytes):
        job = audio_job(user, wav_bytes)
        video = stored_video_job(user)

        for shown in (job, video):
            page = alice.get(shown.get_absolute_url()).content.decode()
            assert "/media/" not in page


class TestStaffWithoutTheReviewPermission:
    """The staff flag opens the admin; it does not open other teams' jobs."""

    @pytest.fixture
    def theirs(self, other_user, wav_bytes) -> Job:
        job = audio_job(other_user, wav_bytes, status=JobStatus.FAILED)
        name = default_storage.save("results/theirs.mp4", ContentFile(VIDEO_BYTES))
        return put_job(job, stored_video=name, stored_size=len(VIDEO_BYTES))

    @pytest.fixture
    def staff(self, team) -> Client:
        client = Client()
        client.force_login(make_member("sam", team, is_staff=True))
        return client

    def reads(self, client: Client, job: Job) -> list[int]:
        return [
            client.get(reverse(name, args=[job.pk])).status_code
            for name in ("tasks:detail", "tasks:video", "tasks:audio")
        ]

    def test_gets_a_404_on_another_teams_job_its_video_and_audio(self, staff, theirs):
        assert self.reads(staff, theirs) == [404, 404, 404]

    def test_cannot_retry_another_teams_job(self, staff, theirs):
        response = staff.post(reverse("tasks:retry", args=[theirs.pk]))

        assert response.status_code == 404
        assert not Job.objects.filter(retry_of=theirs).exists()

    def test_sees_only_their_own_teams_jobs_in_the_history(self, staff, user, theirs):
        own = make_job(user, text="Our own line")

        page = staff.get(reverse("tasks:list"))
        live = staff.get(reverse("tasks:live"), {"id": [own.pk, theirs.pk]})

        assert [job.pk for job in page.context["page"].jobs] == [own.pk]
        assert f"job-row-{theirs.pk}" not in live.content.decode()
        assert f"job-row-{own.pk}" in live.content.decode()

    def test_reads_their_own_teams_jobs(self, staff, user, wav_bytes):
        own = audio_job(user, wav_bytes, status=JobStatus.SUCCEEDED)
        name = default_storage.save("results/own.mp4", ContentFile(VIDEO_BYTES))
        own = put_job(own, stored_video=name, stored_size=len(VIDEO_BYTES))

        assert self.reads(staff, own) == [200, 200, 200]

    def test_with_the_review_permission_reads_every_teams_job(self, team, theirs):
        reviewer = make_member("rita", team, is_staff=True)
        reviewer.user_permissions.add(
            Permission.objects.get(content_type__app_label="tasks_app", codename="review_job")
        )
        client = Client()
        client.force_login(reviewer)

        assert self.reads(client, theirs) == [200, 200, 200]

    def test_the_review_permission_needs_the_staff_flag(self, team, theirs):
        person = make_member("pat", team)
        person.user_permissions.add(
            Permission.objects.get(content_type__app_label="tasks_app", codename="review_job")
        )
        client = Client()
        client.force_login(person)

        assert self.reads(client, theirs) == [404, 404, 404]

    def test_a_superuser_reads_every_teams_job(self, admin_client, theirs):
        assert self.reads(admin_client, theirs) == [200, 200, 200]
