"""Making a batch at /tasks/batch/new/: one video and many lines, or a CSV table; every row
judged by the single job form; nothing saved unless every row is right; one submission."""

from __future__ import annotations

import csv
import io
import re
import uuid
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import resolve, reverse
from django_tasks_db.models import DBTaskResult
from factories import TEXT_FORM, put_job
from local_http import serving
from media_files import make_video

from tasks_app.models import Batch, Job, JobStatus, Profile
from tasks_app.services import submitting

pytestmark = pytest.mark.django_db

NEW = "/tasks/batch/new/"
SHARED: dict[str, Any] = {
    "video_source": "video_id",
    "video_id": "860327812345678901",
    "voice_id": "genshin_vindi2",
    "voice_language": "en",
    "voice_speed": "1.0",
    "consent": "on",
}
SIDE: dict[str, Any] = {"width": 480, "height": 360}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("batch-clips")
    return {
        "face.mp4": make_video(folder / "face.mp4", seconds=3, **SIDE).read_bytes(),
        "long.mp4": make_video(folder / "long.mp4", seconds=12, **SIDE).read_bytes(),
        "noface.mp4": make_video(folder / "noface.mp4", seconds=3, face=False, **SIDE).read_bytes(),
    }


@pytest.fixture
def small_limits(settings) -> None:
    """Small clips keep the tests quick; the limits are lowered to match, as a deployment may."""
    settings.KLING_VIDEO_MIN_SIDE = 240
    settings.KLING_VIDEO_MAX_SIDE = 1920
    settings.KLING_DEMO = True


def lines_form(lines: str, **fields: Any) -> dict[str, Any]:
    return SHARED | {"way": "lines", "lines": lines, "submission_key": str(uuid.uuid4())} | fields


def table_form(content: bytes, name: str = "rows.csv", **fields: Any) -> dict[str, Any]:
    upload = SimpleUploadedFile(name, content, content_type="text/csv")
    form: dict[str, Any] = SHARED | {"way": "table", "submission_key": str(uuid.uuid4())}
    return form | {"rows_csv": upload} | fields


def batch_of(response) -> Batch:
    assert response.status_code == 302, problems_of(response)
    return Batch.objects.get(pk=resolve(response["Location"]).kwargs["pk"])


def rows_of(batch: Batch) -> list[Job]:
    return list(batch.jobs.order_by("batch_row"))


def problems_of(response) -> list[str]:
    """The row problems the page lists, in order."""
    page = response.content.decode()
    found = re.search(r'data-testid="row-problems">(.*?)</ul>', page, re.S)
    return [unescape(item) for item in re.findall(r"<li>(.*?)</li>", found[1])] if found else []


def field_errors(response, field: str) -> str:
    """The text of the error list next to one field of the page."""
    page = unescape(response.content.decode())
    found = re.search(rf'<ul class="errorlist" id="id_{field}_error">(.*?)</ul>', page, re.S)
    return found[1] if found else ""


def nothing_saved() -> bool:
    return (
        not Batch.objects.exists()
        and not Job.objects.exists()
        and not DBTaskResult.objects.exists()
    )


class TestBatchPage:
    def test_the_page_offers_both_ways_one_submission_key_and_the_template(self, alice):
        response = alice.get(NEW)

        page = response.content.decode()
        assert response.status_code == 200
        assert 'name="lines"' in page
        assert 'name="rows_csv"' in page
        assert page.count('name="submission_key"') == 1
        assert 'href="/tasks/batch/template.csv"' in page
        assert 'name="voice_id"' in page and 'name="video_source"' in page

    def test_the_new_job_page_links_to_the_batch_page(self, alice):
        page = alice.get(reverse("tasks:create")).content.decode()

        assert f'href="{NEW}"' in page

    def test_the_history_links_to_the_batch_page(self, alice):
        page = alice.get(reverse("tasks:list")).content.decode()

        assert f'href="{NEW}"' in page


