"""Telling people their jobs finished: a notice on their next page, a count in the tab, e-mail."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from factories import make_job

from tasks_app.models import JobStatus, Profile

pytestmark = pytest.mark.django_db

READY = "Your lip-sync “{}” is ready"
FAILED = "Your lip-sync “{}” failed"


def title_of(response) -> str:
    title = re.search(r"<title>(.*?)</title>", response.content.decode(), re.S)
    assert title
    return title[1]


def notices_of(response) -> str:
    """The notices block of a full page."""
    body = response.content.decode()
    notices = re.search(r'<div id="notices".*?</div>', body, re.S)
    assert notices
    return notices[0]


class TestTheNoticeOnTheNextPage:
    def test_a_job_that_finished_meanwhile_is_announced_once(self, kling, alice, user, run_job):
        alice.get("/tasks/")  # the person was here; then they went elsewhere
        job = run_job(make_job(user, text="Spring sale"))
        assert job.status == JobStatus.SUCCEEDED

        first = alice.get("/account/")
        second = alice.get("/account/")

        assert READY.format("Spring sale") in notices_of(first)
        assert f'href="/tasks/{job.pk}/"' in notices_of(first)
        assert title_of(first).startswith("(1) ")
        assert READY.format("Spring sale") not in second.content.decode()
        assert not title_of(second).startswith("(")

    def test_the_count_in_the_title_counts_every_finished_job(self, kling, alice, user, run_job):
        alice.get("/tasks/")
        one, two = make_job(user, text="First"), make_job(user, text="Second")
        run_job(one)
        two.refresh_from_db()
        assert two.status == JobStatus.SUCCEEDED

        page = alice.get("/tasks/")

        assert title_of(page).startswith("(2) ")
        assert READY.format("First") in notices_of(page)
        assert READY.format("Second") in notices_of(page)

    def test_a_job_that_finished_before_the_last_page_is_not_announced(
        self, kling, alice, user, run_job
    ):
        run_job(make_job(user, text="Old news"))
        alice.get("/tasks/")

        page = alice.get("/tasks/")

        assert "Old news" in page.content.decode()  # in the history...
        assert READY.format("Old news") not in page.content.decode()  # ...but no notice

    def test_background_polls_do_not_mark_it_seen(self, kling, alice, user, run_job):
        alice.get("/tasks/")
        job = run_job(make_job(user, text="Spring sale"))

        poll = alice.get(job.get_absolute_url(), HTTP_HX_REQUEST="true")
        live = alice.get("/tasks/live/", {"id": job.pk}, HTTP_HX_REQUEST="true")
        page = alice.get("/tasks/")

        assert poll.status_code == 286
        # The poll retitles the tab with the job's end, without a count of notices.
        assert "<title>Ready · " in poll.content.decode()
        assert READY.format("Spring sale") in live.content.decode()
        assert READY.format("Spring sale") in notices_of(page)
        assert title_of(page).startswith("(1) ")

    def test_a_failed_job_gives_a_failed_notice(self, kling, alice, user, run_job):
        alice.get("/tasks/")
        job = run_job(make_job(user, text="No face here", video_id="noface-860327812345"))
        assert job.status == JobStatus.FAILED

        page = alice.get("/tasks/")

        assert FAILED.format("No face here") in notices_of(page)
        assert "is ready" not in notices_of(page)
        assert title_of(page).startswith("(1) ")

    def test_a_teammate_gets_no_notice_for_alices_jobs(self, kling, user, carol, run_job):
        carol.get("/tasks/")
        run_job(make_job(user, text="Spring sale"))

        page = carol.get("/tasks/")

        assert "Spring sale" in page.content.decode()  # she sees the team's job...
        assert READY.format("Spring sale") not in page.content.decode()  # ...not a notice
        assert not title_of(page).startswith("(")

    def test_a_cancelled_job_gives_no_notice(self, alice, user):
        alice.get("/tasks/")
        job = make_job(user, text="Never mind")
        cancelled = alice.post(f"/tasks/{job.pk}/cancel/")
        # A job that ended meanwhile too, to show the notices do work on this page.
        make_job(user, status=JobStatus.SUCCEEDED, text="Spring sale", finished_at=timezone.now())

        page = alice.get("/tasks/")

        assert cancelled.status_code == 302
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED
        assert job.finished_at is not None  # it ended after Alice's last page, like the other
        assert "Never mind" in page.content.decode()  # in the history...
        assert "Never mind" not in notices_of(page)  # ...but no notice
        assert READY.format("Spring sale") in notices_of(page)
        assert title_of(page).startswith("(1) ")


class TestTheEmailWhenAJobFinishes:
    @pytest.fixture
    def wants_mail(self, user):
        user.email = "alice@studio.example"
        user.save()
        Profile.objects.update_or_create(user=user, defaults={"email_when_done": True})
        return user

    def test_is_sent_once_with_the_jobs_link(
        self, settings, kling, wants_mail, run_job, mailoutbox, worker, sim_clock
    ):
        job = make_job(wants_mail, text="Spring sale")
        worker()  # sent to Kling; the studio's public address only matters for the link
        settings.SITE_URL = "https://studio.example"
        sim_clock.advance(60)
        worker(all_scheduled=True)
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED

        assert len(mailoutbox) == 1
        mail = mailoutbox[0]
        assert mail.to == ["alice@studio.example"]
        assert mail.subject == READY.format("Spring sale")
        assert f"https://studio.example/tasks/{job.pk}/" in mail.body

    def test_a_failed_job_says_so(self, kling, wants_mail, run_job, mailoutbox):
        job = run_job(make_job(wants_mail, text="No face here", video_id="noface-86032781"))
        assert job.status == JobStatus.FAILED

        assert len(mailoutbox) == 1
        assert mailoutbox[0].subject == FAILED.format("No face here")
        assert f"/tasks/{job.pk}/" in mailoutbox[0].body

    def test_without_the_preference_no_mail_is_sent(self, kling, user, run_job, mailoutbox):
        user.email = "alice@studio.example"
        user.save()

        job = run_job(make_job(user))

        assert job.status == JobStatus.SUCCEEDED
        assert mailoutbox == []

    def test_without_an_address_no_mail_is_sent(self, kling, user, run_job, mailoutbox):
        Profile.objects.update_or_create(user=user, defaults={"email_when_done": True})

        job = run_job(make_job(user))

        assert job.status == JobStatus.SUCCEEDED
        assert mailoutbox == []

    def test_a_teammates_preference_does_not_mail_them_about_alices_job(
        self, kling, user, teammate, run_job, mailoutbox
    ):
        teammate.email = "carol@studio.example"
        teammate.save()
        Profile.objects.update_or_create(user=teammate, defaults={"email_when_done": True})

        run_job(make_job(user))

        assert mailoutbox == []


class TestTheAccountPage:
    def test_shows_the_preference_and_the_teams(self, alice, user, team):
        page = alice.get("/account/")

        body = page.content.decode()
        assert page.status_code == 200
        assert 'name="email_when_done"' in body
        checkbox = re.search(r'<input[^>]*name="email_when_done"[^>]*>', body)
        assert checkbox
        assert "checked" not in checkbox[0]
        assert team.name in body

    def test_turns_the_email_preference_on_and_off(self, alice, user):
        on = alice.post("/account/", {"email_when_done": "on"})
        assert on.status_code == 302
        assert Profile.objects.get(user=user).email_when_done is True
        page = alice.get("/account/").content.decode()
        checkbox = re.search(r'<input[^>]*name="email_when_done"[^>]*>', page)
        assert checkbox
        assert "checked" in checkbox[0]

        off = alice.post("/account/", {})
        assert off.status_code == 302
        assert Profile.objects.get(user=user).email_when_done is False

    def test_says_when_the_account_has_no_email_address(self, alice, user):
        assert "has no e-mail address" in alice.get("/account/").content.decode()
