"""Every page of the studio, checked by axe-core in a real browser.

axe (tests/browser/assets/axe.min.js, vendored) runs on each page in each state a person can
see; a violation that axe calls "serious" or "critical" fails the test and is printed with the
elements it was found on. Minor and moderate findings are left to a person's judgement.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from browser.axe import assert_accessible
from browser.flows import (
    JOB_URL,
    alice,
    choose_text,
    choose_video_without_a_face,
    job_form,
    submit,
    submit_text_job,
    wait_for_status,
)
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from factories import make_job, make_member
from playwright.sync_api import Page, expect

from tasks_app.models import Job, JobStatus, Membership, Profile, Team, TeamRole
from tasks_app.simulator import DEFAULT_ASSETS_DIR, DEMO_RESULT_NAME

# --- Jobs --------------------------------------------------------------------------------------


def fill_the_history() -> None:
    """Jobs in every status, a slow one, an archived one and an audio one; Alice in 2 teams."""
    make_job(alice(), status=JobStatus.PENDING, text="Waiting for its turn")
    make_job(
        alice(),
        status=JobStatus.SENT,
        text="Sent a while ago",
        sent_at=timezone.now() - timedelta(hours=1),
    )
    make_job(
        alice(), status=JobStatus.PROCESSING, text="Kling is on it", processing_at=timezone.now()
    )
    make_job(
        alice(),
        status=JobStatus.SUCCEEDED,
        text="Hello from the history",
        status_detail="Ready.",
        result_video_id="870000000000000001",
        credits=Decimal("0.5"),
    )
    make_job(
        alice(),
        status=JobStatus.FAILED,
        text="Nobody is there",
        status_detail="No human face was found.",
    )
    make_job(alice(), status=JobStatus.CANCELLED, text="Never mind")
    make_job(alice(), status=JobStatus.SUCCEEDED, text="Put away", archived_at=timezone.now())
    make_job(
        alice(),
        status=JobStatus.FAILED,
        text="",
        mode="audio2video",
        voice_id="",
        voice_language="",
        audio_url="https://example.com/voice.mp3",
    )
    # Finished since Alice last looked: the notices show on her next page.
    Profile.objects.update_or_create(
        user=alice(), defaults={"last_seen_at": timezone.now() - timedelta(hours=1)}
    )
    Membership.objects.create(
        team=Team.objects.create(name="Studio B"), user=alice(), role=TeamRole.ADMIN
    )


# --- The tests ---------------------------------------------------------------------------------


class TestThePagesBeforeLoggingIn:
    def test_the_login_page_passes_axe_empty_and_after_a_wrong_password(self, page: Page, studio):
        page.goto("/accounts/login/")
        expect(page.locator("#id_username")).to_be_visible()
        assert_accessible(page, "the login page")

        page.locator("#id_username").fill("alice")
        page.locator("#id_password").fill("not the password")
        page.locator('form[action$="/accounts/login/"] button[type="submit"]').click()
        expect(page.locator(".errorlist")).to_be_visible()
        assert_accessible(page, "the login page after a wrong password")


class TestTheHistoryPage:
    def test_an_empty_history_passes_axe(self, page: Page, studio):
        studio.log_in(page, then="/tasks/")
        expect(page.locator("#job-results .empty")).to_be_visible()
        assert_accessible(page, "the empty history")

    def test_a_history_with_jobs_in_every_state_passes_axe_with_and_without_filters(
        self, page: Page, studio
    ):
        fill_the_history()
        studio.log_in(page, then="/tasks/")
        expect(page.locator("table.jobs tbody tr")).to_have_count(7)
        expect(page.locator("#notices .notice").first).to_be_visible()
        expect(page.locator("#team-switch")).to_be_visible()
        assert_accessible(page, "the history with jobs")

        # A filter chosen in the form swaps the results in place.
        page.locator("#id_status").select_option("failed")
        expect(page).to_have_url(re.compile(r"status=failed"))
        expect(page.locator("table.jobs tbody tr")).to_have_count(2)
        assert_accessible(page, "the history filtered by status")

        page.goto("/tasks/?archived=on&q=put")
        expect(page.locator("table.jobs tbody tr")).to_have_count(1)
        assert_accessible(page, "the history with archived jobs and a search")

        page.goto("/tasks/?q=nothing+is+called+this")
        expect(page.locator("#job-results .empty")).to_be_visible()
        assert_accessible(page, "the history with no match")

    def test_the_history_in_chinese_passes_axe(self, page: Page, studio):
        fill_the_history()
        studio.log_in(page, then="/tasks/")
        page.locator("#language-switch").select_option("zh-hans")
        page.locator("form.language-switch button[type='submit']").click()
        expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
        expect(page.locator("table.jobs tbody tr")).to_have_count(7)
        assert_accessible(page, "the history in Chinese")


class TestTheJobForm:
    def test_the_form_passes_axe_on_the_text_path_and_the_audio_path(self, page: Page, studio):
        studio.log_in(page, then="/tasks/new/")
        form = job_form(page)
        form.locator("#id_text").fill("Counting what I type")
        expect(page.locator("#text-counter")).to_have_text(re.compile(r"\d+ / \d+"))
        assert_accessible(page, "the form, text path")

        form.locator('input[name="mode"][value="audio2video"]').check()
        form.locator('input[name="audio_source"][value="file"]').check()
        expect(form.locator("#id_audio_file")).to_be_visible()
        assert_accessible(page, "the form, audio file path")

        form.locator('input[name="audio_source"][value="url"]').check()
        form.locator('input[name="video_source"][value="video_url"]').check()
        expect(form.locator("#id_audio_url")).to_be_visible()
        assert_accessible(page, "the form, audio and video link path")

    def test_the_form_passes_axe_after_a_submit_that_failed(self, page: Page, studio):
        studio.log_in(page, then="/tasks/new/")
        form = job_form(page)
        form.locator("#id_text").fill("x" * 130)
        form.locator('button[type="submit"]').click()
        expect(page.locator(".form-error-summary")).to_be_visible()
        expect(page.locator("[aria-invalid=true]").first).to_be_visible()
        assert_accessible(page, "the form with errors")


class TestAJobPage:
    def test_a_job_page_passes_axe_while_running_when_ready_and_when_failed(
        self, page: Page, studio
    ):
        studio.log_in(page, then="/tasks/new/")
        # The simulator's sample without a face: the studio warns, the person sends it anyway,
        # and the simulator fails it as Kling does.
        form = job_form(page)
        choose_text(form, "Nobody is there")
        choose_video_without_a_face(page, form, f"{studio.kling.url}/samples/sample-noface.mp4")
        failing = submit(page, form)
        ready = submit_text_job(page, "Hello from the accessibility test")
        expect(page.locator("section#job-status")).to_have_class(
            re.compile(r"\bstatus-(pending|sent|processing)\b")
        )
        assert_accessible(page, "a running job")

        wait_for_status(page, "succeeded")
        expect(page.get_by_test_id("result-video")).to_be_visible()
        assert_accessible(page, "a ready job")
        shown = JOB_URL.search(page.url)
        assert shown
        assert shown.group(1) == str(ready)

        page.goto(f"/tasks/{failing}/")
        wait_for_status(page, "failed")
        assert_accessible(page, "a failed job")

    def test_the_status_region_announces_changes_politely(self, page: Page, studio):
        job = make_job(alice(), status=JobStatus.PENDING, text="Waiting for its turn")
        studio.log_in(page, then=job.get_absolute_url())
        live = page.locator('#job-status [aria-live="polite"]')
        expect(live).to_have_count(1)
        expect(live).to_contain_text(re.compile(r"\S"))
        assert_accessible(page, "a pending job")

    def test_a_job_page_that_lost_contact_with_the_studio_passes_axe(self, page: Page, studio):
        job = make_job(
            alice(),
            status=JobStatus.PROCESSING,
            text="Kling is on it",
            processing_at=timezone.now(),
        )
        studio.log_in(page, then=job.get_absolute_url())
        # The next poll cannot reach the server: the page keeps the status and says so.
        polls = re.compile(rf"{re.escape(job.get_absolute_url())}\?shown=")
        page.route(polls, lambda route: route.abort())
        expect(page.locator("section#job-status")).to_have_class(re.compile(r"\bstale\b"))
        expect(page.locator("#job-status .reconnecting")).to_be_visible()
        assert_accessible(page, "a job page reconnecting")


class TestTheAccountPages:
    def test_the_account_and_password_pages_pass_axe(self, page: Page, studio):
        Membership.objects.create(
            team=Team.objects.create(name="Studio B"), user=alice(), role=TeamRole.ADMIN
        )
        studio.log_in(page, then="/account/")
        assert_accessible(page, "the account page")

        page.locator('a[href$="/accounts/password_change/"]').click()
        expect(page.locator("#id_old_password")).to_be_visible()
        assert_accessible(page, "the password change form")

        page.locator("#id_old_password").fill("not the old password")
        page.locator("#id_new_password1").fill("short")
        page.locator("#id_new_password2").fill("different")
        page.locator('main form button[type="submit"]').click()
        expect(page.locator(".errorlist").first).to_be_visible()
        assert_accessible(page, "the password change form with errors")

        page.locator("#id_old_password").fill(studio.password)
        page.locator("#id_new_password1").fill("a new and long passphrase 42")
        page.locator("#id_new_password2").fill("a new and long passphrase 42")
        page.locator('main form button[type="submit"]').click()
        expect(page).to_have_url(re.compile(r"/password_change/done/$"))
        assert_accessible(page, "the password changed page")


class TestTheTeamPages:
    def test_the_team_page_passes_axe_for_an_admin_with_errors_and_for_a_member(
        self, page: Page, studio
    ):
        Membership.objects.filter(user=alice()).update(role=TeamRole.ADMIN)
        make_member("carol", Team.objects.get(name="Studio A"))
        studio.log_in(page, then="/team/")
        expect(page.locator("table.members tbody tr")).to_have_count(2)
        assert_accessible(page, "the team page of an admin")

        page.locator("#id_who").fill("nobody")
        page.locator('form[action$="/team/members/add/"] button[type="submit"]').click()
        expect(page.locator("#who-error")).to_be_visible()
        assert_accessible(page, "the team page after an unknown name")

        page.locator("#id_budget").fill("-1")
        page.locator('form[action$="/team/budget/"] button[type="submit"]').click()
        expect(page.locator(".errorlist").first).to_be_visible()
        assert_accessible(page, "the team page after a bad budget")

        Membership.objects.filter(user=alice()).update(role=TeamRole.MEMBER)
        page.goto("/team/")
        expect(page.locator('[data-testid="read-only"]')).to_be_visible()
        assert_accessible(page, "the team page of a member")

    def test_the_usage_page_passes_axe_empty_and_with_credits(self, page: Page, studio):
        studio.log_in(page, then="/team/usage/")
        assert_accessible(page, "the empty usage page")

        fill_the_history()
        page.goto("/team/usage/")
        expect(page.locator('[data-testid="person"]')).to_have_count(1)
        assert_accessible(page, "the usage page with credits")


class TestTheNotFoundPage:
    def test_the_404_page_passes_axe(self, page: Page, studio):
        studio.log_in(page, then="/tasks/")
        response = page.goto("/tasks/999999/")
        assert response is not None and response.status == 404
        assert_accessible(page, "the 404 page")


# --- Sharing a result --------------------------------------------------------------------------


class TestTheSharedPage:
    def test_a_shared_video_plays_without_a_log_in_and_both_pages_pass_axe(
        self, page: Page, studio, browser
    ):
        job = make_job(alice(), status=JobStatus.SUCCEEDED, text="Words only the team sees")
        asset = (DEFAULT_ASSETS_DIR / DEMO_RESULT_NAME).read_bytes()
        stored = default_storage.save(f"results/job-{job.pk}.mp4", ContentFile(asset))
        Job.objects.filter(pk=job.pk).update(stored_video=stored, stored_size=len(asset))
        studio.log_in(page, then=job.get_absolute_url())

        share = page.get_by_test_id("share")
        share.locator('input[name="days"]').fill("3")
        share.get_by_role("button", name="Share", exact=True).click()
        link = page.get_by_test_id("share-url")
        expect(link).to_be_visible()
        expect(page.get_by_test_id("share-link")).to_have_count(1)
        assert_accessible(page, "a ready job with a share link")
        url = link.input_value()
        assert "/share/" in url

        visitor = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
        try:
            public = visitor.new_page()
            response = public.goto(url)
            assert response is not None and response.status == 200
            assert (response.headers.get("x-robots-tag") or "").startswith("noindex")
            expect(public.get_by_test_id("ai-label")).to_have_text("AI-generated video")
            expect(public.get_by_role("link", name="Download the video")).to_be_visible()
            body = public.locator("body").inner_text()
            assert "Words only the team sees" not in body
            assert "alice" not in body
            video = public.get_by_test_id("shared-video")
            video.evaluate("async (v) => { v.muted = true; await v.play(); }")
            public.wait_for_function(
                "(v) => v.currentTime > 0", arg=video.element_handle(), timeout=15_000
            )
            assert_accessible(public, "the shared video's page")

            page.get_by_role("button", name=re.compile("^Revoke")).click()
            expect(page.get_by_text("Revoked", exact=True)).to_be_visible()
            gone = public.goto(url)
            assert gone is not None and gone.status == 404
        finally:
            visitor.close()