class TestBatchFromLines:
    def test_each_non_empty_line_becomes_a_row_of_the_same_video_in_order(self, alice, user):
        response = alice.post(NEW, lines_form("Hello Anna\n\n  Hello Ben  \r\nHello Chloe\n"))

        batch = batch_of(response)
        rows = rows_of(batch)
        assert response["Location"] == batch.get_absolute_url()
        assert [(job.batch_row, job.text) for job in rows] == [
            (1, "Hello Anna"),
            (2, "Hello Ben"),
            (3, "Hello Chloe"),
        ]
        assert {job.video_id for job in rows} == {"860327812345678901"}
        assert {job.voice_id for job in rows} == {"genshin_vindi2"}
        assert {job.status for job in rows} == {JobStatus.PENDING}
        assert batch.created_by == user
        assert len({job.submission_key for job in rows}) == 3

    def test_the_first_row_is_scheduled_now_and_the_others_behind_it(self, alice):
        rows = rows_of(batch_of(alice.post(NEW, lines_form("One\nTwo\nThree"))))

        first, *others = [job.next_check_at for job in rows]
        assert first is not None
        assert all(later is not None and first < later for later in others)
        assert DBTaskResult.objects.count() == 3

    def test_an_uploaded_video_is_checked_and_stored_once_for_every_row(
        self, alice, clips, small_limits, media_root
    ):
        upload = SimpleUploadedFile("greeting.mp4", clips["face.mp4"], content_type="video/mp4")
        data = lines_form("One\nTwo\nThree", video_source="video_file", video_file=upload)

        rows = rows_of(batch_of(alice.post(NEW, data)))

        assert len({job.video_file.name for job in rows}) == 1
        assert len({job.poster.name for job in rows}) == 1
        assert rows[0].video_file and rows[0].poster
        assert {job.video_name for job in rows} == {"greeting.mp4"}
        assert [job.video_duration for job in rows] == [pytest.approx(3.0, abs=0.1)] * 3
        sources = [path for path in Path(media_root).rglob("*.mp4") if "sources" in path.parts]
        assert len(sources) == 1

    def test_a_video_without_a_face_asks_once_and_the_answer_covers_every_row(
        self, alice, clips, small_limits, media_root
    ):
        upload = SimpleUploadedFile("noface.mp4", clips["noface.mp4"], content_type="video/mp4")
        data = lines_form("One\nTwo\nThree", video_source="video_file", video_file=upload)

        asked = alice.post(NEW, data)

        page = asked.content.decode()
        assert asked.status_code == 400
        assert page.count('data-testid="face-warning"') == 1
        assert 'name="confirm_no_face"' in page
        assert nothing_saved()
        token = re.search(r'name="video_staged" id="id_video_staged" value="([^"]+)"', page)
        assert token is not None
        del data["video_file"]
        confirmed = data | {"video_staged": token[1], "confirm_no_face": "on"}

        rows = rows_of(batch_of(alice.post(NEW, confirmed)))

        assert [job.confirmed_no_face for job in rows] == [True, True, True]
        assert len({job.video_file.name for job in rows}) == 1
        sources = [path for path in Path(media_root).rglob("*.mp4") if "sources" in path.parts]
        assert len(sources) == 1

    def test_a_video_link_is_read_once_for_all_the_rows(self, alice, clips, small_limits, settings):
        with serving(clips["face.mp4"]) as server:
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            one = lines_form("Only", video_source="video_url", video_url=f"{server.url}/a.mp4")
            batch_of(alice.post(NEW, one))
            reads_for_one_row = server.hits
            many = lines_form(
                "\n".join(f"Line {n}" for n in range(8)),
                video_source="video_url",
                video_url=f"{server.url}/b.mp4",
            )
            rows = rows_of(batch_of(alice.post(NEW, many)))
            reads_for_eight_rows = server.hits - reads_for_one_row

        assert reads_for_one_row > 0
        assert reads_for_eight_rows == reads_for_one_row
        assert len(rows) == 8

    def test_a_video_link_that_fails_the_check_is_read_once_and_shown_once(
        self, alice, clips, small_limits, settings
    ):
        with serving(clips["long.mp4"]) as server:
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            one = lines_form("Only", video_source="video_url", video_url=f"{server.url}/a.mp4")
            alice.post(NEW, one)
            reads_for_one_row = server.hits
            many = lines_form(
                "One\nTwo\nThree\nFour",
                video_source="video_url",
                video_url=f"{server.url}/b.mp4",
            )
            response = alice.post(NEW, many)
            reads_for_four_rows = server.hits - reads_for_one_row

        assert response.status_code == 400
        assert field_errors(response, "video_url").count("This video is 12.0 s long") == 1
        assert problems_of(response) == []
        assert reads_for_four_rows == reads_for_one_row
        assert nothing_saved()


