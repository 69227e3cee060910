"""What a person sees of a job's source video: the poster frame, its facts on the job page, a
thumbnail in the history and in the admin, and the demo's sample videos on the form."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from typing import Any

import cv2
import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from factories import TEXT_FORM, make_job

from tasks_app.models import Job, JobStatus
from tasks_app.simulator import SAMPLE_NAMES

pytestmark = pytest.mark.django_db

LINK = "https://videos.example.com/clip.mp4"
KLING_ID_SENTENCE = "A Kling video ID: the studio cannot check it; Kling does."


def jpeg_bytes(width: int = 90, height: int = 160) -> bytes:
    picture = np.zeros((height, width, 3), dtype=np.uint8)
    picture[:, : width // 2] = (40, 90, 200)
    ok, encoded = cv2.imencode(".jpg", picture)
    assert ok
    return encoded.tobytes()


def checked_job(
    person, *, poster: bytes | None = None, status: str = JobStatus.SUCCEEDED, **fields
) -> Job:
    """A job (finished by default) from a link, with what the studio measured of the video."""
    facts: dict[str, Any] = {
        "video_url": LINK,
        "video_duration": 3.0,
        "video_width": 720,
        "video_height": 1280,
        "video_bytes": 1_234_567,
        "face_found": True,
    }
    if poster is not None:
        facts["poster"] = default_storage.save("posters/test/poster.jpg", ContentFile(poster))
    return make_job(person, status=status, **(facts | fields))


def poster_url(job: Job) -> str:
    return reverse("tasks:poster", args=[job.pk])


class _Elements(HTMLParser):
    """Every element's tag and attributes, in order (enough to find images and cells)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def elements(html: str, tag: str) -> list[dict[str, str | None]]:
    parser = _Elements()
    parser.feed(html)
    return [attrs for name, attrs in parser.found if name == tag]


def row_html(page: str, job: Job) -> str:
    match = re.search(rf'<tr id="job-row-{job.pk}".*?</tr>', page, re.S)
    assert match, f"no row for job #{job.pk}"
    return match.group(0)


class TestPosterView:
    def test_it_serves_the_poster_as_a_private_cached_jpeg(self, alice, user):
        poster = jpeg_bytes()
        job = checked_job(user, poster=poster)
        response = alice.get(poster_url(job))
        assert response.status_code == 200
        assert response["Content-Type"] == "image/jpeg"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cache-Control"] == "private, max-age=86400"
        assert b"".join(response.streaming_content) == poster

    def test_a_teammate_sees_it(self, carol, user):
        job = checked_job(user, poster=jpeg_bytes())
        assert carol.get(poster_url(job)).status_code == 200

    def test_another_teams_person_gets_404(self, bob, user):
        job = checked_job(user, poster=jpeg_bytes())
        assert bob.get(poster_url(job)).status_code == 404

    def test_someone_logged_out_is_sent_to_log_in(self, client, user):
        job = checked_job(user, poster=jpeg_bytes())
        response = client.get(poster_url(job))
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))

    def test_a_job_without_a_poster_is_404(self, alice, user):
        job = checked_job(user)
        assert alice.get(poster_url(job)).status_code == 404

    def test_a_poster_gone_from_storage_is_404_not_500(self, alice, user):
        job = checked_job(user, poster=jpeg_bytes())
        assert job.poster.name
        default_storage.delete(job.poster.name)
        assert alice.get(poster_url(job)).status_code == 404

    def test_it_answers_get_only(self, alice, user):
        job = checked_job(user, poster=jpeg_bytes())
        assert alice.post(poster_url(job)).status_code == 405


