"""A batch's page: its rows and counts, refreshed live; retrying, cancelling and archiving them
all at once; the history narrowed to one batch; and another team's batch, a 404 everywhere."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from factories import make_batch, make_job, make_member, put_job, rows

from tasks_app.models import Batch, Job, JobStatus, TeamRole

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def batch_rows(response) -> list[tuple[int, str, int]]:
    """The page's rows as (row, status, job id), in the order shown."""
    found = re.findall(
        r'<tr id="batch-row-(\d+)" class="status-(\w+)" data-job="(\d+)">',
        response.content.decode(),
    )
    return [(int(row), status, int(job)) for row, status, job in found]


def counts(response) -> dict[str, int]:
    body = response.content.decode()
    found = re.findall(r'data-status="(\w+)">(\d+) ', body)
    return {status: int(n) for status, n in found}


def newest(batch: Batch, row: int) -> Job:
    return Job.objects.filter(batch=batch, batch_row=row).latest("pk")


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


class TestBatchPage:
    def test_shows_every_row_in_row_order_with_its_status_text_and_voice(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED, JobStatus.FAILED, "processing"])

        response = alice.get(batch.get_absolute_url())

        assert response.status_code == 200
        jobs = {job.batch_row: job.pk for job in batch.jobs.all()}
        assert batch_rows(response) == [
            (1, "succeeded", jobs[1]),
            (2, "failed", jobs[2]),
            (3, "processing", jobs[3]),
        ]
        body = response.content.decode()
        for row in (1, 2, 3):
            assert f'<a href="/tasks/{jobs[row]}/">Line {row}</a>' in body
        assert "Sunny · English · speed 1.0" in body  # the voice by its name, not its id
        assert ">Ready</span>" in body
        assert ">Failed</span>" in body
        assert f"Batch #{batch.pk}" in body

    def test_shows_the_newest_attempt_of_a_retried_row(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.SUCCEEDED])
        first_try = newest(batch, 1)
        second_try = make_job(
            user, status=JobStatus.SUCCEEDED, batch=batch, batch_row=1, text="Line 1"
        )

        response = alice.get(batch.get_absolute_url())

        shown = batch_rows(response)
        assert [row for row, _status, _job in shown] == [1, 2]
        assert shown[0] == (1, "succeeded", second_try.pk)
        assert first_try.pk not in [job for _row, _status, job in shown]
        assert counts(response) == {"succeeded": 2}

    def test_counts_the_rows_by_status(self, alice, user):
        batch = make_batch(
            user,
            statuses=[JobStatus.SUCCEEDED, JobStatus.SUCCEEDED, JobStatus.FAILED, "pending"],
        )

        response = alice.get(batch.get_absolute_url())

        assert counts(response) == {"pending": 1, "succeeded": 2, "failed": 1}
        assert ">2 ready</span>" in response.content.decode()

    def test_shows_a_thumbnail_for_a_ready_row_only(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED, JobStatus.PENDING])
        ready, waiting = newest(batch, 1), newest(batch, 2)
        put_job(ready, poster="posters/ready.jpg")
        put_job(waiting, poster="posters/waiting.jpg")

        body = alice.get(batch.get_absolute_url()).content.decode()

        assert reverse("tasks:poster", args=[ready.pk]) in body
        assert reverse("tasks:poster", args=[waiting.pk]) not in body

    def test_a_failed_row_says_why(self, alice, user):
        batch = make_batch(
            user, statuses=[JobStatus.FAILED], status_detail="Kling could not find a face."
        )

        body = alice.get(batch.get_absolute_url()).content.decode()

        assert "Kling could not find a face." in body

    def test_offers_retry_and_cancel_while_rows_fail_and_wait(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.PENDING, "processing"])

        body = alice.get(batch.get_absolute_url()).content.decode()

        assert reverse("tasks:batch_retry", args=[batch.pk]) in body
        assert reverse("tasks:batch_cancel", args=[batch.pk]) in body
        assert reverse("tasks:batch_archive", args=[batch.pk]) not in body  # rows still run
        assert reverse("tasks:batch_download", args=[batch.pk]) not in body  # nothing ready

    def test_offers_download_and_archive_once_every_row_has_ended(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED, JobStatus.SUCCEEDED])

        body = alice.get(batch.get_absolute_url()).content.decode()

        assert reverse("tasks:batch_download", args=[batch.pk]) in body
        assert reverse("tasks:batch_archive", args=[batch.pk]) in body
        assert reverse("tasks:batch_retry", args=[batch.pk]) not in body
        assert reverse("tasks:batch_cancel", args=[batch.pk]) not in body

    def test_a_teammate_who_did_not_make_it_may_retry_but_not_cancel_or_archive(
        self, alice, carol, user
    ):
        batch = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.PENDING])

        alices = alice.get(batch.get_absolute_url()).content.decode()
        carols = carol.get(batch.get_absolute_url()).content.decode()

        assert reverse("tasks:batch_cancel", args=[batch.pk]) in alices
        assert reverse("tasks:batch_cancel", args=[batch.pk]) not in carols
        assert reverse("tasks:batch_retry", args=[batch.pk]) in carols

    def test_asks_for_a_login_first(self, client, user):
        batch = make_batch(user)

        response = client.get(batch.get_absolute_url())

        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