class TestBatchFromTable:
    def test_a_table_with_a_bom_and_commas_makes_one_row_per_line_after_the_header(self, alice):
        table = "\ufefftext,voice_speed\nHello Anna,1.2\nHello Ben,\n\n".encode()

        rows = rows_of(batch_of(alice.post(NEW, table_form(table))))

        assert [(job.batch_row, job.text) for job in rows] == [(1, "Hello Anna"), (2, "Hello Ben")]
        assert [str(job.voice_speed) for job in rows] == ["1.2", "1.0"]

    def test_a_table_separated_by_semicolons_is_read_too(self, alice):
        table = 'text;voice_language\n"Hello, Anna";en\n你好世界;zh\n'.encode()
        data = table_form(table, voice_id="genshin_vindi2")

        rows = rows_of(batch_of(alice.post(NEW, data)))

        assert [(job.text, job.voice_language) for job in rows] == [
            ("Hello, Anna", "en"),
            ("你好世界", "zh"),
        ]

    def test_columns_and_cells_not_given_take_the_page_fields(self, alice):
        table = b"video_id,text,voice_id\n111111111111111111,First,\n,Second,genshin_klee2\n"

        rows = rows_of(batch_of(alice.post(NEW, table_form(table))))

        assert [(job.video_id, job.voice_id, job.voice_language) for job in rows] == [
            ("111111111111111111", "genshin_vindi2", "en"),
            ("860327812345678901", "genshin_klee2", "en"),
        ]

    def test_a_row_with_its_own_link_replaces_the_page_video(
        self, alice, clips, small_limits, settings
    ):
        with serving(clips["face.mp4"]) as server:
            settings.MEDIA_FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{server.port}"]
            table = f"text,video_url\nFrom the link,{server.url}/c.mp4\nFrom the page,\n".encode()
            rows = rows_of(batch_of(alice.post(NEW, table_form(table))))

        assert [(job.video_url, job.video_id) for job in rows] == [
            (f"{server.url}/c.mp4", ""),
            ("", "860327812345678901"),
        ]
        assert rows[0].video_duration == pytest.approx(3.0, abs=0.1)

    def test_an_unknown_column_is_named_and_nothing_is_saved(self, alice):
        response = alice.post(NEW, table_form(b"text,colour\nHello,red\n", name="people.csv"))

        assert response.status_code == 400
        assert "Unknown column “colour”" in field_errors(response, "rows_csv")
        assert "“people.csv”" in unescape(response.content.decode())
        assert nothing_saved()

    def test_a_table_with_only_its_header_is_refused(self, alice):
        response = alice.post(NEW, table_form(b"text,voice_id\n"))

        assert response.status_code == 400
        assert "has a header but no rows" in field_errors(response, "rows_csv")
        assert nothing_saved()

    def test_a_table_that_is_not_utf8_is_refused_in_plain_words(self, alice):
        response = alice.post(NEW, table_form("text\nGrüße\n".encode("latin-1")))

        assert response.status_code == 400
        assert "not UTF-8" in field_errors(response, "rows_csv")
        assert nothing_saved()

    @pytest.mark.parametrize(
        "content", [b"", b"\n\n", b",\n,,\n"], ids=["no bytes", "blank lines", "empty cells"]
    )
    def test_an_empty_table_is_a_field_error(self, alice, content):
        response = alice.post(NEW, table_form(content))

        assert response.status_code == 400
        assert "empty" in field_errors(response, "rows_csv")
        assert nothing_saved()

    def test_no_lines_and_no_table_is_a_field_error(self, alice):
        response = alice.post(NEW, lines_form("  \n\n"))

        assert response.status_code == 400
        assert "at least one line" in field_errors(response, "lines")
        assert nothing_saved()


