"""The staff side in Django admin: seeing, searching, reviewing and acting on every job.

Jobs are made through the studio's services; anything Kling does happens in the simulator
over real HTTP and reaches the jobs through the real worker.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.forms import MultiWidget
from django.http import StreamingHttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from factories import make_job, make_member, put_job

from tasks_app import review
from tasks_app.models import Job, JobStatus, Membership, ReviewState, TeamRole

pytestmark = pytest.mark.django_db

JOBS_URL = reverse("admin:tasks_app_job_changelist")
NOFACE_URL = "https://videos.example.com/noface-clip.mp4"


def listed(response) -> list[int]:
    assert response.status_code == 200
    return [job.pk for job in response.context["cl"].result_list]


def run_action(client: Client, action: str, jobs: list[Job], *, follow: bool = False):
    data = {"action": action, "_selected_action": [job.pk for job in jobs]}
    return client.post(JOBS_URL, data, follow=follow)


def change_form_data(response) -> dict:
    """What a browser would send back from an admin change page, as Django rendered it."""
    data = {}
    form = response.context["adminform"].form
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if isinstance(field.widget, MultiWidget):  # a date and a time, say
            for index, part in enumerate(field.widget.decompress(value) or []):
                data[f"{name}_{index}"] = "" if part is None else part
        else:
            data[name] = "" if value is None else value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management.initial.get(name)
        for row in formset.forms:
            for name in row.fields:
                value = row.initial.get(name)
                if value is not None:
                    data[row.add_prefix(name)] = getattr(value, "pk", value)
            if row.instance.pk is not None:  # the row's own id is not among its initial data
                data[row.add_prefix(row.instance._meta.pk.name)] = row.instance.pk
    return data


class TestAdminPages:
    @pytest.fixture
    def pages(self, user, team) -> list[str]:
        job = make_job(user)
        membership = Membership.objects.get(user=user)
        return [
            JOBS_URL,
            reverse("admin:tasks_app_job_change", args=[job.pk]),
            reverse("admin:tasks_app_team_changelist"),
            reverse("admin:tasks_app_team_change", args=[team.pk]),
            reverse("admin:tasks_app_team_add"),
            reverse("admin:tasks_app_membership_changelist"),
            reverse("admin:tasks_app_membership_change", args=[membership.pk]),
            reverse("admin:tasks_app_membership_add"),
            reverse("admin:auth_user_changelist"),
            reverse("admin:auth_user_change", args=[user.pk]),
            reverse("admin:auth_user_add"),
        ]

    def test_every_page_loads_for_a_superuser(self, admin_client, pages):
        for url in pages:
            assert admin_client.get(url).status_code == 200, url

    def test_every_page_sends_a_person_without_staff_status_to_the_admin_login(self, alice, pages):
        login = reverse("admin:login")
        for url in pages:
            response = alice.get(url)
            assert response.status_code == 302, url
            assert response.url.startswith(f"{login}?next="), url

    def test_jobs_cannot_be_added_in_the_admin(self, admin_client):
        assert admin_client.get(reverse("admin:tasks_app_job_add")).status_code == 403

    def test_jobs_cannot_be_deleted_in_the_admin(self, admin_client, user):
        job = make_job(user)
        response = admin_client.get(reverse("admin:tasks_app_job_delete", args=[job.pk]))
        assert response.status_code == 403
        actions = admin_client.get(JOBS_URL).context["action_form"].fields["action"].choices
        assert "delete_selected" not in dict(actions)


class TestJobList:
    def test_it_shows_status_team_submitter_voice_text_and_credits(self, admin_client, user):
        job = make_job(user, text="A greeting for the launch video")
        Job.objects.filter(pk=job.pk).update(credits=Decimal("5.00"))
        page = admin_client.get(JOBS_URL).content.decode()
        assert 'class="job-badge job-badge--pending"' in page
        assert "Studio A" in page
        assert "alice" in page
        assert "Sunny" in page  # genshin_vindi2's display name
        assert "A greeting for the launch video" in page
        assert "5.00" in page
        assert "admin_extra/admin.css" in page

    def test_its_query_count_does_not_grow_with_the_number_of_jobs(
        self, admin_client, user, other_user, other_team
    ):
        make_job(user)
        make_job(other_user)
        admin_client.get(JOBS_URL)  # warm up: sessions, content types
        with CaptureQueriesContext(connection) as few:
            assert len(listed(admin_client.get(JOBS_URL))) == 2
        for index in range(28):
            person = user if index % 2 else other_user
            # Written as stored jobs: the service would refuse a person's 11th job a minute.
            make_job(person, status=JobStatus.PENDING, text=f"Line {index}")
        Job.objects.filter(text="Line 3").update(credits=Decimal("3"))
        with CaptureQueriesContext(connection) as many:
            assert len(listed(admin_client.get(JOBS_URL))) == 30
        assert len(many.captured_queries) == len(few.captured_queries)

    def test_the_stuck_view_also_costs_a_constant_number_of_queries(
        self, admin_client, user, settings, django_assert_max_num_queries
    ):
        long_ago = timezone.now() - timedelta(minutes=settings.KLING_SLOW_AFTER_MINUTES + 1)
        stuck = [make_job(user, status=JobStatus.PENDING, created_at=long_ago) for _ in range(2)]
        make_job(user)  # waiting, but not for long: not stuck
        admin_client.get(JOBS_URL)  # warm up: sessions, content types
        with CaptureQueriesContext(connection) as few:
            response = admin_client.get(JOBS_URL, {"stuck": "unsent"})
        assert sorted(listed(response)) == sorted(job.pk for job in stuck)

        stuck += [
            make_job(user, status=JobStatus.PENDING, created_at=long_ago, text=f"Line {index}")
            for index in range(28)
        ]
        with django_assert_max_num_queries(15), CaptureQueriesContext(connection) as many:
            response = admin_client.get(JOBS_URL, {"stuck": "unsent"})

        assert sorted(listed(response)) == sorted(job.pk for job in stuck)
        assert "Kling&#x27;s last answer" in response.content.decode()
        assert len(many.captured_queries) == len(few.captured_queries)


class TestJobFilters:
    @pytest.fixture
    def jobs(self, user, other_user, other_team) -> dict[str, Job]:
        text = make_job(user, text="Text job")
        audio = make_job(
            other_user,
            mode="audio2video",
            text="",
            voice_id="",
            voice_language="",
            voice_speed=None,
            audio_url="https://audio.example.com/song.mp3",
        )
        chinese = make_job(
            user,
            status=JobStatus.FAILED,
            created_at=datetime(2024, 3, 10, tzinfo=UTC),
            text="你好",
            voice_id="ai_shatang",
            voice_language="zh",
        )
        review.job_review(job=audio, reviewer=other_user, state=ReviewState.FLAGGED)
        return {"text": text, "audio": audio, "chinese": chinese}

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"status__exact": "failed"}, ["chinese"]),
            ({"status__exact": "pending"}, ["audio", "text"]),
            ({"mode__exact": "audio2video"}, ["audio"]),
            ({"voice_language__exact": "zh"}, ["chinese"]),
            ({"review_state__exact": "flagged"}, ["audio"]),
            ({"review_state__exact": "not_reviewed"}, ["chinese", "text"]),
            ({"created_at__year": "2024", "created_at__month": "3"}, ["chinese"]),
        ],
    )
    def test_each_field_filter_finds_its_rows(self, admin_client, jobs, params, expected):
        found = listed(admin_client.get(JOBS_URL, params))
        assert sorted(found) == sorted(jobs[name].pk for name in expected)

    def test_the_team_and_submitter_filters_find_their_rows(
        self, admin_client, jobs, other_team, user
    ):
        by_team = listed(admin_client.get(JOBS_URL, {"team__id__exact": other_team.pk}))
        assert by_team == [jobs["audio"].pk]
        by_person = listed(admin_client.get(JOBS_URL, {"submitted_by__id__exact": user.pk}))
        assert sorted(by_person) == sorted([jobs["text"].pk, jobs["chinese"].pk])


class TestStuckFilter:
    def test_it_lists_active_jobs_sent_long_ago_with_klings_last_answer(
        self, admin_client, user, kling, worker, settings
    ):
        stuck, _recent, finished = make_job(user), make_job(user), make_job(user)
        worker()
        assert kling.created_count == 3
        long_ago = timezone.now() - timedelta(minutes=settings.KLING_SLOW_AFTER_MINUTES + 5)
        Job.objects.filter(pk__in=[stuck.pk, finished.pk]).update(sent_at=long_ago)
        put_job(finished, status=JobStatus.SUCCEEDED)

        response = admin_client.get(JOBS_URL, {"stuck": "kling"})

        assert listed(response) == [stuck.pk]
        page = response.content.decode()
        assert "Kling&#x27;s last answer" in page
        assert "<strong>submitted</strong>" in page

    def test_it_lists_jobs_the_worker_never_sent(self, admin_client, user, settings):
        waiting, fresh = make_job(user), make_job(user)
        long_ago = timezone.now() - timedelta(minutes=settings.KLING_SLOW_AFTER_MINUTES + 1)
        Job.objects.filter(pk=waiting.pk).update(created_at=long_ago)

        assert listed(admin_client.get(JOBS_URL, {"stuck": "unsent"})) == [waiting.pk]
        assert fresh.pk in listed(admin_client.get(JOBS_URL))

    def test_its_column_is_not_shown_without_the_filter(self, admin_client, user):
        make_job(user)
        assert "Kling&#x27;s last answer" not in admin_client.get(JOBS_URL).content.decode()


class TestJobSearch:
    @pytest.fixture
    def jobs(self, user, other_user, kling, worker) -> tuple[Job, Job]:
        mine = make_job(user, text="Welcome to the spring sale")
        theirs = make_job(
            other_user, video_id="", video_url="https://videos.example.com/bob-intro.mp4"
        )
        worker()
        mine.refresh_from_db()
        theirs.refresh_from_db()
        assert mine.kling_task_id and theirs.kling_task_id
        Job.objects.filter(pk=mine.pk).update(
            kling_request_id="req-7731",
            result_video_url="https://cdn.example.com/result-55.mp4",
        )
        return mine, theirs

    @pytest.mark.parametrize(
        ("term", "expect_mine"),
        [
            ("spring sale", True),
            ("req-7731", True),
            ("860327812345678901", True),
            ("result-55", True),
            ("alice", True),
            ("bob-intro", False),
            ("bob", False),
        ],
    )
    def test_it_finds_jobs_by_text_ids_links_and_submitter(
        self, admin_client, jobs, term, expect_mine
    ):
        mine, theirs = jobs
        assert listed(admin_client.get(JOBS_URL, {"q": term})) == [
            mine.pk if expect_mine else theirs.pk
        ]

    def test_it_finds_a_job_by_its_kling_task_id(self, admin_client, jobs):
        mine, _theirs = jobs
        assert listed(admin_client.get(JOBS_URL, {"q": mine.kling_task_id})) == [mine.pk]

    def test_it_finds_a_job_by_its_number(self, admin_client, jobs):
        _mine, theirs = jobs
        assert theirs.pk in listed(admin_client.get(JOBS_URL, {"q": f"#{theirs.pk}"}))

    @pytest.mark.parametrize("term", ["²", "#²", "1²", "٣", "99999999999999999999999999"])
    def test_digits_that_are_no_job_number_find_nothing_instead_of_failing(
        self, admin_client, user, term
    ):
        make_job(user)
        assert listed(admin_client.get(JOBS_URL, {"q": term})) == []


class TestJobChangePage:
    def test_it_shows_the_timeline_and_links_to_the_results_and_the_studio(
        self, admin_client, user, kling, sim_clock, worker
    ):
        job = make_job(user)
        worker()
        sim_clock.advance(15)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        Job.objects.filter(pk=job.pk).update(stored_video="results/2025/01/copy.mp4")

        page = admin_client.get(reverse("admin:tasks_app_job_change", args=[job.pk]))
        html = page.content.decode()

        assert f'href="{job.get_absolute_url()}"' in html
        assert job.result_video_url.replace("&", "&amp;") in html
        assert f'href="{reverse("tasks:video", args=[job.pk])}"' in html
        assert "/media/" not in html
        assert "Kling finished the video" in html  # the last JobEvent
        timeline = page.context["inline_admin_formsets"][0]
        assert not timeline.has_add_permission
        assert not timeline.has_delete_permission
        assert not timeline.has_change_permission

    def test_its_links_to_the_stored_files_open_them(self, admin_client, user, wav_bytes):
        job = make_job(
            user,
            mode="audio2video",
            audio_upload=SimpleUploadedFile("voice.html", wav_bytes),
            audio_name="voice.html",
        )
        video = default_storage.save("results/copy.mp4", ContentFile(b"\x00\x00\x00\x18ftypmp42"))
        put_job(job, status=JobStatus.SUCCEEDED, stored_video=video, stored_size=16)

        page = admin_client.get(reverse("admin:tasks_app_job_change", args=[job.pk]))
        html = page.content.decode()
        links = dict(
            (label, href) for href, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', html)
        )

        assert "/media/" not in html
        for label in ("Studio copy of the result", "studio copy", "Download the audio"):
            response = admin_client.get(links[label])
            assert response.status_code == 200, label
            assert response["X-Content-Type-Options"] == "nosniff"
        audio = admin_client.get(links["Download the audio"])
        assert audio["Content-Type"] == "audio/wav"
        assert audio.getvalue() == wav_bytes

    @pytest.mark.parametrize(
        "url",
        [
            "http://cdn.example.com/result.mp4",
            "javascript:alert(document.cookie)",
            "ftp://cdn.example.com/result.mp4",
        ],
    )
    def test_klings_result_link_is_text_unless_it_is_https(self, admin_client, user, url):
        job = make_job(user, status=JobStatus.SUCCEEDED, result_video_url=url)

        page = admin_client.get(reverse("admin:tasks_app_job_change", args=[job.pk]))
        html = page.content.decode()

        assert url.replace("&", "&amp;") in html  # shown, for staff to inspect
        assert f'href="{url}"' not in html
        assert "Result video on Kling" not in html

    def test_klings_https_result_link_is_a_link(self, admin_client, user):
        url = "https://cdn.example.com/result.mp4?a=1&b=2"
        job = make_job(user, status=JobStatus.SUCCEEDED, result_video_url=url)

        html = admin_client.get(reverse("admin:tasks_app_job_change", args=[job.pk])).content
        html_text = html.decode()

        assert html_text.count(f'href="{url.replace("&", "&amp;")}"') == 2
        assert "Result video on Kling" in html_text

    def test_saving_it_records_the_review_and_changes_nothing_else(
        self, admin_client, admin_user, user
    ):
        job = make_job(user, text="Original words")
        url = reverse("admin:tasks_app_job_change", args=[job.pk])
        data = change_form_data(admin_client.get(url))
        assert set(data) & {"text", "status", "credits"} == set()
        data |= {
            "review_state": ReviewState.FLAGGED,
            "review_note": "Logo in frame",
            "text": "Changed",
        }

        response = admin_client.post(url, data)

        assert response.status_code == 302, response.context["adminform"].form.errors
        job.refresh_from_db()
        assert job.review_state == ReviewState.FLAGGED
        assert job.review_note == "Logo in frame"
        assert job.reviewed_by == admin_user
        assert job.reviewed_at is not None
        assert job.text == "Original words"

    def test_saving_it_untouched_signs_no_review(self, admin_client, user):
        job = make_job(user)
        url = reverse("admin:tasks_app_job_change", args=[job.pk])
        response = admin_client.post(url, change_form_data(admin_client.get(url)))
        assert response.status_code == 302
        job.refresh_from_db()
        assert job.reviewed_by is None
        assert job.reviewed_at is None


class TestReviewActions:
    @pytest.mark.parametrize(
        ("action", "state"), [("approve", ReviewState.APPROVED), ("flag", ReviewState.FLAGGED)]
    )
    def test_it_sets_the_state_the_reviewer_and_the_time(
        self, admin_client, admin_user, user, action, state
    ):
        chosen, other = make_job(user), make_job(user)
        review.job_review(job=chosen, reviewer=user, state=ReviewState.FLAGGED, note="Keep me")
        before = timezone.now()

        response = run_action(admin_client, action, [chosen])

        assert response.status_code == 302
        chosen.refresh_from_db()
        other.refresh_from_db()
        assert chosen.review_state == state
        assert chosen.reviewed_by == admin_user
        assert chosen.reviewed_at is not None
        assert chosen.reviewed_at >= before
        assert chosen.review_note == "Keep me"
        assert other.review_state == ReviewState.NOT_REVIEWED
        assert other.reviewed_by is None

    def test_staff_with_the_job_permissions_only_can_approve(self, client, user):
        staff = make_member("sam", is_staff=True)
        staff.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label="tasks_app",
                codename__in=["view_job", "change_job", "review_job"],
            )
        )
        client.force_login(staff)
        job = make_job(user)

        run_action(client, "approve", [job])

        job.refresh_from_db()
        assert (job.review_state, job.reviewed_by) == (ReviewState.APPROVED, staff)


class TestWhoSeesWhichJobs:
    """The admin follows the studio's rule: other teams' jobs need ``review_job``."""

    @pytest.fixture
    def jobs(self, user, other_user) -> tuple[Job, Job]:
        return make_job(user, text="Ours"), make_job(other_user, text="Theirs")

    def staff(self, client: Client, team, *codenames: str) -> Client:
        person = make_member("sam", team, is_staff=True)
        person.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="tasks_app", codename__in=codenames)
        )
        client.force_login(person)
        return client

    def test_staff_without_the_view_permission_gets_403(self, client, team, jobs):
        staff = self.staff(client, team)
        assert staff.get(JOBS_URL).status_code == 403

    def test_the_view_permission_alone_shows_their_own_teams_jobs(self, client, team, jobs):
        ours, theirs = jobs
        staff = self.staff(client, team, "view_job", "change_job")

        assert listed(staff.get(JOBS_URL)) == [ours.pk]
        assert staff.get(reverse("admin:tasks_app_job_change", args=[ours.pk])).status_code == 200
        other_page = staff.get(reverse("admin:tasks_app_job_change", args=[theirs.pk]))
        assert other_page.status_code == 302  # the admin's "does not exist"
        run_action(staff, "approve", [theirs])
        theirs.refresh_from_db()
        assert theirs.review_state == ReviewState.NOT_REVIEWED

    def test_a_reviewer_sees_and_opens_every_teams_jobs(self, client, team, jobs):
        ours, theirs = jobs
        staff = self.staff(client, team, "view_job", "review_job")

        assert sorted(listed(staff.get(JOBS_URL))) == sorted([ours.pk, theirs.pk])
        page = staff.get(reverse("admin:tasks_app_job_change", args=[theirs.pk]))
        assert page.status_code == 200
        # And the page's link to the studio opens for them too.
        assert staff.get(theirs.get_absolute_url()).status_code == 200

    def test_the_review_permission_without_the_view_permission_opens_no_admin_list(
        self, client, team, jobs
    ):
        staff = self.staff(client, team, "review_job")
        assert staff.get(JOBS_URL).status_code == 403


class TestRefreshAction:
    def test_it_schedules_a_check_and_the_worker_follows_kling(
        self, admin_client, user, kling, sim_clock, worker
    ):
        job = make_job(user)
        worker()
        job.refresh_from_db()
        assert job.status == JobStatus.SENT
        regular_check = job.next_check_at
        queries = kling.query_count

        sim_clock.advance(4)
        response = run_action(admin_client, "refresh_from_kling", [job], follow=True)

        assert "Scheduled a check with Kling for 1 job." in response.content.decode()
        job.refresh_from_db()
        assert job.next_check_at is not None and regular_check is not None
        assert job.next_check_at < regular_check
        # Only the check the action scheduled is due yet; the regular one is seconds away.
        assert worker() == 1
        job.refresh_from_db()
        assert job.status == JobStatus.PROCESSING
        assert kling.query_count == queries + 1

        sim_clock.advance(11)
        run_action(admin_client, "refresh_from_kling", [job])
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED
        assert kling.query_count > queries + 1

    def test_it_skips_jobs_that_are_finished_or_not_sent_and_says_so(self, admin_client, user):
        pending = make_job(user)
        response = run_action(admin_client, "refresh_from_kling", [pending], follow=True)
        assert "1 was skipped" in response.content.decode()


class TestRetryAction:
    @pytest.fixture
    def failed(self, user, kling, sim_clock, worker) -> Job:
        job = make_job(user, video_id="", video_url=NOFACE_URL)
        worker()
        sim_clock.advance(14)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        return job

    def test_it_starts_one_new_job_per_failed_job_for_the_original_submitter(
        self, admin_client, user, teammate, team, failed, kling, worker
    ):
        pending = make_job(teammate)
        created_before = kling.created_count

        run_action(admin_client, "retry_failed", [failed, pending])
        run_action(admin_client, "retry_failed", [failed])  # a second click changes nothing

        retries = list(Job.objects.filter(retry_of__isnull=False))
        assert [r.retry_of_id for r in retries] == [failed.pk]
        new = retries[0]
        assert new.submitted_by == user
        assert new.team == team
        assert new.video_url == NOFACE_URL
        assert Job.objects.filter(retry_of=pending).count() == 0

        worker()
        new.refresh_from_db()
        assert new.status == JobStatus.SENT
        # The retry and the pending teammate's job were both sent, each once.
        assert kling.created_count == created_before + 2

    def test_it_reports_what_it_did(self, admin_client, failed, user):
        response = run_action(admin_client, "retry_failed", [failed], follow=True)
        assert "Started 1 new job." in response.content.decode()
        response = run_action(admin_client, "retry_failed", [failed], follow=True)
        assert "1 had been retried already." in response.content.decode()


class TestCsvExport:
    def test_it_streams_the_selected_jobs_with_their_inputs_statuses_and_credits(
        self, admin_client, user, other_user
    ):
        created_at = timezone.now() - timedelta(minutes=5)
        finished_at = created_at + timedelta(seconds=42)
        chosen = make_job(
            user,
            status=JobStatus.SUCCEEDED,
            text="=HYPERLINK(evil)",
            credits=Decimal("5.00"),
            created_at=created_at,
            finished_at=finished_at,
        )
        make_job(other_user, text="Not selected")

        response = run_action(admin_client, "export_csv", [chosen])

        assert isinstance(response, StreamingHttpResponse)
        assert response["Content-Type"].startswith("text/csv")
        assert "attachment" in response["Content-Disposition"]
        body = response.getvalue().decode()
        rows = list(csv.DictReader(io.StringIO(body)))
        assert len(rows) == 1
        row = rows[0]
        assert row["id"] == str(chosen.pk)
        assert row["team"] == "Studio A"
        assert row["submitted_by"] == "alice"
        assert row["mode"] == "text2video"
        assert row["video_id"] == "860327812345678901"
        # A cell that would run as a spreadsheet formula is defused.
        assert row["text"] == "'=HYPERLINK(evil)"
        assert row["voice_name"] == "Sunny"
        assert row["status"] == "succeeded"
        assert row["credits"] == "5.00"
        assert row["duration_seconds"] == "42"
        assert row["finished_at"] == finished_at.isoformat()
        assert row["review_state"] == "not_reviewed"


class TestTeamAdmin:
    def test_its_page_shows_jobs_successes_and_credits_per_month(self, admin_client, team, user):
        january, february = datetime(2025, 1, 5, tzinfo=UTC), datetime(2025, 2, 7, tzinfo=UTC)
        make_job(user, created_at=january, status=JobStatus.SUCCEEDED, credits=Decimal("5"))
        make_job(user, created_at=february, status=JobStatus.SUCCEEDED, credits=Decimal("2.5"))
        make_job(user, created_at=february, status=JobStatus.FAILED)

        page = admin_client.get(reverse("admin:tasks_app_team_change", args=[team.pk]))
        html = page.content.decode().replace("\n", "")

        assert "<tr><td>2025-02</td><td>2</td><td>1</td><td>2.50</td></tr>" in html
        assert "<tr><td>2025-01</td><td>1</td><td>1</td><td>5.00</td></tr>" in html
        assert "<tr><th>Total</th><th>3</th><th>2</th><th>7.50</th></tr>" in html

    def test_the_monthly_totals_take_one_query(self, team, user, django_assert_num_queries):
        make_job(user)
        with django_assert_num_queries(1):
            usage = review.team_monthly_usage(team=team)
        assert [(m.jobs, m.succeeded, m.credits) for m in usage] == [(1, 0, Decimal("0"))]

    def test_a_member_can_be_added_on_its_page(self, admin_client, team, other_user):
        url = reverse("admin:tasks_app_team_change", args=[team.pk])
        data = change_form_data(admin_client.get(url))
        total = int(data["memberships-TOTAL_FORMS"])
        data |= {
            "memberships-TOTAL_FORMS": total + 1,
            f"memberships-{total}-user": other_user.pk,
            f"memberships-{total}-role": TeamRole.ADMIN,
        }

        response = admin_client.post(url, data)

        assert response.status_code == 302
        assert Membership.objects.get(team=team, user=other_user).role == TeamRole.ADMIN


class TestUserAdmin:
    def test_a_persons_page_lists_and_edits_their_teams(self, admin_client, user, other_team):
        url = reverse("admin:auth_user_change", args=[user.pk])
        page = admin_client.get(url)
        assert "Studio A" in page.content.decode()

        data = change_form_data(page)
        total = int(data["memberships-TOTAL_FORMS"])
        data |= {
            "memberships-TOTAL_FORMS": total + 1,
            f"memberships-{total}-team": other_team.pk,
            f"memberships-{total}-role": TeamRole.MEMBER,
        }
        response = admin_client.post(url, data)

        assert response.status_code == 302
        assert set(user.teams.values_list("name", flat=True)) == {"Studio A", "Studio B"}


class TestReviewService:
    def test_going_back_to_not_reviewed_clears_the_reviewer(self, user):
        job = make_job(user)
        review.job_review(job=job, reviewer=user, state=ReviewState.APPROVED)
        review.job_review(job=job, reviewer=user, state=ReviewState.NOT_REVIEWED, note="Redo")
        job.refresh_from_db()
        assert (job.reviewed_by, job.reviewed_at, job.review_note) == (None, None, "Redo")

    def test_an_unknown_state_is_refused(self, user):
        with pytest.raises(ValueError, match="Unknown review state"):
            review.job_review(job=make_job(user), reviewer=user, state="maybe")
