"""The history page: search, filters kept in the URL, htmx partials, paging, counts, live rows."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from factories import make_job, rows

from tasks_app.models import Job, JobMode, JobStatus, Membership

pytestmark = pytest.mark.django_db

DONE = {"status": JobStatus.SUCCEEDED}


class TestSearch:
    @pytest.mark.parametrize(
        ("wanted", "other", "query"),
        [
            ({"text": "Welcome to the spring sale"}, {"text": "Goodbye everybody"}, "spring SALE"),
            ({"voice_id": "genshin_vindi2"}, {"voice_id": "zhinen_xuesheng"}, "sunny"),
            ({"voice_id": "genshin_vindi2"}, {"voice_id": "zhinen_xuesheng"}, "genshin_vindi2"),
            ({"video_id": "860327899999999999"}, {}, "899999999"),
            ({"video_url": "https://videos.example/summer/clip-42.mp4"}, {}, "summer/clip-42"),
            (
                {"kling_task_id": "771234567890123456"},
                {"kling_task_id": "779999999999999999"},
                "771234567890123456",
            ),
        ],
        ids=[
            "the spoken text",
            "a voice by its display name",
            "a voice by its id",
            "the source video id",
            "the source video link",
            "the kling task id",
        ],
    )
    def test_finds_a_job_by(self, alice, user, wanted, other, query):
        match = make_job(user, status=JobStatus.SUCCEEDED, **wanted)
        make_job(user, status=JobStatus.SUCCEEDED, **other)

        assert rows(alice.get("/tasks/", {"q": query})) == [match.pk]

    def test_an_empty_result_says_nothing_matches(self, alice, user):
        make_job(user, status=JobStatus.SUCCEEDED)

        response = alice.get("/tasks/", {"q": "nothing like this"})

        assert rows(response) == []
        assert "No job matches these filters." in response.content.decode()


class TestFilters:
    @pytest.mark.parametrize(
        ("wanted", "other", "params"),
        [
            ({"status": JobStatus.FAILED}, DONE, {"status": "failed"}),
            (DONE | {"mode": JobMode.AUDIO}, DONE, {"mode": "audio2video"}),
            (DONE | {"voice_language": "zh"}, DONE | {"voice_language": "en"}, {"language": "zh"}),
        ],
        ids=["status", "mode", "language"],
    )
    def test_by(self, alice, user, wanted, other, params):
        match = make_job(user, **wanted)
        make_job(user, **other)

        assert rows(alice.get("/tasks/", params)) == [match.pk]

    def test_by_submitter(self, alice, user, teammate):
        carols = make_job(teammate, status=JobStatus.SUCCEEDED)
        make_job(user, status=JobStatus.SUCCEEDED)

        assert rows(alice.get("/tasks/", {"submitter": teammate.pk})) == [carols.pk]

    def test_the_submitter_choices_are_the_teams_people_only(self, alice, user, other_user):
        response = alice.get("/tasks/")

        choices = dict(response.context["filters"].fields["submitter"].choices)
        assert str(user.pk) in choices
        assert str(other_user.pk) not in choices

    def test_by_date_range(self, alice, user):
        zone = timezone.get_current_timezone()
        make_job(
            user, status=JobStatus.SUCCEEDED, created_at=datetime(2025, 3, 1, 23, 0, tzinfo=zone)
        )
        first = make_job(
            user, status=JobStatus.SUCCEEDED, created_at=datetime(2025, 3, 2, 0, 0, tzinfo=zone)
        )
        last = make_job(
            user, status=JobStatus.SUCCEEDED, created_at=datetime(2025, 3, 4, 23, 59, tzinfo=zone)
        )
        make_job(
            user, status=JobStatus.SUCCEEDED, created_at=datetime(2025, 3, 5, 0, 1, tzinfo=zone)
        )

        response = alice.get("/tasks/", {"date_from": "2025-03-02", "date_to": "2025-03-04"})

        assert rows(response) == [last.pk, first.pk]

    def test_combined_filters_all_apply(self, alice, user, teammate):
        wanted = make_job(teammate, status=JobStatus.FAILED, voice_language="zh", text="Sale")
        make_job(teammate, status=JobStatus.FAILED, voice_language="en", text="Sale")
        make_job(teammate, status=JobStatus.SUCCEEDED, voice_language="zh", text="Sale")
        make_job(user, status=JobStatus.FAILED, voice_language="zh", text="Sale")
        make_job(teammate, status=JobStatus.FAILED, voice_language="zh", text="Other")

        response = alice.get(
            "/tasks/",
            {"q": "sale", "status": "failed", "submitter": teammate.pk, "language": "zh"},
        )

        assert rows(response) == [wanted.pk]

    def test_an_invalid_filter_value_is_ignored_not_an_error(self, alice, user):
        job = make_job(user, status=JobStatus.SUCCEEDED)

        response = alice.get("/tasks/", {"status": "bogus", "date_from": "yesterday"})

        assert response.status_code == 200
        assert job.pk in rows(response)

    def test_only_the_current_teams_jobs_are_listed(self, alice, user, other_user):
        mine = make_job(user, status=JobStatus.SUCCEEDED)
        make_job(other_user, status=JobStatus.SUCCEEDED)

        assert rows(alice.get("/tasks/")) == [mine.pk]


class TestArchivedJobs:
    def test_are_hidden_by_default(self, alice, user):
        kept = make_job(user, status=JobStatus.SUCCEEDED)
        make_job(user, status=JobStatus.SUCCEEDED, archived_at=timezone.now())

        assert rows(alice.get("/tasks/")) == [kept.pk]

    def test_are_shown_with_archived_1(self, alice, user):
        kept = make_job(user, status=JobStatus.SUCCEEDED)
        archived = make_job(user, status=JobStatus.SUCCEEDED, archived_at=timezone.now())

        response = alice.get("/tasks/", {"archived": "1"})

        assert sorted(rows(response)) == sorted([kept.pk, archived.pk])
        assert "Archived" in response.content.decode()


class TestTheFilterStateInTheUrl:
    def test_the_form_shows_the_current_filters(self, alice, user):
        make_job(user, status=JobStatus.SUCCEEDED)

        page = alice.get("/tasks/", {"q": "Sunny", "status": "failed"}).content.decode()

        assert re.search(r'<input type="search" name="q" value="Sunny"', page)
        assert re.search(r'<option value="failed" selected>', page)

    def test_the_quick_filter_links_keep_the_other_filters(self, alice, user):
        make_job(user, status=JobStatus.FAILED, text="Sale one")

        page = alice.get("/tasks/", {"q": "Sale", "language": "en"}).content.decode()

        assert 'href="?q=Sale&amp;language=en&amp;status=failed"' in page

    def test_pagination_links_keep_the_search(self, alice, user):
        for _ in range(55):
            make_job(user, status=JobStatus.SUCCEEDED, text="Sale announcement")
        make_job(user, status=JobStatus.SUCCEEDED, text="Something else")

        first = alice.get("/tasks/", {"q": "Sale"})
        second = alice.get("/tasks/", {"q": "Sale", "page": "2"})

        assert len(rows(first)) == 50
        assert 'href="?q=Sale&amp;page=2"' in first.content.decode()
        assert len(rows(second)) == 5
        assert 'href="?q=Sale&amp;page=1"' in second.content.decode()
        assert not set(rows(first)) & set(rows(second))


class TestPaging:
    def test_shows_50_jobs_a_page_newest_first(self, alice, user):
        jobs = [make_job(user, status=JobStatus.SUCCEEDED) for _ in range(51)]

        response = alice.get("/tasks/")

        assert rows(response) == [job.pk for job in reversed(jobs[1:])]
        assert "Page 1" in response.content.decode()
        assert 'href="?page=2"' in response.content.decode()
        second = alice.get("/tasks/", {"page": "2"})
        assert rows(second) == [jobs[0].pk]
        assert 'href="?page=3"' not in second.content.decode()
        assert 'href="?page=1"' in second.content.decode()

    def test_a_page_number_past_the_end_says_so_and_leads_back(self, alice, user):
        make_job(user, status=JobStatus.SUCCEEDED)

        response = alice.get("/tasks/", {"page": "99"})

        assert rows(response) == []
        assert "There are no more jobs on this page." in response.content.decode()
        assert 'href="?page=98"' in response.content.decode()

    @pytest.mark.parametrize("number", ["0", "-1", "abc", "1.5", "²", "9" * 30, "9" * 5000])
    def test_anything_but_a_page_number_shows_the_first_page(self, alice, user, number):
        job = make_job(user, status=JobStatus.SUCCEEDED)

        response = alice.get("/tasks/", {"page": number})

        assert response.status_code == 200
        assert rows(response) == [job.pk]


class TestHtmxRequests:
    def test_a_request_for_the_results_returns_only_the_results_partial(self, alice, user):
        job = make_job(user, status=JobStatus.SUCCEEDED, text="Sale")

        response = alice.get(
            "/tasks/", {"q": "Sale"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="job-results"
        )

        body = response.content.decode()
        assert response.status_code == 200
        assert "<html" not in body
        assert 'role="search"' not in body  # the filter form stays as it is on the page
        assert body.lstrip().startswith('<section id="job-results"')
        assert rows(response) == [job.pk]

    def test_a_plain_request_returns_the_whole_page(self, alice, user):
        make_job(user, status=JobStatus.SUCCEEDED)

        body = alice.get("/tasks/").content.decode()

        assert "<html" in body
        assert 'id="job-results"' in body


def counts(response) -> list[tuple[str, str, int]]:
    return [(c.status, str(c.label), c.count) for c in response.context["status_counts"]]


def copies_of(job: Job, n: int) -> None:
    """``n`` more jobs like ``job``, in one query (a team's long history)."""
    fields = {
        f.attname: getattr(job, f.attname) for f in Job._meta.concrete_fields if not f.primary_key
    }
    fields |= {"kling_task_id": None}
    Job.objects.bulk_create([Job(**fields | {"submission_key": uuid.uuid4()}) for _ in range(n)])


class TestQuickFilterCounts:
    def test_finished_jobs_are_counted_up_to_a_hundred(self, alice, user):
        copies_of(make_job(user, status=JobStatus.SUCCEEDED), 100)
        copies_of(make_job(user, status=JobStatus.FAILED), 99)
        copies_of(make_job(user, status=JobStatus.PROCESSING), 120)

        response = alice.get("/tasks/")

        assert counts(response) == [
            ("processing", "Processing", 121),  # running jobs: exact
            ("succeeded", "Ready", 101),
            ("failed", "Failed", 100),
        ]
        body = response.content.decode()
        assert re.search(r">\s*121 processing\s*</a>", body)
        assert re.search(r">\s*100\+ ready\s*</a>", body)
        assert re.search(r">\s*100 failed\s*</a>", body)

    def test_a_bulk_update_shows_at_once(self, alice, user):
        jobs = [make_job(user, status=JobStatus.PROCESSING) for _ in range(3)]
        Job.objects.filter(pk__in=[job.pk for job in jobs[:2]]).update(status=JobStatus.FAILED)

        response = alice.get("/tasks/")

        assert counts(response) == [("processing", "Processing", 1), ("failed", "Failed", 2)]

    def test_count_each_status(self, alice, user):
        for _ in range(3):
            make_job(user, status=JobStatus.PROCESSING)
        make_job(user, status=JobStatus.FAILED)

        response = alice.get("/tasks/")

        assert counts(response) == [("processing", "Processing", 3), ("failed", "Failed", 1)]
        body = response.content.decode()
        assert re.search(r">\s*3 processing\s*</a>", body)
        assert re.search(r">\s*1 failed\s*</a>", body)

    def test_reflect_the_other_filters_but_not_the_status_itself(self, alice, user, teammate):
        for _ in range(3):
            make_job(user, status=JobStatus.PROCESSING)
        make_job(user, status=JobStatus.FAILED)
        make_job(teammate, status=JobStatus.FAILED)
        make_job(user, status=JobStatus.FAILED, archived_at=timezone.now())

        response = alice.get("/tasks/", {"submitter": user.pk, "status": "processing"})

        assert counts(response) == [("processing", "Processing", 3), ("failed", "Failed", 1)]
        assert len(rows(response)) == 3


class TestQueryCount:
    def count_queries(self, client) -> int:
        client.get("/tasks/")  # the first visit makes the profile; measure a usual one
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/tasks/")
        assert response.status_code == 200
        return len(queries)

    def test_does_not_grow_with_the_number_of_rows(self, alice, user, teammate):
        for n in range(3):
            make_job(user if n % 2 else teammate, status=JobStatus.PROCESSING)
        few = self.count_queries(alice)

        for n in range(57):
            make_job(
                user if n % 2 else teammate,
                status=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.PENDING][n % 3],
                voice_id=["genshin_vindi2", "ai_shatang"][n % 2],
                finished_at=timezone.now() if n % 3 != 2 else None,
            )
        many = self.count_queries(alice)

        assert Job.objects.count() == 60
        assert many == few