class TestRowErrors:
    def test_each_wrong_row_is_listed_by_number_and_field_and_nothing_is_saved(self, alice):
        too_long = "x" * 130
        typed = f"Fine\n{too_long}\nAlso fine\n"

        response = alice.post(NEW, lines_form(typed))

        assert response.status_code == 400
        assert problems_of(response) == [
            "Row 2, Text: Kling takes at most 120 characters; this text has 130."
        ]
        assert too_long in response.content.decode()  # the lines are kept as typed
        assert nothing_saved()

    def test_a_table_lists_each_row_by_its_number_after_the_header(self, alice):
        table = (
            b"text,voice_id,voice_language,voice_speed\n"
            b"Fine,AOT,en,1.0\n"
            b"Wrong language,AOT,zh,1.0\n"
            b"Too fast,AOT,en,3.0\n"
        )

        response = alice.post(NEW, table_form(table, name="greetings.csv"))

        assert response.status_code == 400
        problems = problems_of(response)
        assert len(problems) == 2
        assert problems[0] == "Row 2, Language: Ace does not speak Chinese; choose English."
        assert problems[1] == "Row 3, Speed: Choose a speed from 0.8 to 2.0."
        assert "“greetings.csv”" in unescape(response.content.decode())
        assert nothing_saved()

    def test_a_problem_every_row_shares_is_shown_once_next_to_its_field(self, alice):
        response = alice.post(NEW, lines_form("One\nTwo\nThree", voice_id=""))

        assert response.status_code == 400
        assert field_errors(response, "voice_id").count("Choose a voice.") == 1
        assert problems_of(response) == []
        assert nothing_saved()


class TestRowLimit:
    def test_more_rows_than_allowed_are_refused_with_the_number(self, alice, settings):
        settings.BATCH_MAX_ROWS = 3

        refused = alice.post(NEW, lines_form("1\n2\n3\n4"))
        allowed = alice.post(NEW, lines_form("1\n2\n3"))

        assert refused.status_code == 400
        assert "at most 3 rows; this one has 4" in field_errors(refused, "lines")
        assert len(rows_of(batch_of(allowed))) == 3
        assert Batch.objects.count() == 1

    def test_the_service_refuses_them_too(self, user, team, settings):
        settings.BATCH_MAX_ROWS = 2
        row = submitting.JobInput(
            mode="text2video", video_id="860327812345678901", text="Hi", voice_id="genshin_vindi2"
        )

        with pytest.raises(submitting.SubmissionRefused, match="at most 2 rows; this one has 3"):
            submitting.batch_create(
                team=team, created_by=user, rows=[row] * 3, submission_key=uuid.uuid4()
            )
        assert not Batch.objects.exists() and not Job.objects.exists()


