"""A team's workspace in a real browser: only its own jobs, a search in place, its own copy."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from browser.flows import JOB_TIMEOUT_MS, alice, play_result, submit_text_job
from factories import make_job, make_member
from playwright.sync_api import Browser, Page, Request, Response, expect

from tasks_app.models import Job, JobStatus, Team

# A job takes about 6 s on the test simulator; the rest is room for a slow machine.
# The worker copies the result after the job succeeds: one download from the simulator.
COPY_TIMEOUT_S = 30
ROWS = "table.jobs tbody tr"

# Set once the page has loaded; htmx swaps keep it, a reload or a navigation would not.
MARK_WINDOW = "() => { window.studioTestMarker = 'loaded once'; }"
MARKER = "() => window.studioTestMarker"


@pytest.fixture
def new_tab(browser: Browser, studio) -> Iterator[Callable[[], Page]]:
    """``new_tab()``: a tab in a browser context of its own (its own cookies, its own login)."""
    contexts = []
    problems: list[str] = []

    def on_response(response: Response) -> None:
        if response.status >= 500:
            problems.append(f"HTTP {response.status} from {response.request.method} {response.url}")

    def open_tab() -> Page:
        context = browser.new_context(
            base_url=studio.url, viewport={"width": 1280, "height": 900}, locale="en-US"
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        tab = context.new_page()
        tab.on("response", on_response)
        tab.on("pageerror", lambda err: problems.append(f"script error: {err}"))
        return tab

    yield open_tab
    for context in contexts:
        context.close()
    assert not problems, problems


def wait_for_the_stored_copy(job_id: int) -> Job:
    """The job once the worker's store_result task has kept its video in the studio."""
    deadline = time.monotonic() + COPY_TIMEOUT_S
    while True:
        job = Job.objects.get(pk=job_id)
        if job.stored_video:
            return job
        assert not job.store_error, f"the copy failed: {job.store_error}"
        assert time.monotonic() < deadline, "the worker never stored a copy of the result"
        time.sleep(0.2)