class TestLiveRows:
    def test_sends_the_requested_rows_of_your_teams_out_of_band(
        self, alice, user, teammate, other_user
    ):
        mine = make_job(user, status=JobStatus.PROCESSING)
        carols = make_job(teammate, status=JobStatus.SENT)
        bobs = make_job(other_user, status=JobStatus.PROCESSING)

        response = alice.get(
            "/tasks/live/", {"id": [mine.pk, carols.pk, bobs.pk]}, HTTP_HX_REQUEST="true"
        )

        body = response.content.decode()
        assert response.status_code == 200
        assert sorted(rows(response)) == sorted([mine.pk, carols.pk])
        assert f'<tr id="job-row-{mine.pk}" class="status-processing" hx-swap-oob="true">' in body
        assert "<html" not in body

    def test_keeps_polling_only_for_the_rows_still_active(self, alice, user):
        active = make_job(user, status=JobStatus.PROCESSING)
        done = make_job(user, status=JobStatus.SUCCEEDED, finished_at=timezone.now())

        response = alice.get("/tasks/live/", {"id": [active.pk, done.pk]})

        body = response.content.decode()
        found = re.search(r'<div id="live-poller"[^>]*>', body)
        assert found
        poller = found[0]
        assert 'hx-swap-oob="true"' in poller
        assert f"id={active.pk}" in poller
        assert f"id={done.pk}" not in poller
        # The job that just finished gets its final row once, then drops out of the poll.
        assert f'<tr id="job-row-{done.pk}" class="status-succeeded"' in body

    def test_answers_286_to_stop_polling_when_none_is_active(self, alice, user, other_user):
        done = make_job(user, status=JobStatus.FAILED, finished_at=timezone.now())
        bobs = make_job(other_user, status=JobStatus.PROCESSING)

        response = alice.get("/tasks/live/", {"id": [done.pk, bobs.pk]})

        assert response.status_code == 286
        assert rows(response) == [done.pk]

    def test_ignores_ids_that_are_not_numbers(self, alice, user):
        active = make_job(user, status=JobStatus.PENDING)

        response = alice.get("/tasks/live/", {"id": ["x", "1;DROP", active.pk]})

        assert response.status_code == 200
        assert rows(response) == [active.pk]

    def test_includes_the_notices_block_out_of_band(self, alice, user):
        Membership.objects.get(user=user)  # one team
        alice.get("/tasks/")  # the person has seen the studio from here on
        active = make_job(user, status=JobStatus.PROCESSING)
        make_job(
            user,
            text="Ready while you looked",
            status=JobStatus.SUCCEEDED,
            finished_at=timezone.now() + timedelta(seconds=1),
        )

        response = alice.get("/tasks/live/", {"id": [active.pk]}, HTTP_HX_REQUEST="true")

        body = response.content.decode()
        assert re.search(r'<div id="notices"[^>]*hx-swap-oob="true"', body)
        assert "Your lip-sync “Ready while you looked” is ready" in body
        assert "<title>(1) " in body

    def test_the_history_page_starts_the_poll_for_its_active_rows(self, alice, user):
        active = make_job(user, status=JobStatus.PROCESSING)
        done = make_job(user, status=JobStatus.SUCCEEDED)

        body = alice.get("/tasks/").content.decode()

        found = re.search(r'<div id="live-poller"[^>]*>', body)
        assert found
        poller = found[0]
        assert f'hx-get="/tasks/live/?id={active.pk}"' in poller
        assert f"id={done.pk}" not in poller