class TestJobPage:
    def source_block(self, client: Client, job: Job) -> str:
        page = client.get(job.get_absolute_url()).content.decode()
        match = re.search(r'<div class="source-video".*?</div>', page, re.S)
        assert match, "no source video block"
        return match.group(0)

    def test_it_shows_the_poster_and_what_the_studio_measured(self, alice, user):
        job = checked_job(user, poster=jpeg_bytes())
        block = self.source_block(alice, job)
        assert "Source video" in block
        (image,) = elements(block, "img")
        assert image["src"] == poster_url(job)
        assert image["alt"]  # it says what it is
        assert (image["width"], image["height"]) == ("720", "1280")
        # filesizeformat's space does not break: \s finds it too.
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", block))
        assert "3.0 s" in text
        assert "720 × 1280 px" in text  # noqa: RUF001 (a multiplication sign)
        assert "1.2 MB" in text
        assert "Face found" in text
        assert KLING_ID_SENTENCE not in text

    def test_a_video_sent_without_a_face_says_so(self, alice, user):
        job = checked_job(user, face_found=False, confirmed_no_face=True)
        block = self.source_block(alice, job)
        assert "No face found (sent anyway)" in block
        assert "Face found" not in block.replace("No face found", "")
        assert not elements(block, "img")  # no poster, no broken image

    def test_an_uploaded_file_shows_its_name(self, alice, user):
        job = checked_job(
            user,
            poster=jpeg_bytes(),
            video_url="",
            video_id="",
            video_file="sources/test/clip.mp4",
            video_name="Holiday greeting.mov",
        )
        page = alice.get(job.get_absolute_url()).content.decode()
        assert "Holiday greeting.mov" in self.source_block(alice, job)
        assert "sources/test/clip.mp4" not in page  # the stored name is the studio's business

    def test_a_kling_video_id_says_the_studio_cannot_check_it_and_nothing_else(self, alice, user):
        job = make_job(user, status=JobStatus.SUCCEEDED)
        assert job.video_id
        block = self.source_block(alice, job)
        assert KLING_ID_SENTENCE in block
        assert "<dl" not in block
        assert not elements(block, "img")

    def test_a_job_from_before_the_checks_shows_no_source_block(self, alice, user):
        job = make_job(user, status=JobStatus.SUCCEEDED, video_url=LINK)
        page = alice.get(job.get_absolute_url()).content.decode()
        assert 'class="source-video"' not in page
        assert LINK in page  # the link itself is still shown


class TestHistory:
    def test_a_row_has_a_small_lazy_thumbnail_only_when_its_job_has_a_poster(self, alice, user):
        with_poster = checked_job(user, poster=jpeg_bytes(), text="With a poster")
        without = checked_job(user, text="Without one")
        by_id = make_job(user, status=JobStatus.SUCCEEDED, text="From an ID")
        page = alice.get(reverse("tasks:list")).content.decode()

        (thumbnail,) = elements(row_html(page, with_poster), "img")
        assert thumbnail["src"] == poster_url(with_poster)
        assert thumbnail["alt"] == ""  # the row's link already says which job it is
        assert thumbnail["loading"] == "lazy"
        assert thumbnail["height"] == "48"
        assert thumbnail["width"] == "27"  # 720 x 1280 at 48 px high
        for job in (without, by_id):
            assert not elements(row_html(page, job), "img")

        # The thumbnail sits in an existing cell: every row keeps the table's columns.
        columns = len(elements(page.split("<tbody>")[0], "th"))
        for job in (with_poster, without, by_id):
            assert len(elements(row_html(page, job), "td")) == columns

    def test_the_live_refresh_of_a_row_keeps_its_thumbnail(self, alice, user):
        job = checked_job(user, poster=jpeg_bytes(), status=JobStatus.PROCESSING)
        response = alice.get(reverse("tasks:live"), {"id": job.pk})
        assert poster_url(job) in row_html(response.content.decode(), job)


class TestAdmin:
    JOBS_URL = reverse("admin:tasks_app_job_changelist")

    def test_the_job_list_has_a_thumbnail_column(self, admin_client, user):
        with_poster = checked_job(user, poster=jpeg_bytes())
        without = checked_job(user)
        page = admin_client.get(self.JOBS_URL).content.decode()
        assert 'class="column-poster_thumbnail"' in page
        images = [
            attrs for attrs in elements(page, "img") if attrs["src"] == poster_url(with_poster)
        ]
        assert len(images) == 1
        assert images[0]["loading"] == "lazy"
        assert poster_url(without) not in page
        # What the thumbnail points at opens for whoever sees the list.
        assert admin_client.get(poster_url(with_poster)).status_code == 200

    def test_the_change_page_shows_the_facts_read_only(self, admin_client, user):
        job = checked_job(
            user, poster=jpeg_bytes(), face_found=False, confirmed_no_face=True, video_name=""
        )
        response = admin_client.get(reverse("admin:tasks_app_job_change", args=[job.pk]))
        page = response.content.decode()
        assert "source_video" not in response.context["adminform"].form.fields
        facts = re.search(
            r'<div class="form-row field-source_video">.*?</div>\s*</div>', page, re.S
        )
        assert facts, "no source video row"
        assert poster_url(job) in facts.group(0)
        text = re.sub(r"\s+", " ", facts.group(0))  # filesizeformat's space does not break
        assert "3.0 s" in text
        assert "720 × 1280 px" in text  # noqa: RUF001 (a multiplication sign)
        assert "1.2 MB" in text
        assert "No face found (sent anyway)" in text

    def test_the_change_page_of_a_kling_id_job_says_it_cannot_be_checked(self, admin_client, user):
        job = make_job(user, status=JobStatus.SUCCEEDED)
        page = admin_client.get(reverse("admin:tasks_app_job_change", args=[job.pk])).content
        assert KLING_ID_SENTENCE in page.decode()


