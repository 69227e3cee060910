"""A video from the person's computer, and the demo's sample videos, as a person meets them:
the studio reads the video as soon as it is chosen and shows what it found, and in demo mode
the job runs to its end (the simulator downloads the upload from the studio, as Kling does)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from browser.axe import assert_accessible
from browser.flows import alice, choose_text, job_form, play_result, submit, wait_for_status
from media_files import make_video
from playwright.sync_api import Locator, Page, expect

from tasks_app.models import Job

DIMENSIONS = "720 × 1280"  # noqa: RUF001 (a multiplication sign)


def image_loaded(image: Locator) -> bool:
    """Whether the browser fetched and decoded the image (not a broken-image icon), once it
    has finished with it: a lazy thumbnail may still be on its way when it becomes visible."""
    image.scroll_into_view_if_needed()
    return bool(
        image.evaluate(
            """(img) => img.complete ? img.naturalWidth > 0 : new Promise((done) => {
                img.addEventListener("load", () => done(img.naturalWidth > 0));
                img.addEventListener("error", () => done(false));
            })"""
        )
    )


def confirm_no_face_if_asked(page: Page) -> None:
    # The upload has a face; should the detector miss it, the person confirms, as they would.
    warning = page.get_by_test_id("face-warning")
    if warning.count() and warning.is_visible():
        warning.locator('input[name="confirm_no_face"]').check()


def test_an_uploaded_video_is_previewed_then_sent_and_the_job_finishes(
    page: Page, studio, settings, tmp_path: Path, screenshot
) -> None:
    # The worker links the upload to the address this studio serves on (make run's port in
    # real demo mode), and the simulator downloads it from there as Kling would.
    settings.DEMO_STUDIO_URL = studio.url
    studio.kling.config = dataclasses.replace(studio.kling.config, fetch_sources=True)
    clip = make_video(tmp_path / "greeting.mp4", seconds=3, width=720, height=1280)

    studio.log_in(page)
    form = job_form(page)
    form.locator('input[name="video_source"][value="video_file"]').check()
    form.locator("#id_video_file").set_input_files(clip)

    check = page.get_by_test_id("video-check")
    poster = check.get_by_test_id("poster")
    expect(poster).to_be_visible(timeout=20_000)
    assert image_loaded(poster)
    expect(check.get_by_test_id("duration")).to_have_text(re.compile(r"3\.0\s*s"))
    expect(check.get_by_test_id("dimensions")).to_contain_text(DIMENSIONS)
    expect(check.get_by_test_id("file-size")).to_have_text(re.compile(r"\d.*B"))
    screenshot("source-upload-preview")
    assert_accessible(page, "the form with an uploaded video's preview")

    choose_text(form, "Hello from my laptop")
    confirm_no_face_if_asked(page)
    job_id = submit(page, form)

    job = Job.objects.get(pk=job_id)
    assert job.submitted_by == alice()
    assert job.video_file and job.video_name == "greeting.mp4"
    source = page.get_by_test_id("source-video")
    expect(source).to_contain_text("greeting.mp4")
    expect(source).to_contain_text(DIMENSIONS)
    expect(source).to_contain_text(re.compile(r"3\.0\s*s"))
    expect(source.locator("img.source-poster")).to_be_visible()
    assert image_loaded(source.locator("img.source-poster"))

    wait_for_status(page, "succeeded")
    play_result(page)
    # The simulator was handed a link to the studio, not the file, and the link worked.
    (create,) = [r for r in studio.kling.requests if r.method == "POST" and r.body]
    video_url = create.body["input"]["video_url"]
    assert video_url.startswith(f"{studio.url}/")
    assert "greeting" not in video_url  # the person's file name is theirs, not the link's
    screenshot("source-upload-finished")
    assert_accessible(page, "the job page with its source video")

    page.goto("/tasks/")
    thumbnail = page.locator(f"#job-row-{job_id} img.row-poster")
    expect(thumbnail).to_be_visible()
    assert image_loaded(thumbnail)
    screenshot("source-history-thumbnail")
    assert_accessible(page, "the history with a thumbnail")


def test_the_sample_videos_show_each_check_in_demo_mode(page: Page, studio) -> None:
    studio.log_in(page)
    form = job_form(page)
    samples = page.get_by_test_id("sample-videos")
    expect(samples).to_contain_text("Try a sample video")
    assert_accessible(page, "the form offering sample videos")
    check = page.get_by_test_id("video-check")

    samples.get_by_role("link", name=re.compile("passes every check")).click()
    expect(form.locator("#id_video_url")).to_have_value(re.compile(r"/samples/sample-ok\.mp4$"))
    expect(form.locator("#id_video_url")).to_be_visible()
    expect(check.get_by_test_id("poster")).to_be_visible(timeout=20_000)
    expect(check.get_by_test_id("duration")).to_have_text(re.compile(r"4\.0\s*s"))
    expect(check.get_by_test_id("dimensions")).to_contain_text(DIMENSIONS)
    expect(check.get_by_test_id("face")).to_have_text(re.compile("found", re.I))
    expect(check.get_by_test_id("face")).not_to_have_text(re.compile("not", re.I))

    samples.get_by_role("link", name=re.compile("too long")).click()
    expect(page.locator(".job-form")).to_contain_text(re.compile(r"12\.0\s*s"), timeout=20_000)

    samples.get_by_role("link", name=re.compile("too small")).click()
    expect(page.locator(".job-form")).to_contain_text(re.compile(r"320"), timeout=20_000)

    samples.get_by_role("link", name=re.compile("No face")).click()
    expect(page.get_by_test_id("face-warning")).to_be_visible(timeout=20_000)

    # And one sample sent: the job finishes with the simulator's result video.
    samples.get_by_role("link", name=re.compile("passes every check")).click()
    expect(check.get_by_test_id("face")).to_be_visible(timeout=20_000)
    choose_text(form, "Hello from a sample")
    submit(page, form)
    wait_for_status(page, "succeeded")
    play_result(page)