class TestRowActions:
    def test_a_failed_row_offers_try_again_and_edit_and_a_finished_one_archive(
        self, alice, user, run_job, start_kling, sim_clock
    ):
        start_kling(now=sim_clock, submitted_seconds=1, processing_seconds=2)
        failed = run_job(make_job(user, video_id="noface42"))
        html = alice.get("/tasks/").content.decode()
        assert f'action="/tasks/{failed.pk}/retry/"' in html
        assert f'href="/tasks/new/?from={failed.pk}"' in html
        assert f'action="/tasks/{failed.pk}/archive/"' in html

    def test_every_link_and_action_of_a_row_is_the_one_its_view_is_routed_at(self, alice, user):
        # The row builds them from the job's own URL, so a route moved in urls.py must show.
        failed = make_job(user, status=JobStatus.FAILED, poster="posters/a.jpg")
        waiting = make_job(user)
        done = make_job(user, status=JobStatus.SUCCEEDED)

        html = alice.get("/tasks/").content.decode()
        live = alice.get(
            "/tasks/live/", {"id": [failed.pk, waiting.pk]}, HTTP_HX_REQUEST="true"
        ).content.decode()

        for page in (html, live):
            assert f'src="{reverse("tasks:poster", args=[failed.pk])}"' in page
            assert f'href="{reverse("tasks:detail", args=[failed.pk])}"' in page
            assert f'formaction="{reverse("tasks:retry", args=[failed.pk])}"' in page
            assert f'href="{reverse("tasks:create")}?from={failed.pk}"' in page
            assert f'formaction="{reverse("tasks:cancel", args=[waiting.pk])}"' in page
        assert f'formaction="{reverse("tasks:archive", args=[done.pk])}"' in html

    def test_archiving_from_the_list_returns_to_the_same_filtered_list(
        self, alice, user, run_job, start_kling, sim_clock
    ):
        start_kling(now=sim_clock, submitted_seconds=1, processing_seconds=2)
        job = run_job(make_job(user))
        response = alice.post(
            f"/tasks/{job.pk}/archive/", {"archive": "1", "next": "/tasks/?q=Hello"}
        )
        assert response.status_code == 302
        assert response["Location"] == "/tasks/?q=Hello"
        job.refresh_from_db()
        assert job.archived_at is not None

    def test_row_buttons_post_the_pages_own_form_which_returns_to_the_page(
        self, alice, user, run_job, start_kling, sim_clock
    ):
        start_kling(now=sim_clock, submitted_seconds=1, processing_seconds=2)
        job = run_job(make_job(user))

        page = alice.get("/tasks/?q=Hello").content.decode()
        live = alice.get(f"/tasks/live/?id={job.pk}", HTTP_HX_REQUEST="true").content.decode()

        found = re.search(r'<form id="row-actions" method="post" hidden>.*?</form>', page, re.S)
        assert found
        form = found[0]
        assert 'name="csrfmiddlewaretoken"' in form
        assert 'name="next" value="/tasks/?q=Hello"' in form
        # Rows refreshed in the background post that same form, so they return to the page
        # too; they carry no token or address of their own (which is what lets them be kept).
        for html in (page, live):
            button = re.search(rf'<button[^>]*formaction="/tasks/{job.pk}/archive/"[^>]*>', html)
            assert button
            assert 'form="row-actions"' in button[0]
        assert "csrfmiddlewaretoken" not in live
        assert 'name="next"' not in live

    def test_a_plain_teammate_gets_no_archive_or_cancel_on_someone_elses_row(
        self, alice, carol, user
    ):
        waiting = make_job(user, text="Still waiting")
        done = make_job(user, status=JobStatus.SUCCEEDED, text="Already done")
        jobs = (waiting, done)

        submitters = alice.get("/tasks/")
        teammates = carol.get("/tasks/")

        # The submitter is offered both on these rows: cancel the waiting job, archive the
        # finished one ...
        assert f'action="/tasks/{waiting.pk}/cancel/"' in submitters.content.decode()
        assert f'action="/tasks/{done.pk}/archive/"' in submitters.content.decode()
        # ... and the teammate sees the same rows with neither.
        assert sorted(rows(teammates)) == sorted(job.pk for job in jobs)
        html = teammates.content.decode()
        for job in jobs:
            assert f'action="/tasks/{job.pk}/cancel/"' not in html
            assert f'action="/tasks/{job.pk}/archive/"' not in html