class TestLiveRefresh:
    def test_the_poll_answers_the_rows_alone_and_keeps_polling_while_a_row_runs(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED, JobStatus.PROCESSING])

        response = alice.get(batch.get_absolute_url(), **HTMX)

        body = response.content.decode()
        assert response.status_code == 200
        assert "<html" not in body
        assert body.lstrip().startswith('<section id="batch-rows"')
        assert f'hx-get="{batch.get_absolute_url()}" hx-trigger="every 3s"' in body
        assert len(batch_rows(response)) == 2

    def test_the_poll_answers_286_once_every_row_has_ended(self, alice, user):
        batch = make_batch(
            user, statuses=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]
        )

        response = alice.get(batch.get_absolute_url(), **HTMX)

        body = response.content.decode()
        assert response.status_code == 286
        assert "hx-trigger" not in body
        assert counts(response) == {"succeeded": 1, "failed": 1, "cancelled": 1}

    def test_the_poll_sees_a_row_end(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED, JobStatus.PROCESSING])
        assert alice.get(batch.get_absolute_url(), **HTMX).status_code == 200

        put_job(newest(batch, 2), status=JobStatus.SUCCEEDED, finished_at=timezone.now())
        response = alice.get(batch.get_absolute_url(), **HTMX)

        assert response.status_code == 286
        assert counts(response) == {"succeeded": 2}

    def test_the_page_without_htmx_is_the_whole_page_and_polls_while_active(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.PROCESSING])

        response = alice.get(batch.get_absolute_url())

        body = response.content.decode()
        assert response.status_code == 200
        assert "<html" in body
        assert 'hx-trigger="every 3s"' in body

    def test_a_poll_costs_as_many_queries_for_thirty_rows_as_for_three(self, alice, user):
        def queries_per_poll(batch: Batch) -> int:
            alice.get(batch.get_absolute_url(), **HTMX)  # the first visit makes the profile
            with CaptureQueriesContext(connection) as queries:
                response = alice.get(batch.get_absolute_url(), **HTMX)
            assert response.status_code == 200
            return len(queries)

        mixed: list[str] = [JobStatus.FAILED, JobStatus.PENDING, JobStatus.SUCCEEDED]
        few = make_batch(user, statuses=mixed)
        many = make_batch(user, statuses=mixed * 10)
        for row in (1, 2, 3):  # retried rows too
            make_job(user, status=JobStatus.PROCESSING, batch=many, batch_row=row)

        assert len(batch_rows(alice.get(many.get_absolute_url(), **HTMX))) == 30
        assert queries_per_poll(many) == queries_per_poll(few)