class TestOneSubmission:
    def test_the_same_post_twice_makes_one_batch(self, alice):
        data = lines_form("One\nTwo")

        first = alice.post(NEW, data)
        second = alice.post(NEW, data, follow=True)

        assert second.redirect_chain[0][0] == first["Location"]
        assert "You already submitted this batch" in second.content.decode()
        assert Batch.objects.count() == 1
        assert Job.objects.count() == 2

    def test_the_service_returns_the_first_batch_for_the_same_key(self, user, team):
        row = submitting.JobInput(
            mode="text2video", video_id="860327812345678901", text="Hi", voice_id="genshin_vindi2"
        )
        key = uuid.uuid4()

        batch, created = submitting.batch_create(
            team=team, created_by=user, rows=[row, row], submission_key=key
        )
        again, created_again = submitting.batch_create(
            team=team, created_by=user, rows=[row, row], submission_key=key
        )

        assert (created, created_again) == (True, False)
        assert again == batch
        assert Job.objects.count() == 2

    def test_a_batch_counts_once_toward_the_per_minute_limit(self, alice, settings):
        settings.SUBMISSIONS_PER_MINUTE = 2

        batch = alice.post(NEW, lines_form("\n".join(f"Line {n}" for n in range(5))))
        single = alice.post(reverse("tasks:create"), TEXT_FORM)
        refused = alice.post(NEW, lines_form("One more"))

        assert len(rows_of(batch_of(batch))) == 5
        assert single.status_code == 302
        assert refused.status_code == 400
        assert "started 2 lip-syncs in the last minute" in unescape(refused.content.decode())
        assert Batch.objects.count() == 1

    def test_retries_of_rows_fit_the_limit_without_adding_to_it(self, alice, user, settings):
        settings.SUBMISSIONS_PER_MINUTE = 2
        batch = batch_of(alice.post(NEW, lines_form("One\nTwo\nThree")))
        first, second, third = [put_job(job, status=JobStatus.FAILED) for job in rows_of(batch)]

        retries = [submitting.job_retry(job=job, submitted_by=user) for job in (first, second)]
        single = alice.post(reverse("tasks:create"), TEXT_FORM)
        with pytest.raises(submitting.SubmissionRefused):
            submitting.job_retry(job=third, submitted_by=user)

        assert all(created and retry.batch == batch for retry, created in retries)
        assert single.status_code == 302  # the batch and this job: the limit is reached
        assert not Job.objects.filter(retry_of=third).exists()


class TestTemplateCsv:
    def test_the_template_is_a_csv_download_with_a_header_and_two_rows(self, alice):
        response = alice.get(reverse("tasks:batch_template"))

        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        assert response["Content-Disposition"].startswith("attachment;")
        records = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert records[0] == [
            "video_id",
            "video_url",
            "task_id",
            "mode",
            "text",
            "voice_id",
            "voice_language",
            "voice_speed",
            "audio_url",
        ]
        assert len(records) == 3

    def test_the_templates_header_is_one_the_page_accepts(self, alice):
        header = alice.get(reverse("tasks:batch_template")).content.decode("utf-8-sig")
        header = header.splitlines()[0]
        table = f"{header}\n,,,,Hello,,,,\n".encode()

        rows = rows_of(batch_of(alice.post(NEW, table_form(table))))

        assert [job.text for job in rows] == ["Hello"]


class TestTeams:
    def test_a_batch_is_made_in_the_persons_current_team_whatever_the_post_says(
        self, alice, user, team, other_team
    ):
        user.memberships.create(team=other_team)
        profile = Profile.objects.for_user(user)
        profile.current_team = other_team
        profile.save()

        batch = batch_of(alice.post(NEW, lines_form("One\nTwo", team=str(team.pk))))

        assert batch.team == other_team
        assert {job.team for job in rows_of(batch)} == {other_team}

    def test_another_team_sees_neither_the_batch_nor_its_rows(self, alice, bob, other_user):
        batch = batch_of(alice.post(NEW, lines_form("One\nTwo")))
        row = rows_of(batch)[0]

        assert alice.get(row.get_absolute_url()).status_code == 200
        assert bob.get(row.get_absolute_url()).status_code == 404
        assert bob.get(batch.get_absolute_url()).status_code == 404
        assert not Job.objects.visible_to(other_user).filter(batch=batch).exists()
        assert Job.objects.visible_to(batch.created_by).filter(batch=batch).count() == 2


class TestRetryOfARow:
    def test_a_retried_row_stays_in_its_batch_as_the_rows_next_attempt(self, alice, user):
        batch = batch_of(alice.post(NEW, lines_form("One\nTwo\nThree")))
        failed = put_job(rows_of(batch)[1], status=JobStatus.FAILED)

        retry, created = submitting.job_retry(job=failed, submitted_by=user)

        assert created
        assert (retry.batch, retry.batch_row, retry.retry_of) == (batch, 2, failed)
        assert retry.text == "Two"
        assert batch.jobs.count() == 4
