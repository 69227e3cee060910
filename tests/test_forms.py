"""The job form: every Kling rule, checked before anything is saved or any credit is spent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.forms import modelform_factory
from django.urls import reverse
from factories import AUDIO_FORM, TEXT_FORM

from tasks_app.forms import JobForm
from tasks_app.models import Job

VIDEO_ID = "860327812345678901"


def text_data(**overrides) -> dict:
    """The text job the form posts, with ``overrides``; a field set to None is left out."""
    return {key: value for key, value in (TEXT_FORM | overrides).items() if value is not None}


def audio_data(**overrides) -> dict:
    """The same for an audio job."""
    return {key: value for key, value in (AUDIO_FORM | overrides).items() if value is not None}


def upload(content: bytes, name: str = "voice.wav", content_type: str = "audio/wav"):
    return SimpleUploadedFile(name, content, content_type=content_type)


def bound(data: dict, files: dict | None = None) -> JobForm:
    form = JobForm(data, files or {})
    form.is_valid()
    return form


def errors_of(form: JobForm, field: str) -> str:
    return " ".join(str(message) for message in form.errors.get(field, []))


class TestTheVideoSource:
    def test_a_video_id_alone_is_enough(self):
        form = bound(text_data())
        assert form.is_valid(), form.errors
        assert form.cleaned_data["video_id"] == VIDEO_ID
        assert form.cleaned_data["video_url"] == ""

    def test_a_video_link_alone_is_enough(self):
        form = bound(
            text_data(
                video_source="video_url", video_id="", video_url="https://example.com/clip.mp4"
            )
        )
        assert form.is_valid(), form.errors
        assert form.cleaned_data["video_url"] == "https://example.com/clip.mp4"

    def test_neither_an_id_nor_a_link_is_an_error_under_the_video_id(self):
        form = bound(text_data(video_id=""))
        assert not form.is_valid()
        assert "Give the source video" in errors_of(form, "video_id")

    def test_neither_is_an_error_under_the_link_when_the_link_was_chosen(self):
        form = bound(text_data(video_source="video_url", video_id=""))
        assert "Give the source video" in errors_of(form, "video_url")
        assert "video_id" not in form.errors

    def test_both_without_a_choice_is_an_error(self):
        form = bound(text_data(video_source="", video_url="https://example.com/clip.mp4"))
        assert not form.is_valid()
        assert "not both" in errors_of(form, "video_url")

    def test_the_chosen_id_wins_when_both_are_filled(self):
        form = bound(text_data(video_url="https://example.com/clip.mp4"))
        assert form.is_valid(), form.errors
        job_input = form.to_job_input()
        assert job_input.video_id == VIDEO_ID
        assert job_input.video_url == ""

    def test_the_chosen_link_wins_when_both_are_filled_and_drops_the_task_id(self):
        form = bound(
            text_data(
                video_source="video_url",
                video_url="https://example.com/clip.mp4",
                task_id="parent123",
            )
        )
        assert form.is_valid(), form.errors
        job_input = form.to_job_input()
        assert job_input.video_id == ""
        assert job_input.parent_task_id == ""
        assert job_input.video_url == "https://example.com/clip.mp4"

    # The file's content is read by check_sources() (tests/test_source_form.py); these are
    # the form's own rules about which source counts.
    def test_a_chosen_file_wins_and_drops_the_id_and_link(self):
        clip = SimpleUploadedFile("clip.mp4", b"\x00" * 64, "video/mp4")
        form = bound(
            text_data(video_source="video_file", video_url="https://example.com/clip.mp4"),
            {"video_file": clip},
        )
        assert form.is_valid(), form.errors
        data = form.cleaned_data
        assert (data["video_id"], data["video_url"], data["video_file"]) == ("", "", clip)

    def test_choosing_a_file_without_one_is_an_error_under_the_file(self):
        form = bound(text_data(video_source="video_file", video_id=""))
        assert "Give the source video" in errors_of(form, "video_file")

    def test_an_id_and_a_file_without_a_choice_is_an_error(self):
        clip = SimpleUploadedFile("clip.mp4", b"\x00" * 64, "video/mp4")
        form = bound(text_data(video_source=""), {"video_file": clip})
        assert "not two" in errors_of(form, "video_url")

    def test_an_empty_video_file_is_refused(self):
        clip = SimpleUploadedFile("clip.mp4", b"", "video/mp4")
        form = bound(text_data(video_source="video_file", video_id=""), {"video_file": clip})
        assert "empty" in errors_of(form, "video_file")

    def test_a_file_needs_the_studios_public_address_in_live_mode(self, settings):
        settings.KLING_DEMO, settings.SITE_URL = False, None
        clip = SimpleUploadedFile("clip.mp4", b"\x00" * 64, "video/mp4")
        form = bound(text_data(video_source="video_file", video_id=""), {"video_file": clip})
        assert "no public address (SITE_URL)" in errors_of(form, "video_file")

    @pytest.mark.parametrize("value", ["abc-DEF_123", "8603278123", "a" * 128])
    def test_a_video_id_of_letters_digits_dash_and_underscore_is_accepted(self, value):
        assert bound(text_data(video_id=value)).is_valid()

    @pytest.mark.parametrize("value", ["abc def", "abc/../x", "id;drop", "视频", "a.b"])
    def test_a_video_id_with_other_characters_is_rejected(self, value):
        form = bound(text_data(video_id=value))
        assert "letters, digits" in errors_of(form, "video_id")

    def test_a_video_id_longer_than_128_characters_is_rejected(self):
        assert "video_id" in bound(text_data(video_id="a" * 129)).errors

    def test_a_parent_task_id_is_kept_with_a_video_id(self):
        form = bound(text_data(task_id="Cjik-2wQ_x"))
        assert form.is_valid(), form.errors
        assert form.to_job_input().parent_task_id == "Cjik-2wQ_x"

    @pytest.mark.parametrize("value", ["has space", "a+b=", "x/y"])
    def test_a_parent_task_id_with_other_characters_is_rejected(self, value):
        form = bound(text_data(task_id=value))
        assert "letters, digits" in errors_of(form, "task_id")


class TestTheVideoLink:
    def link(self, url: str) -> JobForm:
        return bound(text_data(video_source="video_url", video_id="", video_url=url))

    @pytest.mark.parametrize(
        "url",
        [
            "https://example.com/clip.mp4",
            "http://example.com/path/clip.mov",
            "https://example.com/CLIP.MP4",
            "https://example.com/clip.MoV",
            "https://example.com/clip.mp4?signature=abc&expires=1",
            "https://example.com/clip.mp4#t=2",
            "https://cdn.example.com:8443/a/b/clip.mp4",
        ],
    )
    def test_an_http_link_to_an_mp4_or_mov_file_is_accepted(self, url):
        form = self.link(url)
        assert form.is_valid(), form.errors

    @pytest.mark.parametrize(
        "url",
        [
            "javascript:alert(1)//clip.mp4",
            "file:///etc/clip.mp4",
            "ftp://example.com/clip.mp4",
            "data:video/mp4;base64,AAAA",
            "example.com/clip.mp4",
        ],
    )
    def test_a_link_that_is_not_http_or_https_is_rejected(self, url):
        assert "http:// or https://" in errors_of(self.link(url), "video_url")

    @pytest.mark.parametrize("url", ["http:///clip.mp4", "https://:443/clip.mp4"])
    def test_a_link_without_a_host_is_rejected(self, url):
        assert "http:// or https://" in errors_of(self.link(url), "video_url")

    @pytest.mark.parametrize(
        "url",
        ["https://user:secret@example.com/clip.mp4", "https://user@example.com/clip.mp4"],
    )
    def test_a_link_with_credentials_in_it_is_rejected(self, url):
        assert "user name or password" in errors_of(self.link(url), "video_url")

    @pytest.mark.parametrize(
        "url",
        [
            "https://example.com/clip.avi",
            "https://example.com/clip",
            "https://example.com/clip.mp4.html",
            "https://example.com/watch?file=clip.mp4",
        ],
    )
    def test_a_link_that_does_not_end_in_mp4_or_mov_is_rejected(self, url):
        assert ".mp4 / .mov" in errors_of(self.link(url), "video_url")

    def test_a_bad_link_gives_one_error_and_not_a_missing_video_error_too(self):
        form = self.link("ftp://example.com/clip.mp4")
        assert len(form.errors["video_url"]) == 1
        assert "video_id" not in form.errors

    def test_surrounding_spaces_are_trimmed(self):
        form = self.link("  https://example.com/clip.mp4  ")
        assert form.is_valid(), form.errors
        assert form.cleaned_data["video_url"] == "https://example.com/clip.mp4"


class TestTheText:
    def test_text_is_required_in_text_mode(self):
        form = bound(text_data(text=""))
        assert "Type what the person" in errors_of(form, "text")

    def test_only_spaces_count_as_no_text(self):
        assert "text" in bound(text_data(text="   \n  ")).errors

    def test_120_characters_are_accepted(self):
        form = bound(text_data(text="a" * 120))
        assert form.is_valid(), form.errors
        assert len(form.cleaned_data["text"]) == 120

    def test_121_characters_are_rejected_with_the_count_in_the_message(self):
        message = errors_of(bound(text_data(text="a" * 121)), "text")
        assert "at most 120" in message
        assert "121" in message

    def test_a_very_long_text_still_names_its_count(self):
        assert "500" in errors_of(bound(text_data(text="b" * 500)), "text")

    def test_120_chinese_characters_are_accepted(self):
        text = "你好世界" * 30
        form = bound(text_data(text=text, voice_language="zh"))
        assert form.is_valid(), form.errors
        assert form.cleaned_data["text"] == text

    def test_121_chinese_characters_are_rejected(self):
        assert "121" in errors_of(bound(text_data(text="你" * 121, voice_language="zh")), "text")

    def test_120_emoji_are_accepted(self):
        form = bound(text_data(text="😀" * 120))
        assert form.is_valid(), form.errors

    def test_emoji_joined_with_a_zero_width_joiner_are_accepted(self):
        form = bound(text_data(text="Coding all night \U0001f469\u200d\U0001f4bb!"))
        assert form.is_valid(), form.errors

    def test_121_emoji_are_rejected(self):
        assert "121" in errors_of(bound(text_data(text="😀" * 121)), "text")

    @pytest.mark.parametrize(
        "text",
        ["bell\x07", "zero\u200bwidth", "escape\x1b[31m", "rtl\u202eoverride"],
    )
    def test_control_characters_are_rejected(self, text):
        assert "control characters" in errors_of(bound(text_data(text=text)), "text")

    def test_a_null_character_is_rejected(self):
        assert "Null characters" in errors_of(bound(text_data(text="Hello\x00world")), "text")

    def test_newlines_are_folded_into_spaces(self):
        form = bound(text_data(text="Hello\r\nthere\n\n  friend"))
        assert form.is_valid(), form.errors
        assert form.cleaned_data["text"] == "Hello there friend"

    def test_folding_happens_before_counting(self):
        # 60 + 60 letters with a run of newlines between: 121 after folding, not 125.
        form = bound(text_data(text="a" * 60 + "\n\n\n\n" + "b" * 60))
        assert "121" in errors_of(form, "text")


class TestTheVoice:
    def test_a_voice_is_required_in_text_mode(self):
        assert "Choose a voice" in errors_of(bound(text_data(voice_id="")), "voice_id")

    def test_an_unknown_voice_is_rejected(self):
        form = bound(text_data(voice_id="not_a_voice"))
        assert "voice_id" in form.errors
        assert len(form.errors["voice_id"]) == 1

    @pytest.mark.parametrize(
        ("voice_id", "language"),
        [("genshin_vindi2", "en"), ("genshin_vindi2", "zh"), ("AOT", "en"), ("tiyuxi_xuedi", "zh")],
    )
    def test_a_language_the_voice_speaks_is_accepted(self, voice_id, language):
        form = bound(text_data(voice_id=voice_id, voice_language=language))
        assert form.is_valid(), form.errors
        assert form.cleaned_data["voice_language"] == language

    def test_an_english_only_voice_with_chinese_is_an_error_next_to_the_language(self):
        form = bound(text_data(voice_id="AOT", voice_language="zh"))
        message = errors_of(form, "voice_language")
        assert "Ace does not speak Chinese" in message
        assert "English" in message
        assert "voice_id" not in form.errors

    def test_a_chinese_only_voice_with_english_is_an_error_next_to_the_language(self):
        form = bound(text_data(voice_id="tiyuxi_xuedi", voice_language="en"))
        message = errors_of(form, "voice_language")
        assert "does not speak English" in message
        assert "Chinese" in message

    @pytest.mark.parametrize(
        ("voice_id", "expected"),
        [("AOT", "en"), ("tiyuxi_xuedi", "zh"), ("genshin_vindi2", "en")],
    )
    def test_an_empty_language_is_taken_from_the_voice(self, voice_id, expected):
        form = bound(text_data(voice_id=voice_id, voice_language=""))
        assert form.is_valid(), form.errors
        assert form.to_job_input().voice_language == expected

    def test_a_language_that_does_not_exist_is_rejected(self):
        assert "voice_language" in bound(text_data(voice_language="fr")).errors


class TestTheSpeed:
    @pytest.mark.parametrize("speed", ["0.8", "1.0", "1.3", "2.0", "2", "1.50"])
    def test_speeds_from_0_8_to_2_0_with_one_decimal_are_accepted(self, speed):
        form = bound(text_data(voice_speed=speed))
        assert form.is_valid(), form.errors
        assert form.cleaned_data["voice_speed"] == Decimal(speed)

    @pytest.mark.parametrize("speed", ["0.79", "0.7", "2.01", "2.1", "0", "-1", "10"])
    def test_speeds_outside_0_8_to_2_0_are_rejected(self, speed):
        assert "0.8 to 2.0" in errors_of(bound(text_data(voice_speed=speed)), "voice_speed")

    def test_a_speed_with_two_decimals_is_rejected(self):
        message = errors_of(bound(text_data(voice_speed="1.25")), "voice_speed")
        assert "one decimal place" in message

    @pytest.mark.parametrize("speed", ["NaN", "Infinity", "fast", "1,0"])
    def test_a_speed_that_is_not_a_number_is_rejected(self, speed):
        form = bound(text_data(voice_speed=speed))
        assert not form.is_valid()
        assert "voice_speed" in form.errors

    def test_no_speed_means_1_0(self):
        form = bound(text_data(voice_speed=""))
        assert form.is_valid(), form.errors
        assert form.to_job_input().voice_speed == Decimal("1.0")

    def test_the_speed_is_stored_with_one_decimal(self):
        form = bound(text_data(voice_speed="2"))
        assert str(form.to_job_input().voice_speed) == "2.0"


class TestTheAudioTrack:
    def test_an_audio_link_alone_is_enough(self):
        form = bound(audio_data())
        assert form.is_valid(), form.errors
        job_input = form.to_job_input()
        assert job_input.audio_url == "https://example.com/voice.mp3"
        assert job_input.audio_upload is None

    def test_an_audio_file_alone_is_enough(self, wav_bytes):
        form = bound(
            audio_data(audio_source="file", audio_url=""), {"audio_file": upload(wav_bytes)}
        )
        assert form.is_valid(), form.errors
        job_input = form.to_job_input()
        assert job_input.audio_upload is not None
        assert job_input.audio_name == "voice.wav"
        assert job_input.audio_url == ""

    def test_text_is_not_required_in_audio_mode(self):
        assert bound(audio_data(text="")).is_valid()

    def test_neither_a_file_nor_a_link_is_an_error(self):
        form = bound(audio_data(audio_source="file", audio_url=""))
        assert "Add the audio track" in errors_of(form, "audio_file")

    def test_neither_is_an_error_under_the_link_when_the_link_was_chosen(self):
        form = bound(audio_data(audio_url=""))
        assert "Add the audio track" in errors_of(form, "audio_url")

    def test_both_without_a_choice_is_an_error(self, wav_bytes):
        form = bound(audio_data(audio_source=""), {"audio_file": upload(wav_bytes)})
        assert "not both" in errors_of(form, "audio_url")

    def test_the_chosen_file_wins_when_both_are_given(self, wav_bytes):
        form = bound(audio_data(audio_source="file"), {"audio_file": upload(wav_bytes)})
        assert form.is_valid(), form.errors
        assert form.to_job_input().audio_url == ""

    def test_the_chosen_link_wins_when_both_are_given(self, wav_bytes):
        form = bound(audio_data(audio_source="url"), {"audio_file": upload(wav_bytes)})
        assert form.is_valid(), form.errors
        assert form.to_job_input().audio_upload is None

    @pytest.mark.parametrize(
        "url",
        [
            "https://example.com/voice.mp3",
            "https://example.com/voice.WAV",
            "http://example.com/a/voice.m4a?sig=1",
            "https://example.com/voice.aac",
        ],
    )
    def test_an_audio_link_to_an_accepted_format_is_accepted(self, url):
        assert bound(audio_data(audio_url=url)).is_valid()

    @pytest.mark.parametrize(
        "url",
        ["https://example.com/voice.ogg", "https://example.com/voice", "https://example.com/a.mp4"],
    )
    def test_an_audio_link_to_another_format_is_rejected(self, url):
        assert ".mp3 / .wav / .m4a / .aac" in errors_of(
            bound(audio_data(audio_url=url)), "audio_url"
        )

    @pytest.mark.parametrize(
        "url", ["javascript:alert(1)//a.mp3", "ftp://example.com/a.mp3", "https://u:p@x.com/a.mp3"]
    )
    def test_an_unsafe_audio_link_is_rejected(self, url):
        assert "audio_url" in bound(audio_data(audio_url=url)).errors

    def test_a_wav_file_is_recognised_by_its_content(self, wav_bytes):
        form = bound(
            audio_data(audio_source="file", audio_url=""),
            {"audio_file": upload(wav_bytes, "recording.bin", "application/octet-stream")},
        )
        assert form.is_valid(), form.errors

    def test_an_mp3_file_is_recognised_by_its_content(self, mp3_bytes):
        form = bound(
            audio_data(audio_source="file", audio_url=""),
            {"audio_file": upload(mp3_bytes, "voice.mp3", "audio/mpeg")},
        )
        assert form.is_valid(), form.errors

    def test_a_bare_mpeg_frame_without_a_tag_is_recognised_as_mp3(self):
        frame = b"\xff\xfb\x90\x64" + b"\x00" * 413
        form = bound(
            audio_data(audio_source="file", audio_url=""),
            {"audio_file": upload(frame, "voice.mp3", "audio/mpeg")},
        )
        assert form.is_valid(), form.errors

    @pytest.mark.parametrize(
        "content",
        [
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64,
            b"Hello, this is just a text file pretending to be audio.\n" * 4,
            b"%PDF-1.7\n" + b"\x00" * 64,
        ],
    )
    def test_a_file_named_mp3_that_is_not_audio_is_rejected(self, content):
        form = bound(
            audio_data(audio_source="file", audio_url=""),
            {"audio_file": upload(content, "voice.mp3", "audio/mpeg")},
        )
        assert "not MP3, WAV, M4A or AAC" in errors_of(form, "audio_file")

    def test_a_file_over_the_size_limit_is_rejected(self, settings, wav_bytes):
        settings.KLING_MAX_AUDIO_BYTES = 1024
        assert len(wav_bytes) > 1024
        form = bound(
            audio_data(audio_source="file", audio_url=""), {"audio_file": upload(wav_bytes)}
        )
        assert "larger than" in errors_of(form, "audio_file")

    def test_a_file_exactly_at_the_size_limit_is_accepted(self, settings, wav_bytes):
        settings.KLING_MAX_AUDIO_BYTES = len(wav_bytes)
        form = bound(
            audio_data(audio_source="file", audio_url=""), {"audio_file": upload(wav_bytes)}
        )
        assert form.is_valid(), form.errors

    def test_an_empty_file_is_rejected(self):
        form = bound(
            audio_data(audio_source="file", audio_url=""), {"audio_file": upload(b"", "a.mp3")}
        )
        assert "empty" in errors_of(form, "audio_file")

    def test_the_size_limit_is_shown_in_the_help_text(self, settings):
        settings.KLING_MAX_AUDIO_BYTES = 2 * 1024 * 1024
        assert "2 MB" in str(JobForm().fields["audio_file"].help_text)


class TestTheMode:
    def test_a_mode_is_required(self):
        assert "mode" in bound(text_data(mode="")).errors

    def test_an_unknown_mode_is_rejected(self):
        assert "mode" in bound(text_data(mode="video2video")).errors

    def test_a_text_job_keeps_every_input(self):
        form = bound(text_data(voice_id="AOT", voice_language="en", voice_speed="1.2"))
        assert form.is_valid(), form.errors
        job_input = form.to_job_input()
        assert (job_input.mode, job_input.video_id, job_input.text) == (
            "text2video",
            VIDEO_ID,
            "Hello from the studio",
        )
        assert (job_input.voice_id, job_input.voice_language, job_input.voice_speed) == (
            "AOT",
            "en",
            Decimal("1.2"),
        )

    def test_a_given_submission_key_is_kept_and_a_missing_one_is_made_up(self):
        key = "6f4b8a9e-6b1d-4f55-9a43-3d0b1f5e2c10"
        with_key = bound(text_data(submission_key=key))
        assert str(with_key.submission_key_value()) == key
        without = bound(text_data())
        made_up = without.submission_key_value()
        assert without.submission_key_value() == made_up  # chosen once, then fixed
        assert bound(text_data()).submission_key_value() != made_up


class TestFolderLikeVideoLinks:
    def test_a_link_ending_in_a_slash_is_not_a_video_file(self):
        form = JobForm(
            data={
                "video_source": "video_url",
                "video_url": "https://example.com/clip.mp4/",
                "mode": "text2video",
                "text": "Hello",
                "voice_id": "genshin_vindi2",
                "voice_language": "en",
                "voice_speed": "1.0",
            }
        )
        assert not form.is_valid()
        assert "video_url" in form.errors

    def test_a_tab_in_the_text_is_folded_like_a_newline(self):
        form = JobForm(
            data={
                "video_source": "video_id",
                "video_id": "860327812345678901",
                "mode": "text2video",
                "text": "Hello\tthere",
                "voice_id": "genshin_vindi2",
                "voice_language": "en",
                "voice_speed": "1.0",
                "consent": "on",
            }
        )
        assert form.is_valid(), form.errors
        assert form.cleaned_data["text"] == "Hello there"


# --- Links that only a real URL parser refuses (issue #13) --------------------------------------

NOT_A_LINK = "This is not a valid web link"
BROKEN_IPV6 = "http://[::1/a.mp4"
SPACE_IN_HOST = "https://exa mple.com/a.mp4"


class TestMalformedLinks:
    def video(self, url: str) -> JobForm:
        return bound(text_data(video_source="video_url", video_id="", video_url=url))

    def audio(self, url: str) -> JobForm:
        return bound(audio_data(audio_source="url", audio_url=url))

    @pytest.mark.parametrize(
        "url",
        [
            BROKEN_IPV6,
            "https://[::1/clip.mp4",
            "http://[::1]x/clip.mp4",
            "http://[not-an-address]/clip.mp4",
            SPACE_IN_HOST,
            "https://exa\tmple.com/clip.mp4",
            "https://example..com/clip.mp4",
            "https://-example.com/clip.mp4",
            "https://example.com:99999/clip.mp4",
            "https://example.com:port/clip.mp4",
            "https://example.com/my clip.mp4",
        ],
    )
    def test_a_malformed_video_link_is_an_error_next_to_the_field(self, url):
        form = self.video(url)
        assert NOT_A_LINK in errors_of(form, "video_url")
        assert len(form.errors["video_url"]) == 1
        assert "video_id" not in form.errors

    @pytest.mark.parametrize("url", ["http://[::1/voice.mp3", "https://exa mple.com/voice.mp3"])
    def test_a_malformed_audio_link_is_an_error_next_to_the_field(self, url):
        assert NOT_A_LINK in errors_of(self.audio(url), "audio_url")

    @pytest.mark.parametrize(
        "url",
        [
            "http://[2001:db8::1]/clip.mp4",
            "https://[2001:db8::1]:8443/clip.mp4",
            "https://例子.测试/clip.mp4",
            "https://xn--fsqu00a.xn--0zwm56d/clip.mp4",
            "https://example.com/my%20clip.mp4",
            "https://example.com:65535/clip.mp4",
        ],
    )
    def test_well_formed_links_are_still_accepted(self, url):
        form = self.video(url)
        assert form.is_valid(), form.errors


class TestTheAdminRefusesBadLinks:
    """The rule sits on the model's fields, so every model form, the admin's included, has it.

    The job admin shows a job's links read-only, so this builds the form the admin would build
    (``ModelAdmin.form``) for the two fields.
    """

    def admin_form(self, **data: str):
        form_class = modelform_factory(
            Job,
            form=admin.site._registry[Job].form,
            fields=["video_url", "audio_url"],
            # Django 6's default, stated now (Django 5.2 warns about the change otherwise).
            formfield_callback=lambda field, **kwargs: field.formfield(
                assume_scheme="https", **kwargs
            ),
        )
        form = form_class(data={"video_url": "", "audio_url": ""} | data)
        form.is_valid()
        return form

    @pytest.mark.parametrize(
        ("field", "url", "message"),
        [
            ("video_url", "ftp://example.com/clip.mp4", "http:// or https://"),
            ("video_url", "https://user:secret@example.com/clip.mp4", "user name or password"),
            ("video_url", "https://example.com/clip.avi", ".mp4 / .mov"),
            ("audio_url", "https://example.com/voice.txt", ".mp3 / .wav / .m4a / .aac"),
            ("audio_url", "ftps://example.com/voice.mp3", "http:// or https://"),
        ],
    )
    def test_a_bad_link_is_refused_with_the_studios_message(self, field, url, message):
        form = self.admin_form(**{field: url})
        assert message in errors_of(form, field)

    @pytest.mark.parametrize("url", [BROKEN_IPV6, SPACE_IN_HOST])
    def test_a_malformed_link_is_refused_without_an_exception(self, url):
        assert errors_of(self.admin_form(video_url=url), "video_url")

    def test_good_links_pass(self):
        form = self.admin_form(
            video_url="https://example.com/clip.mp4", audio_url="https://example.com/voice.mp3"
        )
        assert form.is_valid(), form.errors


@pytest.mark.django_db
class TestMalformedLinksNeverReachKling:
    @pytest.mark.parametrize("url", [BROKEN_IPV6, SPACE_IN_HOST])
    def test_the_page_says_what_is_wrong_and_nothing_is_sent(self, url, alice, kling, worker):
        data = text_data(video_source="video_url", video_id="", video_url=url)
        response = alice.post(reverse("tasks:create"), data)

        assert response.status_code == 400
        assert NOT_A_LINK in errors_of(response.context["form"], "video_url")
        assert NOT_A_LINK in response.content.decode()
        worker(all_scheduled=True)
        assert not Job.objects.exists()
        assert kling.create_calls == 0
