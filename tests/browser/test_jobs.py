"""A person's whole trip through the studio in a real browser: submit, watch, play, retry."""

from __future__ import annotations

import re

from browser.flows import (
    JOB_URL,
    choose_kling_video,
    choose_text,
    choose_video_without_a_face,
    job_form,
    play_result,
    status_section,
    submit,
    wait_for_status,
)
from media_files import audio_bytes
from playwright.sync_api import FilePayload, Page, expect

# A job here takes about 6 s (1 s submitted + 3 s processing on the simulator, plus the
# worker's and the page's polling); the rest is room for a slow CI machine.

# Set on the job page's window once it has loaded; it survives every htmx swap and would be
# gone after a reload. The observer records each status the page shows, in order.
WATCH_STATUS = """() => {
    window.studioTestMarker = "loaded once";
    window.studioTestStatuses = [];
    const record = () => {
        const section = document.querySelector("#job-status");
        const status = section && [...section.classList].find(
            (name) => name.startsWith("status-") && name !== "status-card");
        const seen = window.studioTestStatuses;
        if (status && seen[seen.length - 1] !== status) seen.push(status);
    };
    record();
    new MutationObserver(record).observe(document.body, {
        childList: true, subtree: true, attributes: true, attributeFilter: ["class"],
    });
}"""


class TestATextJob:
    def test_it_goes_from_the_form_to_a_playing_video_without_a_reload(
        self, page: Page, studio, screenshot
    ):
        studio.log_in(page, then="/tasks/new/")
        form = job_form(page)
        choose_kling_video(form)
        choose_text(form, "Hello from the browser test")
        submit(page, form)

        section = status_section(page)
        expect(section).to_have_class(re.compile(r"\bstatus-(pending|sent|processing)\b"))
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        polls: list[str] = []
        page.on("request", lambda request: polls.append(request.headers.get("hx-request", "")))
        page.evaluate(WATCH_STATUS)

        wait_for_status(page, "succeeded")
        expect(section.locator(".badge").first).to_have_text("Ready")
        expect(section.get_by_test_id("status-detail")).to_contain_text(re.compile("ready", re.I))

        # The status changed in place: same document, no navigation, htmx did the fetching.
        assert page.evaluate("window.studioTestMarker") == "loaded once"
        assert navigations == []
        assert "true" in polls, "the status section was never polled"
        statuses = page.evaluate("window.studioTestStatuses")
        assert statuses[0] in ("status-pending", "status-sent", "status-processing"), statuses
        assert statuses[-1] == "status-succeeded", statuses

        play_result(page)
        screenshot("text-job-ready")


class TestAnAudioFileJob:
    def test_an_uploaded_wav_reaches_the_ready_state(self, page: Page, studio, screenshot):
        studio.log_in(page, then="/tasks/new/")
        form = job_form(page)
        choose_kling_video(form)
        form.locator('input[name="mode"][value="audio2video"]').check()
        form.locator('input[name="audio_source"][value="file"]').check()
        form.locator("#id_audio_file").set_input_files(
            files=[
                FilePayload(name="voice.wav", mimeType="audio/wav", buffer=audio_bytes(seconds=3))
            ]
        )
        submit(page, form)

        wait_for_status(page, "succeeded")
        expect(status_section(page).locator(".badge").first).to_have_text("Ready")
        expect(page.get_by_test_id("result-video")).to_be_visible()
        expect(page.locator("main")).to_contain_text("voice.wav")
        screenshot("audio-job-ready")


class TestAFailedJob:
    def test_it_explains_the_failure_and_try_again_starts_a_new_job(
        self, page: Page, studio, screenshot
    ):
        studio.log_in(page, then="/tasks/new/")
        form = job_form(page)
        choose_text(form, "Nobody is there to say this")
        # The simulator's sample without a face: the studio warns, the person sends it anyway,
        # and the simulator fails it as Kling does.
        choose_video_without_a_face(page, form, f"{studio.kling.url}/samples/sample-noface.mp4")
        first_id = submit(page, form)

        wait_for_status(page, "failed")
        section = status_section(page)
        expect(section.locator(".badge").first).to_have_text("Failed")
        detail = section.get_by_test_id("status-detail")
        expect(detail).to_contain_text(re.compile(r"human face", re.I))
        expect(detail).not_to_contain_text("The model did not detect a human")
        expect(page.get_by_test_id("result-video")).to_have_count(0)
        screenshot("failed-job")

        section.locator('form[action$="/retry/"]').get_by_role("button", name="Try again").click()
        expect(page).not_to_have_url(re.compile(rf"/tasks/{first_id}/$"))
        expect(page).to_have_url(JOB_URL)
        match = JOB_URL.search(page.url)
        assert match is not None
        assert int(match.group(1)) != first_id
        expect(status_section(page)).to_be_visible()
        expect(page.locator("main")).to_contain_text(f"#{first_id}")
        screenshot("failed-job-retried")