def assert_not_found(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 404, url
    expect(page.locator("main h1")).to_have_text("Not found")


class TestTwoTeams:
    def test_each_person_sees_only_their_own_teams_jobs_and_gets_a_404_for_the_other(
        self, page: Page, studio, new_tab
    ):
        bob = make_member("bob", Team.objects.create(name="Studio B"))
        # Stored as the form stores them; the worker thread sends them to the simulator.
        alices_job = make_job(alice(), text="Alice rehearses the harbour scene")
        bobs_job = make_job(bob, text="Bob records the mountain scene")

        studio.log_in(page, then="/tasks/")
        bob_tab = new_tab()
        replace(studio, username="bob").log_in(bob_tab, then="/tasks/")

        for tab, team, own, other in (
            (page, "Studio A", alices_job, bobs_job),
            (bob_tab, "Studio B", bobs_job, alices_job),
        ):
            expect(tab.locator("main h1")).to_contain_text(team)
            rows = tab.locator(ROWS)
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text(own.text)
            expect(tab.locator("#job-results")).not_to_contain_text(other.text)

            assert_not_found(tab, other.get_absolute_url())
            expect(tab.locator("main")).not_to_contain_text(other.text)
            video = tab.request.get(f"/tasks/{other.pk}/video/", max_redirects=0)
            assert video.status == 404, video.status

            response = tab.goto(own.get_absolute_url())
            assert response is not None and response.status == 200
            expect(tab.locator("main")).to_contain_text(own.text)


class TestTheSearchBox:
    def test_typing_narrows_the_list_in_place_and_puts_the_search_in_the_url(
        self, page: Page, studio
    ):
        make_job(alice(), status=JobStatus.SUCCEEDED, text="Welcome to the harbour")
        make_job(alice(), status=JobStatus.SUCCEEDED, text="Welcome back, captain")
        make_job(alice(), status=JobStatus.SUCCEEDED, text="Goodbye from the harbour")
        make_job(alice(), status=JobStatus.SUCCEEDED, text="The mountain is quiet")

        studio.log_in(page, then="/tasks/")
        rows = page.locator(ROWS)
        expect(rows).to_have_count(4)
        page.evaluate(MARK_WINDOW)
        documents: list[str] = []
        page.on(
            "request",
            lambda request: (
                documents.append(request.url) if request.resource_type == "document" else None
            ),
        )

        search = page.locator("input[name=q]")
        with page.expect_response(
            lambda r: "q=harbour" in r.url and r.request.headers.get("hx-request") == "true"
        ):
            search.fill("harbour")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("harbour")
        expect(rows.nth(1)).to_contain_text("harbour")
        expect(page.locator("#job-results")).not_to_contain_text("captain")
        expect(page.locator("#job-results")).not_to_contain_text("mountain")
        expect(page).to_have_url(re.compile(r"/tasks/\?(.*&)?q=harbour(&|$)"))

        search.fill("welcome back")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Welcome back, captain")
        expect(page).to_have_url(re.compile(r"[?&]q=welcome(\+|%20)back(&|$)"))

        assert page.evaluate(MARKER) == "loaded once", "the page was reloaded"
        assert documents == [], documents


class TestAFinishedJob:
    def test_it_plays_from_the_studios_own_copy_not_from_the_simulator(
        self, page: Page, studio, screenshot
    ):
        studio.log_in(page, then="/tasks/new/")
        job_id = submit_text_job(page, "Played from the studio's own shelf")
        expect(page.locator("section#job-status")).to_have_class(
            re.compile(r"\bstatus-succeeded\b"), timeout=JOB_TIMEOUT_MS
        )
        job = wait_for_the_stored_copy(job_id)
        assert job.stored_size and job.stored_size > 0

        video_path = f"/tasks/{job_id}/video/"
        video_responses: list[Response] = []
        simulator_requests: list[str] = []

        def on_request(request: Request) -> None:
            if request.url.startswith(studio.kling.url) or "/assets/" in request.url:
                simulator_requests.append(request.url)

        def on_response(response: Response) -> None:
            if response.url.split("?")[0].endswith(video_path):
                video_responses.append(response)

        page.on("request", on_request)
        page.on("response", on_response)
        page.reload()

        expect(page.get_by_test_id("copy-state")).to_contain_text("Kept in the studio")
        play_result(page)

        assert video_responses, "the browser never asked the studio for the video"
        for response in video_responses:
            assert response.url.startswith(studio.url), response.url
            assert response.status in (200, 206), (response.status, response.headers)
        assert simulator_requests == [], simulator_requests
        screenshot("workspace-played-from-the-studio")


class TestTheRowButtons:
    def test_archive_and_try_again_work_from_the_list_and_keep_its_search(self, page: Page, studio):
        archived = make_job(alice(), status=JobStatus.SUCCEEDED, text="Harbour scene, first take")
        kept = make_job(alice(), status=JobStatus.SUCCEEDED, text="Harbour scene, second take")
        failed = make_job(alice(), status=JobStatus.FAILED, text="Harbour scene, lost take")
        make_job(alice(), status=JobStatus.SUCCEEDED, text="The mountain is quiet")

        studio.log_in(page, then="/tasks/?q=harbour")
        rows = page.locator(ROWS)
        expect(rows).to_have_count(3)

        # The buttons sit in the rows but post the page's one #row-actions form (its CSRF
        # token and the way back): the HTML form= attribute, which this checks a browser keeps.
        page.get_by_role("button", name=f"Archive #{archived.pk}").click()
        expect(rows).to_have_count(2)
        expect(page).to_have_url(re.compile(r"/tasks/\?q=harbour$"))
        expect(page.locator("#job-results")).not_to_contain_text("first take")
        assert Job.objects.get(pk=archived.pk).archived_at is not None
        assert Job.objects.get(pk=kept.pk).archived_at is None

        page.get_by_role("button", name=f"Try again #{failed.pk}").click()
        again = Job.objects.get(retry_of=failed)
        expect(page).to_have_url(re.compile(rf"/tasks/{again.pk}/$"))
        expect(page.locator("main")).to_contain_text("Harbour scene, lost take")
