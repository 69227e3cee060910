"""Watching a job: its page's poll keeps the timeline and the tab's title up to date."""

from __future__ import annotations

import re

from django.db import connection
from django.test.utils import CaptureQueriesContext
from factories import make_job, put_job

from tasks_app.models import KLING_ACCOUNT_FULL, JobStatus

HTMX = {"HTTP_HX_REQUEST": "true"}


def poll(client, job, shown: str | None):
    query = {} if shown is None else {"shown": shown}
    return client.get(job.get_absolute_url(), query, **HTMX)


def timeline(body: str) -> str:
    """The timeline section in a page or poll, or "" when it carries none."""
    match = re.search(r'<section id="job-timeline".*?</section>', body, re.S)
    return match.group(0) if match else ""


class TestTheLiveTimeline:
    def test_the_page_polls_saying_what_its_timeline_shows(self, alice, user):
        job = make_job(user, status=JobStatus.PROCESSING)

        body = alice.get(job.get_absolute_url()).content.decode()

        assert f'hx-get="{job.get_absolute_url()}?shown=processing"' in body
        assert body.count('id="job-timeline"') == 1

    def test_a_poll_after_a_change_carries_the_new_timeline_out_of_band(self, alice, user):
        job = make_job(user, status=JobStatus.PROCESSING)

        body = poll(alice, job, shown="sent").content.decode()

        section = timeline(body)
        assert 'hx-swap-oob="true"' in section
        assert "processing for the test" in section  # the job's event
        assert 'hx-get="' + job.get_absolute_url() + '?shown=processing"' in body

    def test_a_poll_without_a_change_sends_no_timeline_and_reads_no_events(self, alice, user):
        job = make_job(user, status=JobStatus.PROCESSING)
        poll(alice, job, shown="processing")  # warm the session and the user

        with CaptureQueriesContext(connection) as queries:
            unchanged = poll(alice, job, shown="processing").content.decode()
        with CaptureQueriesContext(connection) as changed_queries:
            changed = poll(alice, job, shown="sent").content.decode()

        assert timeline(unchanged) == ""
        assert timeline(changed) != ""
        assert len(changed_queries) == len(queries) + 1
        assert not any("tasks_app_jobevent" in q["sql"] for q in queries.captured_queries)

    def test_a_job_waiting_for_a_free_slot_says_so_in_its_timeline(self, alice, user):
        waiting = put_job(make_job(user), error_code=KLING_ACCOUNT_FULL)
        refused_otherwise = put_job(make_job(user), error_code=1102)

        body = alice.get(waiting.get_absolute_url()).content.decode()
        other = alice.get(refused_otherwise.get_absolute_url()).content.decode()

        assert "Waiting for a free slot at Kling" in timeline(body)
        assert '?shown=pending-slot"' in body
        assert "Waiting for a free slot at Kling" not in other
        # Once it is sent, the poll replaces the timeline without the waiting line.
        put_job(waiting, status=JobStatus.SENT, kling_task_id="task-1", error_code=None)
        after = poll(alice, waiting, shown="pending-slot").content.decode()
        assert "Waiting for a free slot at Kling" not in timeline(after)


class TestTheTabTitle:
    def test_a_poll_that_finds_the_job_ended_retitles_the_tab_and_stops(self, alice, user):
        job = make_job(user, status=JobStatus.SUCCEEDED)

        response = poll(alice, job, shown="processing")

        assert response.status_code == 286
        assert f"<title>Ready · Lip-sync #{job.pk} · Lip-Sync Studio</title>" in (
            response.content.decode()
        )

    def test_a_failed_job_says_failed_in_the_title(self, alice, user):
        job = make_job(user, status=JobStatus.FAILED)

        body = alice.get(job.get_absolute_url()).content.decode()

        assert re.search(rf"<title>\s*Failed · Lip-sync #{job.pk} · Lip-Sync Studio", body)
        assert f'data-ended="Failed · Lip-sync #{job.pk}"' in body

    def test_a_running_job_has_its_plain_title_and_no_title_in_its_polls(self, alice, user):
        job = make_job(user, status=JobStatus.PROCESSING)

        page = alice.get(job.get_absolute_url()).content.decode()
        polled = poll(alice, job, shown="sent").content.decode()

        assert re.search(rf"<title>\s*Lip-sync #{job.pk} · Lip-Sync Studio", page)
        assert "<title>" not in polled
        assert "data-ended=" not in polled
        assert "data-notify-opt-in" in polled  # the offer to be told, kept by the poll
