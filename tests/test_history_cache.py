"""What keeps the history page fast at any size, and never wrong: the team tallies behind its
counts, the rows kept once rendered, the kept filter form, and the notices mark."""

from __future__ import annotations

import importlib
import io
import re
import uuid
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from factories import make_job, make_member, put_job, tally_drift
from test_history import add_job, rows

from tasks_app import services
from tasks_app.history_rows import history_rows_render, history_values
from tasks_app.models import Job, JobStatus, JobTally, Profile, Team, TeamRole

pytestmark = pytest.mark.django_db


def tallies(team: Team) -> dict[tuple[str, bool], int]:
    """The team's non-empty tallies, as {(status, archived): count}."""
    found = JobTally.objects.filter(team=team).exclude(count=0)
    return {(t.status, t.archived): t.count for t in found}


def job_queries(context: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in context.captured_queries if '"tasks_app_job"' in q["sql"]]


class TestJobTallies:
    def test_a_new_job_is_counted_in_its_status(self, user, team):
        add_job(user, status=JobStatus.SUCCEEDED)
        add_job(user, status=JobStatus.SUCCEEDED)
        add_job(user, status=JobStatus.FAILED)

        assert tallies(team) == {("succeeded", False): 2, ("failed", False): 1}

    def test_a_status_change_moves_the_job_to_its_new_tally(self, user, team):
        job = add_job(user, status=JobStatus.PROCESSING)

        put_job(job, status=JobStatus.SUCCEEDED, finished_at=timezone.now())

        assert tallies(team) == {("succeeded", False): 1}

    def test_archiving_twice_counts_the_job_once(self, user, team):
        job = add_job(user, status=JobStatus.SUCCEEDED)
        stale_copy = Job.objects.get(pk=job.pk)

        services.job_archive(job=job, archived=True)
        services.job_archive(job=stale_copy, archived=True)  # a double click, or two people

        assert tallies(team) == {("succeeded", True): 1}
        services.job_archive(job=job, archived=False)
        assert tallies(team) == {("succeeded", False): 1}

    def test_deleting_a_job_takes_it_out_of_the_count(self, user, team):
        kept, gone = add_job(user), add_job(user)

        gone.delete()

        assert tallies(team) == {(kept.status, False): 1}

    def test_saving_fields_the_tallies_ignore_writes_no_tally(self, user):
        job = add_job(user, status=JobStatus.PROCESSING)

        with CaptureQueriesContext(connection) as context:
            job.status_detail = "Still rendering"
            job.save(update_fields=["status_detail"])

        assert not [q for q in context.captured_queries if "tasks_app_jobtally" in q["sql"]]

    def test_a_rebuild_recounts_jobs_written_around_save(self, user, team):
        jobs = [add_job(user, status=JobStatus.PROCESSING) for _ in range(3)]
        # A bulk write skips Job.save, so the tallies fall behind until they are rebuilt.
        Job.objects.filter(pk__in=[j.pk for j in jobs[:2]]).update(status=JobStatus.FAILED)
        assert tally_drift()

        services.job_tallies_rebuild(team=team)

        assert tally_drift() == []
        assert tallies(team) == {("failed", False): 2, ("processing", False): 1}

    def test_a_job_refreshed_from_the_database_is_counted_where_it_is_now(self, user, team):
        job = make_job(user)  # pending, as the form stores it
        assert services.job_cancel(job=job)  # saves a fresh copy, then refreshes this one

        job.review_note = "Cancelled on request"
        job.save()

        assert tally_drift() == []
        assert tallies(team) == {("cancelled", False): 1}

    def test_a_job_read_without_its_status_is_counted_once(self, user, team):
        job = add_job(user, status=JobStatus.SUCCEEDED)
        partial = Job.objects.only("pk", "review_note").get(pk=job.pk)

        partial.review_note = "Fine"
        partial.save()
        assert tallies(team) == {("succeeded", False): 1}
        Job.objects.only("pk").get(pk=job.pk).delete()
        assert tallies(team) == {}

    def test_a_copy_saved_as_a_new_job_is_counted_beside_the_original(self, user, team):
        job = add_job(user, status=JobStatus.FAILED)

        job.pk, job.submission_key = None, uuid.uuid4()
        job.save()

        assert tallies(team) == {("failed", False): 2}

    def test_a_save_of_some_fields_counts_what_it_wrote_not_what_it_holds(self, user, team):
        job = add_job(user, status=JobStatus.PROCESSING)

        job.archived_at = timezone.now()  # changed but not saved below
        job.status = JobStatus.SUCCEEDED
        job.save(update_fields=["status"])

        assert tallies(team) == {("succeeded", False): 1}

    def test_a_save_rolled_back_leaves_the_tallies_as_they_were(self, user, team):
        job = add_job(user, status=JobStatus.PROCESSING)

        with pytest.raises(RuntimeError), transaction.atomic():
            put_job(job, status=JobStatus.FAILED)
            raise RuntimeError("the rest of the change failed")
        put_job(job, status=JobStatus.SUCCEEDED)

        assert tallies(team) == {("succeeded", False): 1}

    def test_the_migration_counts_the_jobs_already_stored(self, user, team, other_user):
        add_job(user, status=JobStatus.SUCCEEDED)
        add_job(user, status=JobStatus.SUCCEEDED, archived_at=timezone.now())
        add_job(other_user, status=JobStatus.FAILED)
        JobTally.objects.all().delete()

        migration = importlib.import_module("tasks_app.migrations.0002_job_tally")
        migration.count_existing_jobs(apps, None)

        assert tally_drift() == []
        assert tallies(team) == {("succeeded", False): 1, ("succeeded", True): 1}

    def test_deleting_a_team_deletes_its_tallies(self, other_user, other_team):
        add_job(other_user).delete()  # a team's jobs protect it; its emptied tallies do not
        assert JobTally.objects.filter(team=other_team).exists()

        other_team.delete()

        assert not JobTally.objects.filter(team_id=other_team.pk).exists()