class TestRetryFailed:
    def test_starts_one_new_attempt_per_failed_row_and_a_second_click_none(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.FAILED])
        failed = [newest(batch, 1), newest(batch, 3)]

        response = alice.post(reverse("tasks:batch_retry", args=[batch.pk]))

        assert response.status_code == 302
        assert response["Location"] == batch.get_absolute_url()
        assert said(response) == ["Started 2 failed rows again."]
        assert Job.objects.filter(batch=batch).count() == 5
        for row, old in zip((1, 3), failed, strict=True):
            retry = newest(batch, row)
            assert retry.pk != old.pk
            assert retry.retry_of_id == old.pk
            assert retry.status == JobStatus.PENDING
            assert retry.text == old.text
        assert newest(batch, 2).status == JobStatus.SUCCEEDED  # left alone
        alice.get(response["Location"])  # where the message is shown, once

        again = alice.post(reverse("tasks:batch_retry", args=[batch.pk]))

        assert Job.objects.filter(batch=batch).count() == 5
        assert said(again) == ["No row has failed since the last try; nothing was started."]

    def test_a_double_click_sends_each_failed_row_to_kling_once(self, alice, user, kling, run_job):
        batch = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.SUCCEEDED])
        url = reverse("tasks:batch_retry", args=[batch.pk])

        alice.post(url)
        alice.post(url)
        retry = run_job(newest(batch, 1))

        assert kling.created_count == 1
        assert retry.status == JobStatus.SUCCEEDED
        assert (retry.batch_id, retry.batch_row) == (batch.pk, 1)
        poll = alice.get(batch.get_absolute_url(), **HTMX)
        assert poll.status_code == 286
        assert counts(poll) == {"succeeded": 2}

    def test_the_page_then_shows_the_new_attempts(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.SUCCEEDED])
        alice.post(reverse("tasks:batch_retry", args=[batch.pk]))

        response = alice.get(batch.get_absolute_url())

        assert [status for _row, status, _job in batch_rows(response)] == [
            "pending",
            "succeeded",
        ]

    def test_a_teammate_may_retry_the_failed_rows(self, carol, user, teammate):
        batch = make_batch(user, statuses=[JobStatus.FAILED])

        carol.post(reverse("tasks:batch_retry", args=[batch.pk]))

        retry = newest(batch, 1)
        assert retry.status == JobStatus.PENDING
        assert retry.submitted_by == teammate

    def test_is_a_post(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.FAILED])

        response = alice.get(reverse("tasks:batch_retry", args=[batch.pk]))

        assert response.status_code == 405
        assert Job.objects.filter(batch=batch).count() == 1


class TestCancelWaiting:
    def test_cancels_only_the_rows_not_yet_sent(self, alice, user):
        batch = make_batch(
            user,
            statuses=[
                JobStatus.SUCCEEDED,
                JobStatus.SENT,
                JobStatus.PENDING,
                JobStatus.PENDING,
                JobStatus.PENDING,
            ],
        )
        # The worker is sending row 5 right now: Kling may already have it.
        put_job(newest(batch, 5), send_started_at=timezone.now())

        response = alice.post(reverse("tasks:batch_cancel", args=[batch.pk]))

        assert response.status_code == 302
        assert response["Location"] == batch.get_absolute_url()
        statuses = [newest(batch, row).status for row in range(1, 6)]
        assert statuses == ["succeeded", "sent", "cancelled", "cancelled", "pending"]
        assert said(response) == ["Cancelled 2 rows before they were sent. No credits were used."]
        assert Job.objects.filter(batch=batch).count() == 5  # nothing new

    def test_says_so_when_nothing_was_waiting(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SENT])

        response = alice.post(reverse("tasks:batch_cancel", args=[batch.pk]))

        assert said(response) == ["No row was still waiting to be sent; nothing was cancelled."]
        assert newest(batch, 1).status == JobStatus.SENT

    def test_a_teammate_who_did_not_make_it_is_refused(self, carol, user):
        batch = make_batch(user, statuses=[JobStatus.PENDING])

        response = carol.post(reverse("tasks:batch_cancel", args=[batch.pk]))

        assert response.status_code == 403
        assert newest(batch, 1).status == JobStatus.PENDING

    def test_a_team_admin_may_cancel_a_teammates_batch(self, client, user, team):
        batch = make_batch(user, statuses=[JobStatus.PENDING])
        client.force_login(make_member("dana", team, role=TeamRole.ADMIN))

        response = client.post(reverse("tasks:batch_cancel", args=[batch.pk]))

        assert response.status_code == 302
        assert newest(batch, 1).status == JobStatus.CANCELLED