class TestSampleVideos:
    def test_demo_mode_offers_each_sample_as_a_link_that_fills_in_the_form(self, alice, settings):
        settings.KLING_DEMO = True
        settings.KLING_SIMULATOR_URL = "http://127.0.0.1:8765"
        page = alice.get(reverse("tasks:create")).content.decode()
        assert "Try a sample video" in page
        links = [attrs for attrs in elements(page, "a") if attrs.get("data-sample-url")]
        assert [link["data-sample-url"] for link in links] == [
            f"http://127.0.0.1:8765/samples/{name}" for name in SAMPLE_NAMES
        ]
        for link in links:
            # Without JavaScript the link opens the form with the sample filled in.
            href = link["href"]
            assert href
            form = alice.get(href.replace("&amp;", "&")).context["form"]
            assert form.initial["video_source"] == "video_url"
            assert form.initial["video_url"] == link["data-sample-url"]

    def test_live_mode_offers_none(self, alice, settings):
        settings.KLING_DEMO = False
        page = alice.get(reverse("tasks:create")).content.decode()
        assert "Try a sample video" not in page
        assert "/samples/" not in page


class TestSamplesThroughTheStudiosCheck:
    """The samples do what their labels say when the studio itself reads them (demo mode)."""

    @pytest.fixture
    def sample_form(self, kling, settings):
        settings.KLING_DEMO = True  # the fetch guard then lets the studio read the simulator

        def form(name: str) -> dict:
            url = f"{kling.url}/samples/{name}"
            return TEXT_FORM | {
                "submission_key": str(uuid.uuid4()),
                "video_source": "video_url",
                "video_id": "",
                "video_url": url,
            }

        return form

    def checked(self, client: Client, data: dict) -> str:
        response = client.post(reverse("tasks:check"), data, HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        return re.sub(r"\s+", " ", response.content.decode())

    def test_the_ok_sample_passes_with_a_face_found(self, alice, sample_form):
        page = self.checked(alice, sample_form("sample-ok.mp4"))
        assert "4.0 s" in page
        assert "720 × 1280" in page  # noqa: RUF001 (a multiplication sign)
        assert 'role="alert"' not in page

    def test_the_too_long_and_too_small_samples_are_refused_with_their_measure(
        self, alice, sample_form
    ):
        assert "12.0 s" in self.checked(alice, sample_form("sample-too-long.mp4"))
        too_small = self.checked(alice, sample_form("sample-too-small.mp4"))
        assert "320" in too_small
        assert 'role="alert"' in too_small

    def test_the_no_face_sample_asks_to_confirm(self, alice, sample_form):
        assert 'name="confirm_no_face"' in self.checked(alice, sample_form("sample-noface.mp4"))

    def test_a_job_from_the_ok_sample_shows_its_poster_and_facts(self, alice, sample_form):
        response = alice.post(reverse("tasks:create"), sample_form("sample-ok.mp4"))
        assert response.status_code == 302
        job = Job.objects.get()
        assert (job.video_width, job.video_height, job.face_found) == (720, 1280, True)
        assert job.poster
        page = alice.get(job.get_absolute_url()).content.decode()
        assert poster_url(job) in page
        poster = alice.get(poster_url(job))
        assert poster.status_code == 200
        jpeg = b"".join(poster.streaming_content)
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None and decoded.shape[0] > decoded.shape[1]  # a portrait frame
