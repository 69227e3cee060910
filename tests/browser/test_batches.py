"""A batch in a real browser, in demo mode: five lines typed in, followed live on the batch's
page until every row is ready, then every result downloaded as one ZIP."""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile

from browser.flows import JOB_TIMEOUT_MS, choose_kling_video, job_form
from playwright.sync_api import Page, expect

from tasks_app.models import Batch

BATCH_URL = re.compile(r"/tasks/batch/(\d+)/$")
LINES = [
    "Hello Anna, welcome to the team!",
    "Hello Ben, welcome to the team!",
    "Hello Chen, welcome to the team!",
    "Hello Dana, welcome to the team!",
    "Hello Eve, welcome to the team!",
]
# Five demo rows, sent one after another: several times one job's time, with room to spare.
BATCH_TIMEOUT_MS = 3 * JOB_TIMEOUT_MS


def wait_for_copies(page: Page, batch: Batch, *, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while batch.jobs.filter(stored_video="").exists():
        assert time.monotonic() < deadline, "the studio did not save every result in time"
        page.wait_for_timeout(250)


class TestABatchOfLines:
    def test_five_lines_become_five_videos_in_one_zip(self, page: Page, studio, screenshot):
        studio.log_in(page, then="/tasks/batch/new/")
        form = job_form(page)
        form.locator('input[name="way"][value="lines"]').check()
        form.locator("#id_lines").fill("\n".join(LINES))
        choose_kling_video(form)
        form.locator("#id_voice_id").select_option("genshin_vindi2")
        form.locator("#id_voice_language").select_option("en")
        form.locator("#id_voice_speed").fill("1.0")
        form.locator('input[name="consent"]').check()
        form.locator('button[type="submit"]').click()

        expect(page).to_have_url(BATCH_URL)
        match = BATCH_URL.search(page.url)
        assert match is not None
        batch = Batch.objects.get(pk=int(match.group(1)))
        rows = page.locator("#batch-rows tbody tr")
        expect(rows).to_have_count(5)
        for row, line in enumerate(LINES):
            expect(rows.nth(row)).to_contain_text(line)

        # The page follows the rows by itself (htmx) until every one is ready.
        ready = page.locator("#batch-rows tbody tr.status-succeeded")
        expect(ready).to_have_count(5, timeout=BATCH_TIMEOUT_MS)
        expect(page.get_by_test_id("batch-counts")).to_contain_text("5 ready")
        expect(page.locator("#batch-rows")).not_to_have_attribute("hx-trigger", re.compile("."))
        screenshot("batch-ready")

        # The studio copies each result once it is ready; the download holds the copies.
        wait_for_copies(page, batch)
        page.reload()
        expect(page.get_by_test_id("batch-saving")).to_have_count(0)
        with page.expect_download() as started:
            page.get_by_role("link", name="Download all").click()
        download = started.value
        assert download.suggested_filename == f"batch-{batch.pk}.zip"
        with zipfile.ZipFile(download.path()) as archive:
            names = archive.namelist()
            videos = [name for name in names if name.endswith(".mp4")]
            assert len(videos) == 5, names
            assert set(names) == {*videos, "manifest.csv"}
            assert videos[0] == "1-hello-anna-welcome-to-the-team.mp4"
            for name in videos:
                assert archive.getinfo(name).file_size > 0
            manifest = list(
                csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8-sig")))
            )
        assert [line["text"] for line in manifest] == LINES
        assert {line["status"] for line in manifest} == {"succeeded"}
        assert [line["file_name"] for line in manifest] == videos
