"""The studio's layout from a phone to a wide screen, in a real browser.

At every width the document itself never scrolls sideways (the jobs table may scroll inside its
own .table-wrap), and the controls a person needs (the nav, the submit button, the main
actions) are on screen. Each page is saved to test-artifacts/layout-<page>-<width>.png.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from browser.flows import alice
from django.utils import timezone
from factories import make_job
from playwright.sync_api import Locator, Page, ViewportSize, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tasks_app.models import Job, JobStatus, Membership, Team, TeamRole
from tasks_app.simulator import DEMO_RESULT_NAME

VIEWPORTS: dict[str, ViewportSize] = {
    "phone": {"width": 375, "height": 740},
    "tablet": {"width": 768, "height": 1024},
    "wide": {"width": 1440, "height": 900},
}

# The elements that stick out past the right edge of the window (those outside .table-wrap,
# which may scroll on its own, first), so a failure names what to fix.
OVERFLOWING = """() => {
    const limit = window.innerWidth;
    const inWrap = (el) => el.parentElement && el.parentElement.closest(".table-wrap");
    return [...document.querySelectorAll("body *")]
        .filter((el) => el.getBoundingClientRect().right > limit + 0.5)
        .sort((a, b) => Boolean(inWrap(a)) - Boolean(inWrap(b)))
        .slice(0, 8)
        .map((el) => {
            const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
                + [...el.classList].map((c) => "." + c).join("");
            const right = Math.round(el.getBoundingClientRect().right);
            return `${name} (right edge ${right} px${inWrap(el) ? ", inside .table-wrap" : ""})`;
        });
}"""
LONG_LINK = "https://videos.example.com/studio/uploads/2026/11/" + "a-very-long-file-name-" * 4


def fill_the_studio(kling_url: str) -> Job:
    """A history with long texts and links, Alice in two teams; returns a ready job."""
    Membership.objects.create(
        team=Team.objects.create(name="Studio B with a rather long name"),
        user=alice(),
        role=TeamRole.MEMBER,
    )
    make_job(
        alice(), status=JobStatus.PROCESSING, text="Kling is on it", processing_at=timezone.now()
    )
    make_job(
        alice(),
        status=JobStatus.FAILED,
        text="W" * 120,
        video_id="",
        video_url=LONG_LINK + "noface.mp4",
        status_detail="No human face was found in the video.",
    )
    for n in range(3):
        make_job(
            alice(),
            status=JobStatus.SUCCEEDED,
            text=f"Line number {n} of a short story told by a face",
        )
    return make_job(
        alice(),
        status=JobStatus.SUCCEEDED,
        text="Hello from the layout test, with a line long enough to wrap on a phone",
        video_id="",
        video_url=LONG_LINK + "face.mp4",
        status_detail="Ready.",
        kling_task_id="827805475419399171827805475419399171",
        result_video_id="870000000000000001870000000000000001",
        result_video_url=f"{kling_url}/assets/{DEMO_RESULT_NAME}?task=layout",
        credits=Decimal("0.5"),
    )


FITS = "() => document.documentElement.scrollWidth <= window.innerWidth"


def assert_no_sideways_scrolling(page: Page, where: str) -> None:
    """The settled page is no wider than the window (a frame mid-swap may be, for a moment)."""
    try:
        page.wait_for_function(FITS, timeout=3_000)
    except PlaywrightTimeoutError:
        scroll_width, inner_width = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth]"
        )
        pytest.fail(
            f"{where}: the document is {scroll_width} px wide in a {inner_width} px window; "
            f"sticking out: {page.evaluate(OVERFLOWING)}",
            pytrace=False,
        )


def assert_on_screen(page: Page, locator: Locator, what: str) -> None:
    """Visible, and inside the window's width (a person can reach it by scrolling down)."""
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None, what
    inner_width = page.evaluate("() => window.innerWidth")
    assert box["x"] >= 0 and box["x"] + box["width"] <= inner_width + 0.5, (
        f"{what} is at x={box['x']:.0f}..{box['x'] + box['width']:.0f} in a {inner_width} px window"
    )


def assert_nav_on_screen(page: Page) -> None:
    nav = page.locator("header.topbar nav")
    for name in ("New lip-sync", "History", "Account"):
        assert_on_screen(page, nav.get_by_role("link", name=name), f"the nav's {name!r} link")
    assert_on_screen(page, nav.get_by_role("button", name="Log out alice"), "the log out button")
    assert_on_screen(page, nav.locator("#team-switch"), "the team switcher")


class TestTheLayout:
    @pytest.mark.parametrize("size", list(VIEWPORTS))
    def test_the_history_the_form_and_a_job_page_fit_the_window_without_sideways_scrolling(
        self, page: Page, studio, screenshot: Callable[[str], Path], size: str
    ):
        ready = fill_the_studio(studio.kling.url)
        viewport = VIEWPORTS[size]
        page.set_viewport_size(viewport)
        width = viewport["width"]

        studio.log_in(page, then="/tasks/")
        expect(page.locator("table.jobs tbody tr")).to_have_count(6)
        assert_no_sideways_scrolling(page, f"the history at {width} px")
        assert_nav_on_screen(page)
        assert_on_screen(page, page.locator(".table-wrap"), "the jobs table's frame")
        assert_on_screen(
            page, page.locator("form.filters button[type='submit']"), "the filters' button"
        )
        screenshot(f"layout-history-{width}")

        page.goto("/tasks/new/")
        form = page.locator("form.job-form")
        assert_no_sideways_scrolling(page, f"the form at {width} px")
        assert_nav_on_screen(page)
        assert_on_screen(page, form.locator("button[type='submit']"), "the submit button")
        assert_on_screen(page, form.locator("#id_text"), "the text field")
        screenshot(f"layout-form-{width}")
        form.locator('input[name="mode"][value="audio2video"]').check()
        form.locator('input[name="audio_source"][value="file"]').check()
        assert_on_screen(page, form.locator("#id_audio_file"), "the audio file field")
        assert_no_sideways_scrolling(page, f"the form's audio path at {width} px")

        page.goto(ready.get_absolute_url())
        video = page.get_by_test_id("result-video")
        page.wait_for_function(
            "(v) => v.readyState >= 1", arg=video.element_handle(), timeout=15_000
        )
        assert_no_sideways_scrolling(page, f"a job page at {width} px")
        assert_nav_on_screen(page)
        assert_on_screen(page, video, "the video")
        assert_on_screen(
            page, page.get_by_role("link", name="Download the video").last, "the download button"
        )
        assert_on_screen(page, page.get_by_role("button", name="Archive"), "the archive button")
        screenshot(f"layout-job-{width}")
