"""A person waiting on a job's page, in a real browser: the timeline, the tab, the notice."""

from __future__ import annotations

import re

from browser.flows import choose_kling_video, choose_text, job_form, submit, wait_for_status
from playwright.sync_api import Page, expect

# The browser's Notification API, recorded: headless Chromium shows no notifications, and the
# test checks what the page asked for (the permission is asked only after the click).
RECORD_NOTIFICATIONS = """
window.studioNotifications = [];
window.studioPermissionAsked = 0;
class RecordedNotification {
    static permission = "default";
    static requestPermission() {
        window.studioPermissionAsked += 1;
        RecordedNotification.permission = "granted";
        return Promise.resolve("granted");
    }
    constructor(title, options) {
        window.studioNotifications.push({title: title, body: options.body, tag: options.tag});
    }
}
window.Notification = RecordedNotification;
"""


class TestWaitingOnAJobPage:
    def test_the_timeline_title_and_a_desktop_notice_follow_the_job_to_its_end(
        self, page: Page, studio, screenshot
    ):
        page.context.add_init_script(RECORD_NOTIFICATIONS)
        studio.log_in(page, then="/tasks/new/")
        form = job_form(page)
        choose_kling_video(form)
        choose_text(form, "Tell me when it is done")
        job_id = submit(page, form)

        offer = page.get_by_role("button", name="Tell me on this computer when it is done")
        expect(offer).to_be_visible()
        assert page.evaluate("window.studioPermissionAsked") == 0
        offer.click()
        expect(offer).to_be_hidden()
        assert page.evaluate("window.studioPermissionAsked") == 1

        wait_for_status(page, "succeeded")

        expect(page).to_have_title(re.compile(rf"^Ready · Lip-sync #{job_id} · "))
        timeline = page.locator("#job-timeline")
        expect(timeline).to_contain_text("Ready")
        expect(timeline).to_contain_text("Sent to Kling")
        page.wait_for_function("window.studioNotifications.length === 1")
        (notice,) = page.evaluate("window.studioNotifications")
        assert notice["title"] == f"Ready · Lip-sync #{job_id}"
        assert notice["tag"] == f"/tasks/{job_id}/"
        assert "ready" in notice["body"].lower()
        screenshot("job-ended-with-a-notice")

    def test_without_the_opt_in_no_notice_is_shown(self, page: Page, studio):
        page.context.add_init_script(RECORD_NOTIFICATIONS)
        studio.log_in(page, then="/tasks/new/")
        form = job_form(page)
        choose_kling_video(form)
        choose_text(form, "Nobody asked to be told")
        job_id = submit(page, form)

        wait_for_status(page, "succeeded")

        expect(page).to_have_title(re.compile(rf"^Ready · Lip-sync #{job_id} · "))
        assert page.evaluate("window.studioNotifications") == []
        assert page.evaluate("window.studioPermissionAsked") == 0
