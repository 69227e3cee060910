"""What the browser tests do on the studio's pages as a person would, written once."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from playwright.sync_api import Locator, Page, expect

JOB_URL = re.compile(r"/tasks/(\d+)/$")
# A demo job takes 1 s + 3 s on the tests' simulator; the rest is slack for a loaded machine.
JOB_TIMEOUT_MS = 40_000


def alice():
    return get_user_model().objects.get(username="alice")


def job_form(page: Page) -> Locator:
    form = page.locator("form.job-form")
    expect(form).to_be_visible()
    return form


def choose_kling_video(form: Locator, video_id: str = "860327812345678901") -> None:
    form.locator('input[name="video_source"][value="video_id"]').check()
    form.locator("#id_video_id").fill(video_id)


def choose_video_link(form: Locator, video_url: str) -> None:
    """Give a link and wait for the studio's reading of it. Its answer (a preview or an error)
    grows the page above the speech fields: a person reads it before going on, and a click
    sent while it lands would hit whatever moved under the pointer."""
    form.locator('input[name="video_source"][value="video_url"]').check()
    form.locator("#id_video_url").fill(video_url)
    form.locator("#id_video_url").press("Tab")  # leaving the field is its change
    answered = form.get_by_test_id("video-check").locator('[data-testid="duration"], .errorlist')
    expect(answered.first).to_be_visible(timeout=20_000)


def choose_video_without_a_face(page: Page, form: Locator, video_url: str) -> None:
    """Give a link to a clip with no face in it, wait for the studio's warning, and tick
    "send anyway", as a person who knows better would. Choose everything else first: the
    check runs again on each change, and its answer replaces the warning."""
    choose_video_link(form, video_url)
    warning = page.get_by_test_id("face-warning")
    expect(warning).to_be_visible(timeout=20_000)
    warning.locator('input[name="confirm_no_face"]').check()


def choose_text(form: Locator, text: str) -> None:
    form.locator('input[name="mode"][value="text2video"]').check()
    form.locator("#id_text").fill(text)
    form.locator("#id_voice_id").select_option("genshin_vindi2")
    form.locator("#id_voice_language").select_option("en")
    form.locator("#id_voice_speed").fill("1.0")


def submit(page: Page, form: Locator) -> int:
    """Tick the consent box and send the form; return the id of the job page it lands on."""
    form.locator('input[name="consent"]').check()
    form.locator('button[type="submit"]').click()
    expect(page).to_have_url(JOB_URL)
    match = JOB_URL.search(page.url)
    assert match is not None
    return int(match.group(1))


def submit_text_job(page: Page, text: str, *, video_url: str | None = None) -> int:
    """Fill in the form for a text job as a person would, send it, return the job's id."""
    page.goto("/tasks/new/")
    form = job_form(page)
    if video_url:
        choose_video_link(form, video_url)
    else:
        choose_kling_video(form)
    choose_text(form, text)
    return submit(page, form)


def status_section(page: Page) -> Locator:
    return page.locator("section#job-status")


def wait_for_status(page: Page, status: str) -> None:
    expect(status_section(page)).to_have_class(
        re.compile(rf"\bstatus-{status}\b"), timeout=JOB_TIMEOUT_MS
    )


def play_result(page: Page) -> None:
    """Play the job page's result video until it advances, and check it decoded."""
    video = page.get_by_test_id("result-video")
    expect(video).to_be_visible()
    video.evaluate("async (v) => { v.muted = true; await v.play(); }")
    page.wait_for_function(
        "(v) => v.currentTime > 0 && !v.paused", arg=video.element_handle(), timeout=15_000
    )
    assert video.evaluate("(v) => v.error === null && v.videoWidth > 0")
    video.evaluate("(v) => v.pause()")
