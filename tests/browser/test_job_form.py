"""The job form's progressive enhancement (static/js/studio.js) in a real browser."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


class TestTheJobForm:
    def test_choosing_a_video_link_shows_the_link_field_and_hides_the_id_field(
        self, page: Page, studio, screenshot
    ):
        studio.log_in(page, then="/tasks/new/")
        form = page.locator("form.job-form")
        expect(form.locator("#id_video_id")).to_be_visible()
        expect(form.locator("#id_video_url")).to_be_hidden()

        form.locator('input[name="video_source"][value="video_url"]').check()
        expect(form.locator("#id_video_url")).to_be_visible()
        expect(form.locator("#id_video_id")).to_be_hidden()

        screenshot("form-video-link")

        form.locator('input[name="video_source"][value="video_id"]').check()
        expect(form.locator("#id_video_id")).to_be_visible()
        expect(form.locator("#id_video_url")).to_be_hidden()

    def test_leaving_the_kling_id_field_moves_nothing_under_the_next_click(
        self, page: Page, studio
    ):
        # Leaving the field by clicking "Audio track" starts the studio's check; an answer that
        # grew the page between the press and the release of the button lost the click.
        studio.log_in(page, then="/tasks/new/")
        form = page.locator("form.job-form")
        form.locator("#id_video_id").fill("860327812345678901")
        audio = form.locator('input[name="mode"][value="audio2video"]')
        before = audio.bounding_box()

        with page.expect_response(re.compile(r"/tasks/new/check/$")):
            form.locator("#id_video_id").press("Tab")
        page.wait_for_timeout(100)  # htmx settles the swap after 20 ms

        assert audio.bounding_box() == before

    def test_choosing_an_audio_track_hides_the_text_and_voice_fields(
        self, page: Page, studio, screenshot
    ):
        studio.log_in(page, then="/tasks/new/")
        form = page.locator("form.job-form")
        speech_fields = ["#id_text", "#id_voice_id", "#id_voice_language", "#id_voice_speed"]
        for selector in speech_fields:
            expect(form.locator(selector)).to_be_visible()
        expect(form.locator("#id_audio_file")).to_be_hidden()

        form.locator('input[name="mode"][value="audio2video"]').check()
        for selector in speech_fields:
            expect(form.locator(selector)).to_be_hidden()
        expect(form.locator('input[name="audio_source"][value="file"]')).to_be_visible()
        expect(form.locator("#id_audio_file")).to_be_visible()
        screenshot("form-audio-track")

        form.locator('input[name="mode"][value="text2video"]').check()
        for selector in speech_fields:
            expect(form.locator(selector)).to_be_visible()

    def test_the_character_counter_follows_typing_and_flags_more_than_120(
        self, page: Page, studio, screenshot
    ):
        studio.log_in(page, then="/tasks/new/")
        form = page.locator("form.job-form")
        text = form.locator("#id_text")
        counter = form.locator('[data-counter-for="id_text"]')
        expect(counter).to_have_text(re.compile(r"^\s*0\s*/\s*120\s*$"))

        text.press_sequentially("Hello")
        expect(counter).to_have_text(re.compile(r"^\s*5\s*/\s*120\s*$"))
        expect(counter).not_to_have_class(re.compile(r"\bover\b"))

        text.fill("a" * 120)
        expect(counter).to_have_text(re.compile(r"^\s*120\s*/\s*120\s*$"))
        expect(counter).not_to_have_class(re.compile(r"\bover\b"))

        text.press_sequentially("b")
        expect(counter).to_have_text(re.compile(r"^\s*121\s*/\s*120\s*$"))
        expect(counter).to_have_class(re.compile(r"\bover\b"))
        screenshot("form-counter-over")

        text.press("Backspace")
        expect(counter).not_to_have_class(re.compile(r"\bover\b"))