class TestArchive:
    def test_hides_the_batch_and_its_rows_from_the_history_and_brings_them_back(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED, JobStatus.FAILED])
        older_try = make_job(user, status=JobStatus.FAILED, batch=batch, batch_row=2)
        put_job(older_try, created_at=timezone.now() - timedelta(hours=1))
        other = make_job(user, status=JobStatus.SUCCEEDED)
        every_attempt = sorted(batch.jobs.values_list("pk", flat=True))
        assert sorted(rows(alice.get("/tasks/"))) == sorted([*every_attempt, other.pk])

        response = alice.post(reverse("tasks:batch_archive", args=[batch.pk]), {"archive": "1"})

        assert response.status_code == 302
        batch.refresh_from_db()
        assert batch.archived_at is not None
        assert not batch.jobs.filter(archived_at__isnull=True).exists()
        assert rows(alice.get("/tasks/")) == [other.pk]
        page = alice.get(batch.get_absolute_url()).content.decode()
        assert "Bring the batch back into the history" in page

        alice.post(reverse("tasks:batch_archive", args=[batch.pk]), {"archive": "0"})

        batch.refresh_from_db()
        assert batch.archived_at is None
        assert sorted(rows(alice.get("/tasks/"))) == sorted([*every_attempt, other.pk])

    def test_a_teammate_who_did_not_make_it_is_refused(self, carol, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED])

        response = carol.post(reverse("tasks:batch_archive", args=[batch.pk]), {"archive": "1"})

        assert response.status_code == 403
        batch.refresh_from_db()
        assert batch.archived_at is None


class TestAnotherTeamsBatch:
    @pytest.mark.parametrize(
        ("method", "name", "headers"),
        [
            ("get", "tasks:batch", {}),
            ("get", "tasks:batch", HTMX),
            ("post", "tasks:batch_retry", {}),
            ("post", "tasks:batch_cancel", {}),
            ("post", "tasks:batch_archive", {}),
            ("get", "tasks:batch_download", {}),
        ],
    )
    def test_is_a_404_on_the_page_every_action_and_the_download(
        self, alice, bob, user, method, name, headers
    ):
        batch = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.PENDING, "succeeded"])
        url = reverse(name, args=[batch.pk])

        theirs = getattr(bob, method)(url, **headers)
        own = getattr(alice, method)(url, **headers)

        assert theirs.status_code == 404
        assert own.status_code in (200, 286, 302)

    def test_bobs_404_changes_nothing(self, bob, user):
        batch = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.PENDING])

        for name in ("tasks:batch_retry", "tasks:batch_cancel", "tasks:batch_archive"):
            assert bob.post(reverse(name, args=[batch.pk])).status_code == 404

        assert Job.objects.filter(batch=batch).count() == 2
        assert [newest(batch, row).status for row in (1, 2)] == ["failed", "pending"]
        batch.refresh_from_db()
        assert batch.archived_at is None

    def test_a_batch_that_does_not_exist_is_a_404(self, alice):
        assert alice.get(reverse("tasks:batch", args=[987654])).status_code == 404


class TestHistoryFilter:
    def test_narrows_the_history_to_one_batch(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED, JobStatus.FAILED])
        make_batch(user, statuses=[JobStatus.SUCCEEDED])
        alone = make_job(user, status=JobStatus.SUCCEEDED)

        everything = alice.get("/tasks/")
        narrowed = alice.get("/tasks/", {"batch": batch.pk})

        assert alone.pk in rows(everything)
        assert len(rows(everything)) == 4
        assert sorted(rows(narrowed)) == sorted(batch.jobs.values_list("pk", flat=True))
        body = narrowed.content.decode()
        assert f"Only the rows of batch #{batch.pk}." in body
        assert f'<input type="hidden" name="batch" value="{batch.pk}"' in body

    def test_a_row_links_to_its_batch(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED, JobStatus.SUCCEEDED])
        alone = make_job(user, status=JobStatus.SUCCEEDED, text="Not in a batch")

        body = alice.get("/tasks/").content.decode()

        url = batch.get_absolute_url()
        assert f'<a class="muted row-batch" href="{url}">Batch #{batch.pk} · row 2</a>' in body
        assert body.count(f'href="{url}"') == 2
        alone_row = re.search(rf'<tr id="job-row-{alone.pk}".*?</tr>', body, re.S)
        assert alone_row
        assert "Batch #" not in alone_row[0]

    @pytest.mark.parametrize("value", ["other-team", "987654", "abc", "0", "9" * 30])
    def test_a_batch_you_cannot_see_shows_an_empty_list(self, alice, user, other_user, value):
        bobs = make_batch(other_user, statuses=[JobStatus.SUCCEEDED])
        make_job(user, status=JobStatus.SUCCEEDED)
        batch_id = str(bobs.pk) if value == "other-team" else value

        response = alice.get("/tasks/", {"batch": batch_id})

        assert response.status_code == 200
        assert rows(response) == []
        assert len(rows(alice.get("/tasks/"))) == 1

    def test_batch_rows_cost_the_history_no_query(self, alice, user):
        def queries(path: str) -> int:
            alice.get(path)
            with CaptureQueriesContext(connection) as captured:
                assert alice.get(path).status_code == 200
            return len(captured)

        for _ in range(3):
            make_job(user, status=JobStatus.SUCCEEDED)
        plain = queries("/tasks/")
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED] * 3)

        assert len(rows(alice.get("/tasks/"))) == 6
        assert queries("/tasks/") == plain
        assert queries(f"/tasks/?batch={batch.pk}") == plain