class TestTheHistoryCounts:
    def test_without_a_search_they_come_from_the_tallies_not_from_counting_jobs(self, alice, user):
        for _ in range(3):
            add_job(user, status=JobStatus.SUCCEEDED)
        add_job(user, status=JobStatus.FAILED)

        with CaptureQueriesContext(connection) as context:
            html = alice.get("/tasks/").content.decode()

        assert "3 ready" in html and "1 failed" in html
        assert not [sql for sql in job_queries(context) if "COUNT(" in sql.upper()]

    def test_with_a_search_they_count_the_matching_jobs(self, alice, user):
        add_job(user, text="Spring sale", status=JobStatus.SUCCEEDED)
        add_job(user, text="Spring sale again", status=JobStatus.FAILED)
        add_job(user, text="Autumn", status=JobStatus.FAILED)

        html = alice.get("/tasks/", {"q": "spring"}).content.decode()

        assert "1 ready" in html and "1 failed" in html

    def test_the_archived_ones_count_only_when_shown(self, alice, user):
        add_job(user, status=JobStatus.SUCCEEDED)
        add_job(user, status=JobStatus.SUCCEEDED, archived_at=timezone.now())

        assert "1 ready" in alice.get("/tasks/").content.decode()
        assert "2 ready" in alice.get("/tasks/", {"archived": "on"}).content.decode()

    def test_a_total_that_fell_behind_still_pages_through_every_row(
        self, alice, user, team, caplog
    ):
        jobs = [add_job(user) for _ in range(60)]
        JobTally.objects.filter(team=team).update(count=0)  # as after a bulk import

        first = alice.get("/tasks/")
        second = alice.get("/tasks/", {"page": "2"})

        assert len(rows(first)) == 50 and len(rows(second)) == 10
        assert set(rows(first) + rows(second)) == {job.pk for job in jobs}
        assert "Page 1 of 2" in first.content.decode()
        assert "Page 2 of 2" in second.content.decode()
        assert "recount_jobs" in caplog.text
        services.job_tallies_rebuild(team=team)  # the end-of-test check wants them right

    def test_a_total_too_high_ends_the_pages_where_the_rows_end(self, alice, user, team):
        jobs = [add_job(user) for _ in range(3)]
        JobTally.objects.filter(team=team).update(count=200)

        first = alice.get("/tasks/").content.decode()
        past_the_end = alice.get("/tasks/", {"page": "4"})

        assert "Page 1 of" not in first and "Older" not in first
        assert sorted(rows(past_the_end)) == sorted(job.pk for job in jobs)
        services.job_tallies_rebuild(team=team)

    def test_a_page_past_the_end_shows_the_last_page_without_counting(self, alice, user):
        for _ in range(55):
            add_job(user)

        with CaptureQueriesContext(connection) as context:
            response = alice.get("/tasks/", {"page": "9"})

        assert len(rows(response)) == 5
        assert "Page 2 of 2" in response.content.decode()
        assert not [sql for sql in job_queries(context) if "COUNT(" in sql.upper()]


