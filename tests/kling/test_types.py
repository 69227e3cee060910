"""The request dataclasses (shape and body) and the parsing of Kling's task objects."""

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tasks_app.kling import (
    AudioTrack,
    ErrorKind,
    KlingError,
    KlingTask,
    LipSyncRequest,
    Mode,
    TaskStatus,
    TextSpeech,
    Video,
    VideoSource,
)

VIDEO_URL = "https://cdn.example.com/face.mp4"
AUDIO_URL = "https://cdn.example.com/voice.mp3"
PARENT_URL = "https://cdn.example.com/p.mp4"
RESULT_URL = "https://cdn.example.com/r.mp4"


def text_speech(**overrides):
    fields = {"text": "Hello there", "voice_id": "genshin_vindi2", "voice_language": "en"}
    return TextSpeech(**(fields | overrides))


class TestVideoSource:
    def test_it_accepts_a_video_id_alone(self):
        source = VideoSource(video_id="860012345678901234")
        assert (source.video_id, source.video_url) == ("860012345678901234", None)

    def test_it_accepts_a_video_url_alone(self):
        source = VideoSource(video_url=VIDEO_URL)
        assert (source.video_id, source.video_url) == (None, VIDEO_URL)

    def test_it_refuses_both_keys(self):
        with pytest.raises(ValueError, match="exactly one"):
            VideoSource(video_id="860012345678901234", video_url=VIDEO_URL)

    def test_it_refuses_neither_key(self):
        with pytest.raises(ValueError, match="exactly one"):
            VideoSource()

    def test_it_treats_a_blank_key_as_absent(self):
        source = VideoSource(video_id="  ", video_url=VIDEO_URL)
        assert source.video_id is None

    def test_it_refuses_a_video_with_only_blank_keys(self):
        with pytest.raises(ValueError):
            VideoSource(video_id="", video_url=" ")

    def test_it_refuses_a_non_string_key(self):
        with pytest.raises(ValueError, match="string"):
            VideoSource(video_id=860012345678901234)  # type: ignore[arg-type]  # wrong type on purpose

    def test_it_is_immutable(self):
        source = VideoSource(video_url=VIDEO_URL)
        with pytest.raises(AttributeError):
            source.video_url = "https://elsewhere.example/x.mp4"  # type: ignore[misc]  # writing a frozen field on purpose


class TestTextSpeech:
    def test_it_defaults_to_normal_speed(self):
        assert text_speech().voice_speed == Decimal("1.0")

    @pytest.mark.parametrize("field", ["text", "voice_id", "voice_language"])
    def test_it_refuses_a_blank_required_field(self, field):
        with pytest.raises(ValueError, match=field):
            text_speech(**{field: "   "})

    def test_it_refuses_text_that_is_not_a_string(self):
        with pytest.raises(ValueError, match="text"):
            text_speech(text=None)

    def test_it_keeps_the_text_exactly_as_typed(self):
        assert text_speech(text="  Hi!  ").text == "  Hi!  "

    def test_it_turns_a_float_speed_into_the_decimal_a_person_typed(self):
        assert text_speech(voice_speed=1.1).voice_speed == Decimal("1.1")

    @pytest.mark.parametrize("speed", ["1.0", True, None, Decimal("NaN"), float("inf")])
    def test_it_refuses_a_speed_that_is_not_a_finite_number(self, speed):
        with pytest.raises(ValueError, match="voice_speed"):
            text_speech(voice_speed=speed)