class TestBatchAdmin:
    BATCHES_URL = reverse("admin:tasks_app_batch_changelist")
    JOBS_URL = reverse("admin:tasks_app_job_changelist")

    def staff(self, client, team, *codenames: str):
        person = make_member("sam", team, is_staff=True)
        person.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="tasks_app", codename__in=codenames)
        )
        client.force_login(person)
        return client

    def test_lists_their_teams_batches_with_the_number_of_rows(
        self, client, team, user, other_user
    ):
        ours = make_batch(user, statuses=[JobStatus.FAILED, JobStatus.SUCCEEDED])
        make_job(user, status=JobStatus.PENDING, batch=ours, batch_row=1)  # a retry: same row
        theirs = make_batch(other_user)
        staff = self.staff(client, team, "view_batch")

        response = staff.get(self.BATCHES_URL)

        assert response.status_code == 200
        listed = response.context["cl"].result_list
        assert [batch.pk for batch in listed] == [ours.pk]
        assert listed[0]._rows == 2
        assert theirs.pk not in [batch.pk for batch in listed]
        page = staff.get(reverse("admin:tasks_app_batch_change", args=[ours.pk]))
        assert page.status_code == 200
        assert ours.get_absolute_url() in page.content.decode()

    def test_finds_a_batch_by_number_or_by_who_made_it(self, admin_client, user, teammate):
        alices = make_batch(user)
        carols = make_batch(teammate)

        by_number = admin_client.get(self.BATCHES_URL, {"q": f"#{carols.pk}"})
        by_name = admin_client.get(self.BATCHES_URL, {"q": "alice"})

        assert [batch.pk for batch in by_number.context["cl"].result_list] == [carols.pk]
        assert [batch.pk for batch in by_name.context["cl"].result_list] == [alices.pk]

    def test_batches_are_read_only(self, admin_client, user):
        batch = make_batch(user)

        assert admin_client.get(reverse("admin:tasks_app_batch_add")).status_code == 403
        delete = admin_client.get(reverse("admin:tasks_app_batch_delete", args=[batch.pk]))
        assert delete.status_code == 403
        change = admin_client.post(reverse("admin:tasks_app_batch_change", args=[batch.pk]), {})
        assert change.status_code == 403

    def test_jobs_filter_on_being_in_a_batch_and_show_their_row(self, admin_client, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED])
        row = Job.objects.get(batch=batch)
        alone = make_job(user, status=JobStatus.SUCCEEDED)

        in_batches = admin_client.get(self.JOBS_URL, {"batch__isempty": "0"})
        alone_ones = admin_client.get(self.JOBS_URL, {"batch__isempty": "1"})
        of_batch = admin_client.get(self.JOBS_URL, {"batch__id__exact": batch.pk})
        page = admin_client.get(reverse("admin:tasks_app_job_change", args=[row.pk]))

        assert [job.pk for job in in_batches.context["cl"].result_list] == [row.pk]
        assert [job.pk for job in alone_ones.context["cl"].result_list] == [alone.pk]
        assert [job.pk for job in of_batch.context["cl"].result_list] == [row.pk]
        body = page.content.decode()
        assert f"Batch #{batch.pk}" in body
        assert '<div class="readonly">1</div>' in body


class TestJobPageOfARow:
    def test_a_rows_job_page_links_to_its_batch_and_a_lone_jobs_does_not(self, alice, user):
        batch = make_batch(user, statuses=[JobStatus.SUCCEEDED, JobStatus.FAILED])
        row_two = batch.jobs.get(batch_row=2)
        alone = make_job(user, status=JobStatus.SUCCEEDED, text="Not in a batch")

        row_page = alice.get(row_two.get_absolute_url()).content.decode()
        alone_page = alice.get(alone.get_absolute_url()).content.decode()

        url = batch.get_absolute_url()
        assert f'href="{url}" data-testid="job-batch">Batch #{batch.pk} · row 2<' in row_page
        assert 'data-testid="job-batch"' not in alone_page
        assert "Back to history" in alone_page and "Back to history" in row_page