class TestKeptRows:
    def test_a_finished_row_is_rendered_once_then_read_from_the_cache(self, user, team):
        add_job(user, status=JobStatus.SUCCEEDED)
        values = list(history_values(Job.objects.filter(team=team)))
        first = history_rows_render(user=user, rows=values)

        with CaptureQueriesContext(connection) as context:
            again = history_rows_render(user=user, rows=values)

        assert again == first
        assert job_queries(context) == []

    def test_a_running_row_is_kept_too(self, user, team):
        add_job(user, status=JobStatus.PROCESSING, sent_at=timezone.now())
        values = list(history_values(Job.objects.filter(team=team)))
        history_rows_render(user=user, rows=values)

        with CaptureQueriesContext(connection) as context:
            history_rows_render(user=user, rows=values)

        assert job_queries(context) == []

    def test_a_row_shows_its_jobs_change_at_once(self, alice, user):
        job = add_job(user, status=JobStatus.SUCCEEDED)
        assert "Unarchive" not in alice.get("/tasks/").content.decode()

        services.job_archive(job=job, archived=True)
        archived = alice.get("/tasks/", {"archived": "on"}).content.decode()
        services.job_archive(job=job, archived=False)
        back = alice.get("/tasks/").content.decode()

        assert "Unarchive" in archived
        assert "Unarchive" not in back and f'formaction="/tasks/{job.pk}/archive/"' in back

    def test_a_kept_row_is_flagged_slow_once_the_clock_passes_the_limit(
        self, alice, user, settings
    ):
        # Nothing about the job changes: only the time since Kling took it, against the limit.
        add_job(user, status=JobStatus.PROCESSING, sent_at=timezone.now() - timedelta(minutes=5))
        settings.KLING_SLOW_AFTER_MINUTES = 10
        assert "Taking longer than usual" not in alice.get("/tasks/").content.decode()

        settings.KLING_SLOW_AFTER_MINUTES = 4

        assert "Taking longer than usual" in alice.get("/tasks/").content.decode()

    def test_a_running_row_shows_its_new_status_on_the_live_refresh(self, alice, user):
        job = add_job(user, status=JobStatus.PROCESSING, sent_at=timezone.now())
        live = f"/tasks/live/?id={job.pk}"
        assert "Processing" in alice.get(live, HTTP_HX_REQUEST="true").content.decode()

        put_job(job, status=JobStatus.SUCCEEDED, finished_at=timezone.now())
        refreshed = alice.get(live, HTTP_HX_REQUEST="true")

        assert "Ready" in refreshed.content.decode()
        assert refreshed.status_code == 286  # nothing left running: the poll stops

    def test_a_row_kept_for_its_submitter_shows_no_actions_to_a_plain_teammate(
        self, client, user, teammate
    ):
        job = add_job(user, status=JobStatus.SUCCEEDED)
        archive = f'formaction="/tasks/{job.pk}/archive/"'
        client.force_login(user)
        assert archive in client.get("/tasks/").content.decode()

        client.force_login(teammate)

        assert archive not in client.get("/tasks/").content.decode()

    def test_a_team_admin_gets_the_actions_on_a_teammates_row(self, client, user, team):
        job = add_job(user, status=JobStatus.SUCCEEDED)
        admin = make_member("dana", team, role=TeamRole.ADMIN)

        client.force_login(admin)

        assert f'formaction="/tasks/{job.pk}/archive/"' in client.get("/tasks/").content.decode()

    def test_a_row_follows_the_readers_language(self, alice, user):
        add_job(user, status=JobStatus.SUCCEEDED)
        english = alice.get("/tasks/").content.decode()

        alice.post("/i18n/setlang/", {"language": "zh-hans", "next": "/tasks/"})
        chinese = alice.get("/tasks/").content.decode()

        row = re.compile(r'<tr id="job-row-.*?</tr>', re.S)
        assert row.search(english)[0] != row.search(chinese)[0]
        assert ">Archive<" in row.search(english)[0]
        assert ">Archive<" not in row.search(chinese)[0]

    def test_a_renamed_submitter_shows_under_the_new_name(self, alice, user, teammate):
        add_job(teammate, status=JobStatus.SUCCEEDED)
        assert "<td>carol</td>" in alice.get("/tasks/").content.decode()

        teammate.username = "caroline"
        teammate.save()

        assert "<td>caroline</td>" in alice.get("/tasks/").content.decode()