class TestAudioTrack:
    def test_a_url_track_has_audio_type_url(self):
        assert AudioTrack(audio_url=AUDIO_URL).audio_type == "url"

    def test_a_file_track_has_audio_type_file(self):
        assert AudioTrack(audio_file=b"ID3\x04rest").audio_type == "file"

    def test_it_accepts_a_bytearray_as_bytes(self):
        # Typed as bytes, but callers without types may pass a bytearray.
        track = AudioTrack(audio_file=bytearray(b"ID3"))  # type: ignore[arg-type]  # see above
        assert track.audio_file == b"ID3"

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"audio_url": AUDIO_URL, "audio_file": b"ID3"},
            {},
            {"audio_file": b""},
            {"audio_url": "  "},
        ],
        ids=["both", "neither", "empty-bytes", "blank-url"],
    )
    def test_it_refuses_anything_but_exactly_one_source(self, kwargs):
        with pytest.raises(ValueError, match="exactly one"):
            AudioTrack(**kwargs)

    def test_it_refuses_a_file_given_as_text(self):
        with pytest.raises(ValueError, match="bytes"):
            AudioTrack(audio_file="SUQzBA==")  # type: ignore[arg-type]  # wrong type on purpose

    def test_its_repr_shows_the_length_and_not_the_bytes(self):
        track = AudioTrack(audio_file=b"SECRET-AUDIO" * 100)
        assert repr(track) == "AudioTrack(audio_file=<1200 bytes>)"

    def test_its_repr_shows_the_url(self):
        assert AUDIO_URL in repr(AudioTrack(audio_url=AUDIO_URL))


class TestLipSyncRequestBody:
    def test_text_mode_with_a_video_id_builds_the_exact_body(self):
        request = LipSyncRequest(
            video=VideoSource(video_id="860012345678901234"),
            speech=text_speech(voice_speed=Decimal("1.3")),
        )
        assert request.mode is Mode.TEXT
        assert request.to_body() == {
            "input": {
                "video_id": "860012345678901234",
                "mode": "text2video",
                "text": "Hello there",
                "voice_id": "genshin_vindi2",
                "voice_language": "en",
                "voice_speed": 1.3,
            }
        }

    def test_audio_mode_with_a_url_builds_the_exact_body(self):
        request = LipSyncRequest(
            video=VideoSource(video_url=VIDEO_URL), speech=AudioTrack(audio_url=AUDIO_URL)
        )
        assert request.mode is Mode.AUDIO
        assert request.to_body() == {
            "input": {
                "video_url": VIDEO_URL,
                "mode": "audio2video",
                "audio_type": "url",
                "audio_url": AUDIO_URL,
            }
        }

    def test_audio_mode_with_a_file_sends_plain_base64_of_the_bytes(self):
        audio = bytes(range(256)) * 3
        request = LipSyncRequest(
            video=VideoSource(video_url=VIDEO_URL), speech=AudioTrack(audio_file=audio)
        )
        body = request.to_body()
        assert set(body["input"]) == {"video_url", "mode", "audio_type", "audio_file"}
        assert body["input"]["audio_type"] == "file"
        assert not body["input"]["audio_file"].startswith("data:")
        assert base64.b64decode(body["input"]["audio_file"], validate=True) == audio

    @pytest.mark.parametrize(
        ("speed", "expected_json"),
        [
            (Decimal("1"), "1.0"),
            (Decimal("1.0"), "1.0"),
            (Decimal("0.8"), "0.8"),
            (Decimal("1.30"), "1.3"),
            (Decimal("2"), "2.0"),
            (1.5, "1.5"),
        ],
    )
    def test_voice_speed_is_a_json_number_with_one_decimal(self, speed, expected_json):
        body = LipSyncRequest(
            video=VideoSource(video_url=VIDEO_URL), speech=text_speech(voice_speed=speed)
        ).to_body()
        assert isinstance(body["input"]["voice_speed"], float)
        assert f'"voice_speed": {expected_json}' in json.dumps(body)

    def test_it_sends_the_resellers_task_id_only_when_given(self):
        video = VideoSource(video_id="vid-1")
        without = LipSyncRequest(video=video, speech=text_speech()).to_body()
        with_it = LipSyncRequest(video=video, speech=text_speech(), task_id="task-9").to_body()
        assert "task_id" not in without["input"]
        assert with_it["input"]["task_id"] == "task-9"
        assert "task_id" not in with_it

    def test_it_leaves_out_a_blank_task_id_and_callback_url(self):
        body = LipSyncRequest(
            video=VideoSource(video_id="vid-1"), speech=text_speech(), task_id="", callback_url=""
        ).to_body()
        assert body == {"input": body["input"]}
        assert "task_id" not in body["input"]

    def test_it_puts_the_callback_url_at_the_top_level_only_when_set(self):
        callback = "https://studio.example/kling/callback/abc"
        body = LipSyncRequest(
            video=VideoSource(video_url=VIDEO_URL), speech=text_speech(), callback_url=callback
        ).to_body()
        assert body["callback_url"] == callback
        assert "callback_url" not in body["input"]
        assert set(body) == {"input", "callback_url"}

    def test_it_never_sends_both_video_keys(self):
        body = LipSyncRequest(
            video=VideoSource(video_id="", video_url=VIDEO_URL), speech=text_speech()
        ).to_body()
        assert "video_id" not in body["input"]

    def test_it_refuses_speech_of_the_wrong_type(self):
        with pytest.raises(ValueError, match="speech"):
            LipSyncRequest(video=VideoSource(video_url=VIDEO_URL), speech="Hello there")  # type: ignore[arg-type]  # wrong type on purpose

    def test_it_refuses_a_video_given_as_a_plain_dict(self):
        with pytest.raises(ValueError, match="video"):
            LipSyncRequest(video={"video_url": VIDEO_URL}, speech=text_speech())  # type: ignore[arg-type]  # wrong type on purpose


class TestTaskStatus:
    @pytest.mark.parametrize(
        ("status", "final"),
        [
            (TaskStatus.SUBMITTED, False),
            (TaskStatus.PROCESSING, False),
            (TaskStatus.SUCCEED, True),
            (TaskStatus.FAILED, True),
        ],
    )
    def test_only_succeed_and_failed_are_final(self, status, final):
        assert status.is_final is final


def query_data(**overrides):
    data = {
        "task_id": "860012345678901234",
        "task_status": "succeed",
        "task_status_msg": "",
        "task_info": {"parent_video": {"id": "p-1", "url": PARENT_URL, "duration": "7.0"}},
        "task_result": {"videos": [{"id": "v-1", "url": RESULT_URL, "duration": "5.1"}]},
        "final_unit_deduction": "5",
        "created_at": 1781080778802,
        "updated_at": 1781080794151,
    }
    return data | overrides


class TestKlingTaskFromData:
    def test_it_parses_a_create_answer(self):
        task = KlingTask.from_data(
            {
                "task_id": "860012345678901234",
                "task_status": "submitted",
                "created_at": 1781080778802,
                "updated_at": 1781080778802,
            },
            request_id="req-1",
        )
        assert task.task_id == "860012345678901234"
        assert task.status is TaskStatus.SUBMITTED
        assert (task.videos, task.parent_video, task.credits) == ((), None, None)
        assert task.status_msg == ""
        assert task.request_id == "req-1"

    def test_it_parses_a_finished_query_answer(self):
        task = KlingTask.from_data(query_data())
        assert task.status is TaskStatus.SUCCEED
        assert task.parent_video == Video(
            id="p-1", url="https://cdn.example.com/p.mp4", duration=7.0
        )
        assert task.videos == (Video(id="v-1", url="https://cdn.example.com/r.mp4", duration=5.1),)
        assert task.credits == Decimal("5")
        assert task.request_id is None

    def test_it_turns_millisecond_timestamps_into_aware_utc_datetimes(self):
        task = KlingTask.from_data(query_data())
        assert task.created_at == datetime(2026, 6, 10, 8, 39, 38, 802000, tzinfo=UTC)
        assert task.updated_at == datetime(2026, 6, 10, 8, 39, 54, 151000, tzinfo=UTC)
        assert task.created_at is not None
        assert task.created_at.utcoffset() == timedelta(0)

    def test_it_reads_a_timestamp_in_seconds_as_seconds(self):
        task = KlingTask.from_data(query_data(created_at=1781080778))
        assert task.created_at == datetime(2026, 6, 10, 8, 39, 38, tzinfo=UTC)

    @pytest.mark.parametrize("value", [None, "", "yesterday", -5, True])
    def test_it_leaves_an_unusable_timestamp_empty(self, value):
        assert KlingTask.from_data(query_data(created_at=value)).created_at is None

    def test_it_reads_credits_as_an_exact_decimal(self):
        task = KlingTask.from_data(query_data(final_unit_deduction="0.1"))
        assert task.credits == Decimal("0.1")
        assert isinstance(task.credits, Decimal)

    @pytest.mark.parametrize(("value", "expected"), [(3, Decimal(3)), ("", None), ("n/a", None)])
    def test_it_tolerates_other_credit_values(self, value, expected):
        assert KlingTask.from_data(query_data(final_unit_deduction=value)).credits == expected

    def test_it_has_no_credits_when_the_field_is_missing(self):
        data = query_data()
        del data["final_unit_deduction"]
        assert KlingTask.from_data(data).credits is None

    @pytest.mark.parametrize(
        ("duration", "expected"),
        [("5.1", 5.1), (5.1, 5.1), (10, 10.0), ("", None), (None, None), ("long", None)],
    )
    def test_it_reads_a_duration_given_as_string_or_number(self, duration, expected):
        video = {"id": "v-1", "url": "https://cdn.example.com/r.mp4", "duration": duration}
        task = KlingTask.from_data(query_data(task_result={"videos": [video]}))
        assert task.videos[0].duration == expected

    def test_it_accepts_a_result_video_without_id_or_duration(self):
        task = KlingTask.from_data(
            query_data(task_result={"videos": [{"url": "https://cdn.example.com/r.mp4"}]})
        )
        assert task.videos == (Video(id=None, url="https://cdn.example.com/r.mp4", duration=None),)

    @pytest.mark.parametrize("task_result", [{"videos": []}, {}, None, {"videos": None}])
    def test_it_has_no_videos_when_the_result_is_empty(self, task_result):
        assert KlingTask.from_data(query_data(task_result=task_result)).videos == ()

    def test_it_tolerates_a_missing_task_info(self):
        data = query_data()
        del data["task_info"]
        assert KlingTask.from_data(data).parent_video is None

    def test_it_ignores_unknown_extra_fields_but_keeps_them_in_raw(self):
        data = query_data(watermark_info={"enabled": False}, external_task_id="x")
        task = KlingTask.from_data(data)
        assert task.task_id == "860012345678901234"
        assert task.raw["watermark_info"] == {"enabled": False}

    def test_it_accepts_a_task_id_sent_as_a_json_number(self):
        assert KlingTask.from_data(query_data(task_id=860012345678901234)).task_id == (
            "860012345678901234"
        )

    def test_a_failed_task_carries_klings_reason(self):
        task = KlingTask.from_data(
            query_data(
                task_status="failed",
                task_status_msg="The model did not detect a human",
                task_result=None,
            )
        )
        assert task.status is TaskStatus.FAILED
        assert task.status_msg == "The model did not detect a human"

    @pytest.mark.parametrize("task_id", [None, "", 0.5, True])
    def test_a_missing_or_unusable_task_id_is_a_bad_response(self, task_id):
        with pytest.raises(KlingError) as caught:
            KlingTask.from_data(query_data(task_id=task_id), request_id="req-7")
        assert caught.value.kind is ErrorKind.BAD_RESPONSE
        assert caught.value.request_id == "req-7"
        assert "task_id" in str(caught.value)

    @pytest.mark.parametrize("status", [None, "queued", "SUCCEED"])
    def test_a_missing_or_unknown_status_is_a_bad_response(self, status):
        with pytest.raises(KlingError) as caught:
            KlingTask.from_data(query_data(task_status=status))
        assert caught.value.kind is ErrorKind.BAD_RESPONSE
        assert "task_status" in str(caught.value)

    def test_a_result_video_without_url_is_a_bad_response(self):
        with pytest.raises(KlingError) as caught:
            KlingTask.from_data(query_data(task_result={"videos": [{"id": "v-1"}]}))
        assert caught.value.kind is ErrorKind.BAD_RESPONSE

    @pytest.mark.parametrize("data", [None, [], "860012345678901234"])
    def test_data_that_is_not_an_object_is_a_bad_response(self, data):
        with pytest.raises(KlingError) as caught:
            KlingTask.from_data(data)
        assert caught.value.kind is ErrorKind.BAD_RESPONSE