class TestTheKeptFilterForm:
    def test_a_new_member_appears_among_the_submitters(self, alice, user, team):
        assert ">erin</option>" not in alice.get("/tasks/").content.decode()

        make_member("erin", team)

        assert ">erin</option>" in alice.get("/tasks/").content.decode()

    def test_it_shows_the_search_it_was_asked_for(self, alice, user):
        alice.get("/tasks/", {"q": "first"})

        html = alice.get("/tasks/", {"q": "second"}).content.decode()

        assert 'value="second"' in html and 'value="first"' not in html


class TestTheNoticesMark:
    def test_a_page_view_with_nothing_new_writes_nothing(self, alice, user):
        alice.get("/tasks/")  # the first view sets the mark

        with CaptureQueriesContext(connection) as context:
            alice.get("/tasks/")

        writes = [q["sql"] for q in context.captured_queries if q["sql"].startswith("UPDATE")]
        assert writes == []

    def test_a_page_view_that_shows_a_notice_moves_the_mark(self, alice, user):
        alice.get("/tasks/")
        before = Profile.objects.get(user=user).last_seen_at
        add_job(user, status=JobStatus.SUCCEEDED, finished_at=timezone.now())

        html = alice.get("/tasks/").content.decode()

        assert "is ready" in html
        assert Profile.objects.get(user=user).last_seen_at > before
        assert "is ready" not in alice.get("/tasks/").content.decode()


class TestTheRecountCommand:
    def test_it_recounts_every_team_after_a_bulk_write(self, user, other_user):
        for person in (user, other_user):
            job = add_job(person, status=JobStatus.PROCESSING)
            Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
        assert len(tally_drift()) == 4

        out = io.StringIO()
        call_command("recount_jobs", stdout=out)

        assert tally_drift() == []
        assert "Recounted the jobs of 2 team(s)." in out.getvalue()


class TestTheNoticesQuery:
    def test_it_finds_only_the_persons_finished_jobs_after_the_mark_newest_first(
        self, user, teammate
    ):
        mark = timezone.now().replace(microsecond=0)
        add_job(user, status=JobStatus.SUCCEEDED, finished_at=mark)  # at the mark: seen
        older = add_job(user, status=JobStatus.FAILED, finished_at=mark + timedelta(microseconds=1))
        newer = add_job(user, status=JobStatus.SUCCEEDED, finished_at=mark + timedelta(seconds=2))
        add_job(user, status=JobStatus.CANCELLED, finished_at=mark + timedelta(seconds=3))
        add_job(teammate, status=JobStatus.SUCCEEDED, finished_at=mark + timedelta(seconds=4))

        found = Job.objects.finished_for(user=user, since=mark, limit=5)

        assert [job.pk for job in found] == [newer.pk, older.pk]
        assert found[0].summary == newer.summary
        assert Job.objects.finished_for(user=user, since=mark, limit=1) == [newer]
